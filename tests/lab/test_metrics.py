"""Metrics on small cases computed by hand."""
import numpy as np
import pytest

from invgc_faiss.lab import metrics
from invgc_faiss.measures import rsum


def test_ground_truth_ranks_single_and_multiple_positives():
    I = np.array([[3, 1, 2], [0, 2, 1], [5, 6, 7]])
    assert metrics.ground_truth_ranks(I, np.array([1, 0, 9])).tolist() == [2, 1, 4]
    gt = np.array([[2, 1], [1, -1], [7, 6]])
    assert metrics.ground_truth_ranks(I, gt).tolist() == [2, 3, 2]


def test_retrieval_metrics_by_hand():
    ranks = np.array([1, 2, 6, 11])
    m = metrics.retrieval_metrics(ranks)
    assert m == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0, "MdR": 4.0, "MnR": 5.0}
    assert rsum(m, m) == 300.0  # the library's one RSUM helper takes the lab's dicts


def test_hubness_by_hand():
    # 4 queries, top-2, 5 items: N_k = [4, 2, 1, 1, 0]
    I = np.array([[0, 1], [0, 1], [0, 2], [0, 3]])
    h = metrics.hubness(I, 5)
    counts = np.array([4, 2, 1, 1, 0], float)
    c = counts - 1.6
    assert h["k_skewness"] == pytest.approx(np.mean(c ** 3) / np.std(c) ** 3)
    assert h["robin_hood"] == pytest.approx((2.4 + 0.4 + 0.6 + 0.6 + 1.6) / 16)  # = 0.35
    assert h["hub_occurrence"] == pytest.approx(4 / 8)  # top 1% of 5 items = 1 item
    assert h["antihub_rate"] == pytest.approx(0.2)


def test_uniform_occurrence_has_no_hubness():
    I = np.array([[0, 1], [2, 3], [1, 0], [3, 2]])
    h = metrics.hubness(I, 4)
    assert h["k_skewness"] == 0.0 and h["robin_hood"] == 0.0 and h["antihub_rate"] == 0.0


def test_mean_pairwise_cosine_by_hand():
    x = np.array([[1, 0], [0, 1], [1, 0]], float)
    # pairs: (0,1)=0, (0,2)=1, (1,2)=0 -> mean 1/3
    assert metrics.mean_pairwise_cosine(x) == pytest.approx(1 / 3)


def test_mean_nearest_neighbour_cosine_by_hand():
    s = np.sqrt(0.5)
    x = np.array([[1, 0], [s, s], [0, 1], [0, 1]], np.float32)
    # nn cosines: 0.707, 0.707, 1 (duplicate), 1
    assert metrics.mean_nearest_neighbour_cosine(x) == pytest.approx((2 * s + 2) / 4, abs=1e-6)


def test_degeneration_keys():
    x = np.eye(3, dtype=np.float32)
    assert metrics.degeneration(x) == pytest.approx({"mean_cos": 0.0, "nn_cos": 0.0})
