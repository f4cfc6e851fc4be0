"""Label-free tuning: grid search on held-out reference pairs, never on test labels.

Part of the reference pairs is held out as pseudo-queries / pseudo-gallery (row i matches row i);
the rest serve as banks. Every method's grid (:data:`invgc_faiss.methods.METHODS`) is searched the
same way, maximising ``R@1 + R@5 + R@10`` of the pseudo-queries (one retrieval direction: the one
being tuned; RSUM adds the two directions' sums).

InvGC is searched the way rerank mode (:mod:`invgc_faiss.rerank`) changes rates at search time,
with no rebuild: the offsets and per-item scalars depend only on ``pool_rate``, so for each pool
they are computed once, and every ``(r_g, r_q)`` rescales the same raw score matrices
``Q X^T`` and ``Q O_b^T`` with :func:`invgc_faiss.rerank.corrected_scores`.
"""
import itertools
import logging

import numpy as np

from . import metrics
from .correction import InvGC
from .methods import METHODS
from .rerank import corrected_scores, rerank_scalars

logger = logging.getLogger(__name__)


def recall_sum(I, n):
    """``R@1 + R@5 + R@10`` (percent) of results ``I`` (n, >= 10) whose ground truth is row i."""
    return metrics.rsum(metrics.retrieval_metrics(metrics.ground_truth_ranks(I, np.arange(n))))


def recall_sum_dense(scores):
    """``R@1 + R@5 + R@10`` from a dense score matrix (n, n) whose diagonal holds the ground
    truth; rank = 1 + number of items scoring above it."""
    ranks = 1 + (scores > np.diag(scores)[:, None]).sum(axis=1)
    return metrics.rsum(metrics.retrieval_metrics(ranks))


def grid(param_grid):
    """All parameter dicts of a grid ``{name: values}`` (one empty dict for an empty grid)."""
    names = list(param_grid)
    return [dict(zip(names, values)) for values in itertools.product(*param_grid.values())]


def _tune_invgc(variant, param_grid, queries, gallery, query_bank, gallery_bank):
    pools = param_grid.get("pool_rate", (0.01,))
    raw = queries @ gallery.T
    best = (-np.inf, None)
    for pool_rate in pools:
        correction = InvGC(variant=variant, pool_rate=pool_rate).fit(gallery_bank, query_bank)
        if variant == "full":
            correction.fit_gallery_mean(gallery.mean(axis=0, dtype=np.float64))
        offsets, _ = correction.offsets(gallery)
        scalars = rerank_scalars(gallery, offsets)[None]
        offset_scores = np.stack([queries @ o.T for o in offsets])
        for r_g, r_q in itertools.product(param_grid["r_g"], param_grid["r_q"]):
            score = recall_sum_dense(corrected_scores(raw, offset_scores, scalars, [r_g, r_q]))
            params = {"r_g": r_g, "r_q": r_q}
            if variant == "localadj":
                params["pool_rate"] = pool_rate
            if score > best[0]:
                best = (score, params)
    return best


def _tune_generic(make, param_grid, queries, gallery, query_bank, gallery_bank):
    best = (-np.inf, None)
    for params in grid(param_grid):
        index = make(params, query_bank, gallery_bank)(gallery.shape[1])
        index.add(gallery)
        _, I = index.search(queries, 10)
        score = recall_sum(I, queries.shape[0])
        if score > best[0]:
            best = (score, params)
    return best


def tune_method(name, queries, gallery, query_bank, gallery_bank, param_grid=None):
    """Best parameters of one method on held-out pairs.

    Parameters
    ----------
    name : str, a key of :data:`invgc_faiss.methods.METHODS`
    queries, gallery : ndarray (n, d) float32, pseudo-queries and pseudo-gallery, row i matches
    query_bank, gallery_bank : ndarray (m, d) float32, the remaining reference pairs
    param_grid : dict, optional
        A grid to search instead of the method's own (same parameter names)

    Returns
    -------
    params : dict
    score : float, ``R@1 + R@5 + R@10`` on the held-out pairs with those parameters
    """
    own_grid, make = METHODS[name]
    param_grid = own_grid if param_grid is None else param_grid
    if name.startswith("invgc_"):
        score, params = _tune_invgc(name[len("invgc_"):], param_grid, queries, gallery,
                                    query_bank, gallery_bank)
    else:
        score, params = _tune_generic(make, param_grid, queries, gallery, query_bank, gallery_bank)
    logger.info("tuned %s: %s (held-out R@1+R@5+R@10 = %.2f)", name, params, score)
    return params, score
