"""The one R@K / RSUM helper (invgc_faiss.measures) on cases computed by hand."""
import numpy as np
import pytest

from invgc_faiss import measures


def test_diagonal_ranks_count_ties_in_the_items_favour():
    scores = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.7], [0.3, 0.8, 0.1]])
    assert measures.diagonal_ranks(scores).tolist() == [1, 2, 3]


def test_recalls_rsum_and_per_query_hits_agree():
    ranks = np.array([1, 2, 6, 11])
    r = measures.recalls(ranks)
    assert r == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0}
    assert measures.rsum(r) == 150.0 and measures.rsum(r, r) == 300.0
    assert measures.hits(ranks).tolist() == [300.0, 200.0, 100.0, 0.0]
    assert measures.hits(ranks).mean() == pytest.approx(measures.rsum(r))
    assert measures.hits(ranks, ks=(1,)).mean() == r["R@1"]


def test_skewness_and_bootstrap_interval():
    assert measures.skewness([2, 2, 2]) == 0.0
    assert measures.skewness([0, 0, 0, 10]) > 1
    values = np.array([0.0, 1.0] * 50)
    low, high = measures.bootstrap_interval(values, np.random.default_rng(0), 500)
    assert low < 0.5 < high
