"""Label-free tuning of every compared method: grid search on held-out reference pairs.

Part of the reference pairs is held out as pseudo-queries / pseudo-gallery (row i matches row i);
the rest serve as banks. Every method's grid (:data:`invgc_faiss.lab.methods.METHODS`) is searched the
same way, maximising ``R@1 + R@5 + R@10`` of the pseudo-queries (one retrieval direction: the one
being tuned; RSUM adds the two directions' sums).

InvGC is searched without rebuilding anything (:func:`invgc_faiss.heldout.invgc_grid_ranks`).
"""
import logging

import numpy as np

from ..heldout import diagonal_ranks, invgc_grid_ranks
from ..heldout import grid as heldout_grid
from . import metrics
from .methods import METHODS

logger = logging.getLogger(__name__)


def recall_sum(I, n):
    """``R@1 + R@5 + R@10`` (percent) of results ``I`` (n, >= 10) whose ground truth is row i."""
    return metrics.rsum(metrics.retrieval_metrics(metrics.ground_truth_ranks(I, np.arange(n))))


def recall_sum_dense(scores):
    """``R@1 + R@5 + R@10`` from a dense score matrix (n, n) whose diagonal holds the ground
    truth."""
    return metrics.rsum(metrics.retrieval_metrics(diagonal_ranks(scores)))


def _tune_invgc(variant, param_grid, queries, gallery, query_bank, gallery_bank):
    best = (-np.inf, None)
    for params, ranks in invgc_grid_ranks(queries, gallery, query_bank, gallery_bank, param_grid,
                                          variant=variant):
        score = metrics.rsum(metrics.retrieval_metrics(ranks))
        if score > best[0]:
            best = (score, params)
    return best


def _tune_generic(make, param_grid, queries, gallery, query_bank, gallery_bank):
    best = (-np.inf, None)
    for params in heldout_grid(param_grid):
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
    name : str, a key of :data:`invgc_faiss.lab.methods.METHODS`
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
    if name.startswith("invgc_") and param_grid:
        variant = "full" if name == "invgc_full" else "localadj"
        score, params = _tune_invgc(variant, param_grid, queries, gallery, query_bank,
                                    gallery_bank)
    else:
        score, params = _tune_generic(make, param_grid, queries, gallery, query_bank, gallery_bank)
    logger.info("tuned %s: %s (held-out R@1+R@5+R@10 = %.2f)", name, params, score)
    return params, score
