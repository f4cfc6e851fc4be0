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

from . import forms, metrics
from .correction import InvGC
from .methods import METHODS
from .rerank import corrected_scores, rerank_scalars

logger = logging.getLogger(__name__)


def recall_sum(I, n):
    """``R@1 + R@5 + R@10`` (percent) of results ``I`` (n, >= 10) whose ground truth is row i."""
    return metrics.rsum(metrics.retrieval_metrics(metrics.ground_truth_ranks(I, np.arange(n))))


def diagonal_ranks(scores):
    """Rank of each row's diagonal entry in a dense score matrix (n, n): 1 + the number of items
    scoring above it (ties counted in the item's favour), int64 (n,)."""
    return 1 + (scores > np.diag(scores)[:, None]).sum(axis=1)


def recall_sum_dense(scores):
    """``R@1 + R@5 + R@10`` from a dense score matrix (n, n) whose diagonal holds the ground
    truth."""
    return metrics.rsum(metrics.retrieval_metrics(diagonal_ranks(scores)))


def grid(param_grid):
    """All parameter dicts of a grid ``{name: values}`` (one empty dict for an empty grid)."""
    names = list(param_grid)
    return [dict(zip(names, values)) for values in itertools.product(*param_grid.values())]


def invgc_grid_ranks(queries, gallery, query_bank, gallery_bank, param_grid, *, variant="localadj",
                     max_bank_size=None, progress=None):
    """Held-out ground-truth ranks of every InvGC parameter set in a grid, without rebuilding.

    The grid names its form by its rate names: ``r_g, r_q`` (paper) or ``rho_g, rho_q``
    (projection, :mod:`invgc_faiss.forms`); ``pool_rate`` (LocalAdj) is optional. A rate list
    missing from the grid is ``(0,)``; a bank passed as None is not used.

    Parameters
    ----------
    queries, gallery : ndarray (n, d) float32, held-out pairs, row i matches row i
    query_bank, gallery_bank : ndarray (m, d) float32 or None
    param_grid : dict
    variant : {"localadj", "full"}
    max_bank_size : int or None, as for :class:`~invgc_faiss.correction.InvGC`
    progress : callable(n_done_increment, total), optional

    Yields
    ------
    params : dict (the rates of the banks given, whose names select the form; pool_rate for
        LocalAdj): keyword arguments of :class:`~invgc_faiss.InvGCIndex`
    ranks : ndarray (n,) int64
    """
    form = "projection" if ("rho_g" in param_grid or "rho_q" in param_grid) else "paper"
    g_name, q_name = forms.RATE_NAMES[form]
    names = [(name, bank) for name, bank in ((g_name, gallery_bank), (q_name, query_bank))
             if bank is not None]
    pools = param_grid.get("pool_rate", (0.01,)) if variant == "localadj" else (None,)
    rate_lists = [param_grid.get(name, (0.0,)) for name, _ in names]
    total = len(pools) * int(np.prod([len(r) for r in rate_lists]))
    raw = queries @ gallery.T
    for pool_rate in pools:
        pool = {} if pool_rate is None else {"pool_rate": pool_rate}
        correction = InvGC(variant=variant, max_bank_size=max_bank_size, **pool).fit(
            gallery_bank, query_bank)
        if variant == "full":
            correction.fit_gallery_mean(gallery.mean(axis=0, dtype=np.float64))
        offsets, _ = correction.offsets(gallery)
        scalars = rerank_scalars(gallery, offsets)[None]
        offset_scores = np.stack([queries @ o.T for o in offsets])
        for rates in itertools.product(*rate_lists):
            ranks = diagonal_ranks(corrected_scores(raw, offset_scores, scalars, rates, form))
            params = {name: rate for (name, _), rate in zip(names, rates)}
            if variant == "localadj":
                params["pool_rate"] = pool_rate
            yield params, ranks
            if progress is not None:
                progress(1, total)


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
    if name.startswith("invgc_") and param_grid:
        variant = "full" if name == "invgc_full" else "localadj"
        score, params = _tune_invgc(variant, param_grid, queries, gallery, query_bank,
                                    gallery_bank)
    else:
        score, params = _tune_generic(make, param_grid, queries, gallery, query_bank, gallery_bank)
    logger.info("tuned %s: %s (held-out R@1+R@5+R@10 = %.2f)", name, params, score)
    return params, score
