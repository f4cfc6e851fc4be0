"""Held-out splits and the corrected scores of whole InvGC grids, computed without rebuilding.

Offsets and per-item scalars depend only on ``pool_rate`` (:mod:`invgc_faiss.scoring`), so for
each pool they are computed once, and every rate pair rescales the same raw score matrices
``Q X^T`` (n, n) and ``Q O_b^T`` with :func:`invgc_faiss.scoring.corrected_scores`, as rerank
mode does at search time. Memory is O(n^2) for n held-out pairs. No fit-time check runs here:
the grid's banks are exact (or sampled as given) and only score held-out rows.
"""
import itertools

import numpy as np

from . import banks
from .measures import diagonal_ranks
from .offsets import DEFAULT_COMPONENTS, FullOffset, LocalAdjOffset
from .query_side import bank_direction
from .rates import BANKS, RATE_NAMES, Rates
from .renormalization import Renormalization
from .scoring import corrected_scores, rerank_scalars


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


def invgc_grid_ranks(queries, gallery, query_bank, gallery_bank, form, param_grid, **options):
    """Held-out ground-truth ranks of every InvGC parameter set in a grid, without rebuilding.

    Arguments as for :func:`invgc_grid_scores`. Yields ``params`` and ``ranks``, ndarray (n,)
    int64: the rank of row i's partner among the n held-out gallery rows.
    """
    for params, scores in invgc_grid_scores(queries, gallery, query_bank, gallery_bank, form,
                                            param_grid, **options):
        yield params, diagonal_ranks(scores)


def invgc_grid_scores(queries, gallery, query_bank, gallery_bank, form, param_grid, *,
                      variant="localadj", max_bank_size=None,
                      n_components=DEFAULT_COMPONENTS, progress=None):
    """Corrected held-out scores ``q . x'`` of every InvGC parameter set in a grid.

    Parameters
    ----------
    queries, gallery : ndarray (n, d) float32, held-out pairs, row i matches row i
    query_bank, gallery_bank : ndarray (m, d) float32 or None (a bank not given is not used)
    form : {"projection", "paper"}
    param_grid : dict
        Values of the form's rates (``rho_g, rho_q`` or ``r_g, r_q``; a rate missing is
        ``(0,)``) and, for LocalAdj, ``pool_rate`` (missing: ``(0.01,)``).
    variant : {"localadj", "full"}
    max_bank_size : int or None, as for :class:`~invgc_faiss.InvGC` (``bank_seed`` 0)
    n_components : int or None, as for :class:`~invgc_faiss.InvGC` (its default: the offsets
        held-out rows get are those the tuned index computes)
    progress : callable(n_done_increment, total), optional

    Yields
    ------
    params : dict, the rates of the banks given and ``pool_rate`` (LocalAdj): keyword arguments
        of :class:`~invgc_faiss.InvGCIndex` (rate names select the form)
    scores : ndarray (n_queries, n_gallery) float64
    """
    given = banks.validated(query_bank, gallery_bank)
    names = list(given)
    rate_names = dict(zip(BANKS, RATE_NAMES[form]))
    pools = param_grid.get("pool_rate", (0.01,)) if variant == "localadj" else (None,)
    rate_lists = [param_grid.get(rate_names[name], (0.0,)) for name in names]
    total = len(pools) * int(np.prod([len(r) for r in rate_lists]))
    sampled = [banks.sample(given[name], max_bank_size, 0) for name in names]
    raw = queries @ gallery.T
    for pool_rate in pools:
        offsets = np.empty((len(names),) + gallery.shape, dtype=np.float32)
        for slot, bank in enumerate(sampled):
            if variant == "localadj":
                offset = LocalAdjOffset(bank, pool_rate, n_components=n_components)
            else:
                offset = FullOffset(bank)
                offset.set_gallery_mean(gallery.mean(axis=0, dtype=np.float64))
            offset(gallery, offsets[slot], np.empty(gallery.shape[0], np.float32))
        scalars = rerank_scalars(gallery, offsets)[None]
        offset_scores = np.stack([queries @ o.T for o in offsets])
        for rates in itertools.product(*rate_lists):
            params = {rate_names[name]: rate for name, rate in zip(names, rates)}
            if variant == "localadj":
                params["pool_rate"] = pool_rate
            value = Rates(form, **dict(zip(names, rates)))
            yield params, corrected_scores(raw, offset_scores, scalars, value, names)
            if progress is not None:
                progress(1, total)


def query_side_grid_scores(queries, gallery, query_bank, param_grid, *, progress=None):
    """Held-out scores ``q~ . x`` of the query-side correction for each ``rho`` of
    ``param_grid["rho"]``: ``q . x - rho (q . m)(x . m)``, ``m`` the query bank's normalized mean
    (:mod:`invgc_faiss.query_side`). Yields ``{"rho": value}`` and scores (n_queries, n_gallery)
    float64, as :func:`invgc_grid_scores` does."""
    m = bank_direction(query_bank, name="query_bank").astype(np.float64)
    raw = queries.astype(np.float64) @ gallery.T.astype(np.float64)
    along = np.outer(queries @ m, gallery @ m)
    rhos = param_grid.get("rho", (1.0,))
    for rho in rhos:
        yield {"rho": rho}, raw - rho * along
        if progress is not None:
            progress(1, len(rhos))


def renormalization_grid_scores(queries, gallery, query_bank, gallery_bank, param_grid, *,
                                invgc=False, max_bank_size=None, progress=None):
    """Held-out scores of renormalization (:mod:`invgc_faiss.renormalization`) fitted on the
    banks, alone or with the projection form on top (``invgc=True``: the banks and rows
    renormalized, then :func:`invgc_grid_scores` over the grid's ``rho_q``/``pool_rate``).

    ``param_grid``: ``kind`` values, ``sides`` values (alone; with InvGC both sides), and the
    projection form's ``rho_q`` and ``pool_rate`` (the renormalized query bank only). Yields
    ``params`` (``kind``, ``sides`` or the InvGC keywords) and scores (n_queries, n_gallery)
    float64, as :func:`invgc_grid_scores` does.
    """
    sides_values = ("both",) if invgc else param_grid.get("sides", ("both",))
    for kind in param_grid.get("kind", ("R1",)):
        for sides in sides_values:
            renorm = Renormalization(kind, sides).fit(query_bank, gallery_bank)
            q, x = renorm.transform_query(queries), renorm.transform_gallery(gallery)
            if not invgc:
                yield {"kind": kind, "sides": sides}, q.astype(np.float64) @ x.T.astype(np.float64)
                if progress is not None:
                    progress(1, None)
                continue
            rates = {key: value for key, value in param_grid.items() if key not in ("kind",
                                                                                     "sides")}
            for params, scores in invgc_grid_scores(q, x, renorm.transform_query(query_bank),
                                                    None, "projection", rates,
                                                    max_bank_size=max_bank_size):
                yield {"kind": kind, **params}, scores
                if progress is not None:
                    progress(1, None)
