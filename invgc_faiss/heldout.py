"""Held-out ground-truth ranks of InvGC parameter grids, scored without rebuilding anything.

InvGC is searched the way rerank mode (:mod:`invgc_faiss.rerank`) changes rates at search time:
the offsets and per-item scalars depend only on ``pool_rate``, so for each pool they are computed
once, and every rate pair rescales the same raw score matrices ``Q X^T`` (n, n) and ``Q O_b^T``
with :func:`invgc_faiss.rerank.corrected_scores`. Memory is O(n^2) for n held-out pairs.
"""
import itertools

import numpy as np

from . import forms
from .correction import InvGC
from .rerank import corrected_scores, rerank_scalars


def grid(param_grid):
    """All parameter dicts of a grid ``{name: values}`` (one empty dict for an empty grid)."""
    names = list(param_grid)
    return [dict(zip(names, values)) for values in itertools.product(*param_grid.values())]


def holdout_rows(m, holdout, max_holdout, rng, *, minimum, what):
    """Sorted held-out and remaining row numbers of ``m`` rows, a seeded split.

    ``holdout`` is a share of ``m`` (float) or a count (int), at most ``max_holdout``; both parts
    must keep ``minimum`` rows, else ``ValueError`` naming ``what``. ``rng`` draws one
    permutation."""
    n_h = min(int(round(holdout * m)) if isinstance(holdout, float) else int(holdout), max_holdout)
    if n_h < minimum or m - n_h < minimum:
        raise ValueError(f"{what} needs at least {minimum} held-out rows and {minimum} bank rows; "
                         f"{m} rows with holdout {holdout!r} give {n_h} and {m - n_h}")
    order = rng.permutation(m)
    return np.sort(order[:n_h]), np.sort(order[n_h:])


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


def diagonal_ranks(scores):
    """Rank of each row's diagonal entry in a dense score matrix (n, n): 1 + the number of items
    scoring above it (ties counted in the item's favour), int64 (n,)."""
    return 1 + (scores > np.diag(scores)[:, None]).sum(axis=1)


def invgc_grid_ranks(queries, gallery, query_bank, gallery_bank, param_grid, **options):
    """Held-out ground-truth ranks of every InvGC parameter set in a grid, without rebuilding.

    Arguments as for :func:`invgc_grid_scores`. Yields ``params`` and ``ranks``, ndarray (n,)
    int64: the rank of row i's partner among the n held-out gallery rows.
    """
    for params, scores in invgc_grid_scores(queries, gallery, query_bank, gallery_bank,
                                            param_grid, **options):
        yield params, diagonal_ranks(scores)


def invgc_grid_scores(queries, gallery, query_bank, gallery_bank, param_grid, *,
                      variant="localadj", max_bank_size=None, progress=None):
    """Corrected held-out scores ``q . x'`` of every InvGC parameter set in a grid.

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
    scores : ndarray (n_queries, n_gallery) float64
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
            gallery_bank, query_bank, all_banks=True, ranking_check=False)
        if variant == "full":
            correction.fit_gallery_mean(gallery.mean(axis=0, dtype=np.float64))
        offsets, _ = correction.offsets(gallery)
        scalars = rerank_scalars(gallery, offsets)[None]
        offset_scores = np.stack([queries @ o.T for o in offsets])
        for rates in itertools.product(*rate_lists):
            params = {name: rate for (name, _), rate in zip(names, rates)}
            if variant == "localadj":
                params["pool_rate"] = pool_rate
            yield params, corrected_scores(raw, offset_scores, scalars, rates, form)
            if progress is not None:
                progress(1, total)
