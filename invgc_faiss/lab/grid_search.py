"""Label-free tuning of every compared method: grid search on held-out reference pairs.

Part of the reference pairs is held out as pseudo-queries / pseudo-gallery (row i matches row i);
the rest serve as banks. Every method's grid (:data:`invgc_faiss.lab.methods.METHODS`) is searched the
same way, maximising ``R@1 + R@5 + R@10`` of the pseudo-queries (one retrieval direction: the one
being tuned; RSUM adds the two directions' sums).

InvGC is searched without rebuilding anything (:func:`invgc_faiss.heldout.invgc_grid_ranks`).
:func:`compare_peers` adds peers, tuned the same way, to what :func:`invgc_faiss.tune` reports.
"""
import copy
import logging

import numpy as np

from ..heldout import grid as heldout_grid
from ..heldout import invgc_grid_ranks
from ..measures import diagonal_ranks, recalls, rsum
from . import metrics
from .methods import INVGC_GRIDS, METHODS

logger = logging.getLogger(__name__)

#: The peers that can be compared with a TuneResult
PEERS = ("nnn", "csls", "qb_norm", "dbnorm", "renorm")


def recall_sum(I, n):
    """``R@1 + R@5 + R@10`` (percent) of results ``I`` (n, >= 10) whose ground truth is row i."""
    return rsum(recalls(metrics.ground_truth_ranks(I, np.arange(n))))


def recall_sum_dense(scores):
    """``R@1 + R@5 + R@10`` from a dense score matrix (n, n) whose diagonal holds the ground
    truth."""
    return rsum(recalls(diagonal_ranks(scores)))


def _tune_invgc(variant, form, param_grid, queries, gallery, query_bank, gallery_bank):
    best = (-np.inf, None)
    for params, ranks in invgc_grid_ranks(queries, gallery, query_bank, gallery_bank, form,
                                          param_grid, variant=variant):
        score = rsum(recalls(ranks))
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
    if name in INVGC_GRIDS and param_grid:
        score, params = _tune_invgc(*INVGC_GRIDS[name], param_grid, queries, gallery, query_bank,
                                    gallery_bank)
    else:
        score, params = _tune_generic(make, param_grid, queries, gallery, query_bank, gallery_bank)
    logger.info("tuned %s: %s (held-out R@1+R@5+R@10 = %.2f)", name, params, score)
    return params, score


def compare_peers(result, methods):
    """``result`` (a :class:`invgc_faiss.TuneResult` of paired banks) with rows for peers tuned
    on its held-out split (:attr:`TuneResult.heldout`): ``R@1 + R@5 + R@10`` of each peer at its
    best, for comparison (never chosen). Returns a copy; ``result`` is unchanged.

    Parameters
    ----------
    result : TuneResult
    methods : sequence of str, among :data:`PEERS`
    """
    split = result.heldout
    if not split.paired:
        raise ValueError("peers are scored on held-out pairs: paired banks only")
    unknown = [name for name in methods if name not in PEERS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}: choose among {PEERS}")
    nan = float("nan")
    rows = []
    for name in methods:
        params, score = tune_method(name, split.queries, split.gallery, split.query_bank,
                                    split.gallery_bank)
        rows.append({"method": name, "R@1": nan, "R@5": nan, "R@10": nan, "sum": float(score),
                     "params": params})
    compared = copy.copy(result)
    compared.rows = result.rows + rows
    return compared
