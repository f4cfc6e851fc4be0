"""Retrieval measures from ground-truth ranks: R@K, RSUM, per-query hits, k-skewness, intervals.

The one place these are computed: the tuner (:mod:`invgc_faiss.tuning`), the knob checks
(:mod:`invgc_faiss.knob_check`) and the lab's evaluation all call it. Ranks are 1-based: the rank
of a query's ground-truth item among the gallery.
"""
import numpy as np

#: The K of R@K and of RSUM (R@1 + R@5 + R@10)
RECALL_KS = (1, 5, 10)


def diagonal_ranks(scores):
    """Rank of each row's diagonal entry in a dense score matrix (n, n): 1 + the number of items
    scoring above it (ties counted in the item's favour), int64 (n,)."""
    scores = np.asarray(scores)
    return 1 + (scores > np.diag(scores)[:, None]).sum(axis=1)


def recalls(ranks, ks=RECALL_KS):
    """``{"R@k": percent}`` for each k: the share of queries whose ground truth ranks <= k."""
    ranks = np.asarray(ranks)
    return {f"R@{k}": 100.0 * float(np.mean(ranks <= k)) for k in ks}


def rsum(*recall_dicts):
    """RSUM: R@1 + R@5 + R@10 summed over the given dicts (one per retrieval direction; one dict
    gives a single direction's sum)."""
    return float(sum(r["R@1"] + r["R@5"] + r["R@10"] for r in recall_dicts))


def hits(ranks, ks=RECALL_KS):
    """Per-query ``100 * sum_k [rank <= k]``, float64 (n,): its mean is the sum of R@k over
    ``ks`` (RSUM of one direction for the default ks, R@1 for ``ks=(1,)``)."""
    ranks = np.asarray(ranks)
    return 100.0 * sum((ranks <= k) for k in ks).astype(np.float64)


def bootstrap_interval(values, rng, n_bootstrap):
    """95 % bootstrap interval ``(low, high)`` of the mean of per-query ``values`` (n,):
    the 2.5th and 97.5th percentiles of ``n_bootstrap`` resampled means."""
    means = values[rng.integers(0, values.size, size=(n_bootstrap, values.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def skewness(values):
    """Third standardized moment of ``values`` (n,) (0 when they are all equal)."""
    centred = np.asarray(values, dtype=np.float64) - np.mean(values)
    std = centred.std()
    return float(np.mean(centred ** 3) / std ** 3) if std > 0 else 0.0


def top_k_skewness(scores, k=10):
    """Hubness of the gallery columns of ``scores`` (n_queries, n_gallery): the skewness of
    ``N_k``, how many query rows have each gallery item in their top k."""
    k = min(k, scores.shape[1] - 1)
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return skewness(np.bincount(top.ravel(), minlength=scores.shape[1]))
