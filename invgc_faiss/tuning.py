"""``invgc_faiss.tune``: InvGC tuned on the user's own banks, with a do-no-harm rule.

Protocol for paired banks (row ``i`` of ``query_bank`` matches row ``i`` of ``gallery_bank``):

1. A seeded held-out split: ``n_h = holdout`` pairs (a share of the banks, at most
   ``max_holdout``) become pseudo-queries and pseudo-gallery; the other pairs are the banks.
2. Every point of each form's grid is scored by the held-out ranks of the pseudo-queries'
   true partners (``R@1 + R@5 + R@10`` of that one direction), without rebuilding anything
   (:func:`invgc_faiss.heldout.invgc_grid_scores`). The forms are the gallery correction's two
   and ``"query-side"`` (:mod:`invgc_faiss.query_side`: the queries moved, the gallery
   untouched). The best point overall is the candidate; its form is the one that won.
3. The candidate's gain over plain is measured without selection bias by 2-fold cross-fitting:
   the parameters picked on one half of the pseudo-queries are scored on the other half, and
   vice versa; the per-query gains ``100 (hit@1 + hit@5 + hit@10)`` are bootstrapped
   (``n_bootstrap`` resamples) for a 95 % interval of the mean gain.
4. Do-no-harm: if the interval's lower end is <= 0, the result is the identity (every rate 0:
   the plain index) and its ``decision`` says so.

The index built from the result (:meth:`TuneResult.index`) uses *all* pairs as banks; the pool is
a share of the bank and ``max_bank_size`` is the same as while tuning, so the tuned parameters
carry over. The split is kept as ``TuneResult.heldout``, on which the lab compares peers
(``python -m invgc_faiss tune --peers``, :func:`invgc_faiss.lab.grid_search.compare_peers`).

Unpaired banks (``paired=False``) have no pairs to score. There, each bank's held-out rows serve
as unlabelled queries and gallery, and the grid point with the least k-skewness of the gallery
rows' top-10 occurrences (the fewest hubs) is chosen -- the identity unless it lowers the plain
index's skewness. On six real retrieval directions the point of least skewness was within 0.6
held-out R@1 of the point of best R@1 (Spearman 0.57-0.86 over the grids; README, defaults
study); it has no interval and no recall to report.
"""
import dataclasses
import json
import time

import faiss
import numpy as np

from . import heldout
from .index import InvGCIndex
from .measures import bootstrap_interval, diagonal_ranks, hits, recalls, top_k_skewness
from .query_side import QueryCorrection, query_corrected
from .rates import (FORMS, QUERY_SIDE, RENORMALIZATION, RENORMALIZED, TUNE_FORMS,
                    TUNING_GRIDS as GRIDS, Rates)
from .renormalization import Renormalization, renormalized_queries
from .validation import as_unit_banks

RECALL_COLUMNS = ("R@1", "R@5", "R@10")
#: The bank sample of tuning and of the index it builds: 4,096 rows, twice the constructor's
#: default, because the paper form ``tune`` often picks (pool 0.05) depends more on the sample
#: than the projection defaults do: with 2,048 rows it lost up to 1.06 R@1 against the whole
#: banks (eng->zho), with 4,096 up to 0.64 (benchmarks/sample_study.py: docs/results.md)
TUNE_MAX_BANK_SIZE = 4096


def _cell(value, width):
    """A number to one decimal, or "-" where it was not measured (a peer's R@K)."""
    return f"{value:{width}.1f}" if value == value else "-".rjust(width)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The split :func:`tune` scored: held-out ``queries`` and ``gallery`` (row i matches row i
    when ``paired``) and the remaining rows as ``query_bank`` and ``gallery_bank``."""

    queries: np.ndarray
    gallery: np.ndarray
    query_bank: np.ndarray
    gallery_bank: np.ndarray
    paired: bool


class TuneResult:
    """What :func:`tune` found: parameters, held-out scores, the gain and the decision.

    Attributes
    ----------
    params : dict
        Keyword arguments of :class:`InvGCIndex` (form, rates, pool_rate, max_bank_size), or
        ``{"form": "query-side", "rho": ...}`` when the query-side correction won; every rate 0
        when the do-no-harm rule chose the identity.
    rows : list of dict
        Held-out R@1, R@5, R@10 and their sum for plain, each form at its best, and each peer.
    gain, gain_interval : float, (float, float)
        Cross-fitted mean gain in R@1+R@5+R@10 over plain and its bootstrap 95 % interval
        (None for unpaired banks).
    decision : str
        One line: what was chosen and why.
    seconds : float
    n_holdout : int
    heldout : HeldOut, the split that was scored (peers are compared on it by the lab)
    """

    def __init__(self, params, rows, gain, gain_interval, decision, seconds, heldout, banks):
        self.params = params
        self.rows = rows
        self.gain = gain
        self.gain_interval = gain_interval
        self.decision = decision
        self.seconds = seconds
        self.heldout = heldout
        self.n_holdout = heldout.queries.shape[0]
        self._banks = banks

    def index(self, inner=None, **overrides):
        """An :class:`InvGCIndex` with the tuned parameters and all pairs as banks; when the
        query-side correction won, ``inner`` wrapped by :func:`query_corrected` (a
        ``faiss.IndexPreTransform``; ``inner`` may then be a filled index: it is not rebuilt).

        ``inner``: an empty faiss index, or a factory string (inner-product metric); default
        ``IndexFlatIP``. ``overrides``: other keyword arguments of :class:`InvGCIndex`."""
        query_bank, gallery_bank = self._banks
        d = query_bank.shape[1]
        if inner is None:
            inner = faiss.IndexFlatIP(d)
        elif isinstance(inner, str):
            inner = faiss.index_factory(d, inner, faiss.METRIC_INNER_PRODUCT)
        params = dict(self.params)
        form = params.pop("form")
        if form in (QUERY_SIDE, RENORMALIZATION) and overrides:
            raise ValueError(f"the {form} route takes no index keywords, got {sorted(overrides)}")
        if form == QUERY_SIDE:
            return query_corrected(inner, QueryCorrection(params["rho"]).fit(query_bank))
        if form == RENORMALIZATION and params["sides"] == "query":
            return renormalized_queries(inner, Renormalization(params["kind"], "query").fit(
                query_bank))
        if form in (RENORMALIZATION, RENORMALIZED):  # gallery map baked, queries mapped in search
            renorm = Renormalization(params.pop("kind"), params.pop("sides", "both")).fit(
                query_bank, gallery_bank)
            params = ({"form": "projection", "rho_g": 0.0, "rho_q": 0.0}
                      if form == RENORMALIZATION else {"form": "projection", **params})
            return InvGCIndex(inner, query_bank=query_bank, gallery_bank=gallery_bank,
                              alignment=renorm, **{**params, **overrides})
        return InvGCIndex(inner, query_bank=query_bank, gallery_bank=gallery_bank,
                          **{"form": form, **params, **overrides})

    def to_dict(self):
        return {"params": self.params, "rows": self.rows, "gain": self.gain,
                "gain_interval": None if self.gain_interval is None else list(self.gain_interval),
                "decision": self.decision, "seconds": self.seconds, "n_holdout": self.n_holdout}

    def __str__(self):
        if self.gain_interval is None:  # label-free: no pairs, no recall
            lines = [f"held-out rows: {self.n_holdout} per bank, unpaired (k-skewness of the "
                     "top-10 occurrences; lower = fewer hubs)",
                     f"{'method':<15} {'k-skew':>7}  params"]
            lines += [f"{row['method']:<15} {row['k_skewness']:7.2f}  {json.dumps(row['params'])}"
                      for row in self.rows]
        else:
            lines = [f"held-out pairs: {self.n_holdout}  (R@K in %, sum = R@1+R@5+R@10, one "
                     "direction)", f"{'method':<15} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'sum':>7}  params"]
            lines += [f"{row['method']:<15} " + " ".join(_cell(row[k], 6) for k in RECALL_COLUMNS)
                      + f" {row['sum']:7.1f}  {json.dumps(row['params'])}" for row in self.rows]
            lo, hi = self.gain_interval
            lines.append(f"gain over plain (cross-fitted): {self.gain:+.2f} "
                         f"[95% {lo:+.2f}, {hi:+.2f}]")
        lines.append(self.decision)
        lines.append(f"chosen: {json.dumps(self.params)}  ({self.seconds:.1f} s)")
        return "\n".join(lines)

    __repr__ = __str__


def _progress_bar(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, desc="tuning InvGC", unit="setting")
    return lambda n, _total: bar.update(n)


def tune(query_bank, gallery_bank, *, paired=None, forms=TUNE_FORMS, grid=None,
         holdout=0.1, max_holdout=2000, seed=0, max_bank_size=TUNE_MAX_BANK_SIZE,
         n_bootstrap=2000, normalize_input=False, progress=False):
    """Tune InvGC on reference banks and decide whether it helps.

    Parameters
    ----------
    query_bank : array_like of shape (M_q, d), unit rows
    gallery_bank : array_like of shape (M_g, d), unit rows
    paired : bool or None
        True: row i of one bank matches row i of the other (held-out R@K, gain interval,
        do-no-harm rule). False: unpaired banks, tuned label-free by the least k-skewness of
        held-out rows (see the module docstring). None (default): paired when the banks have
        the same number of rows -- equal-sized unpaired banks then meet the do-no-harm rule,
        whose interval reaches 0 for random pairs.
    forms : tuple of {"projection", "paper", "query-side", "renormalization", "renormalized"}
        Forms whose grids are searched (``"query-side"``: the queries are moved, the gallery
        untouched; its result's :meth:`TuneResult.index` wraps an index that need not be
        rebuilt; ``"renormalization"``: R1 or R2 of both sides or of the queries only,
        :mod:`invgc_faiss.renormalization`; ``"renormalized"``: the projection form fitted on
        R1-renormalized banks and applied to renormalized rows).
    grid : dict, optional
        ``{form: {parameter: values}}`` replacing the default grids
        (:data:`invgc_faiss.rates.TUNING_GRIDS`) of the forms it names.
    holdout : float in (0, 1) or int
        Held-out rows of each bank: a share or a count (at most ``max_holdout``, at least 50).
    max_holdout : int
        Bounds the dense held-out scoring (``n_h^2`` per grid point).
    seed : int
    max_bank_size : int or None
        As for :class:`InvGCIndex`; used while tuning and in :meth:`TuneResult.index`
        (``TUNE_MAX_BANK_SIZE``, 4,096, twice the constructor's default: see there).
    n_bootstrap : int
    normalize_input : bool
        Normalize the bank rows first (else they must be unit).
    progress : bool
        A tqdm bar over the grid points (if tqdm is installed).

    Returns
    -------
    TuneResult
    """
    start = time.perf_counter()
    query_bank, gallery_bank = as_unit_banks(query_bank, gallery_bank, normalize=normalize_input)
    same_rows = query_bank.shape[0] == gallery_bank.shape[0]
    paired = same_rows if paired is None else bool(paired)
    if paired and not same_rows:
        raise ValueError(
            f"paired banks (row i of query_bank matches row i of gallery_bank) need the same "
            f"number of rows, got {query_bank.shape[0]} and {gallery_bank.shape[0]}; for unpaired "
            "banks pass paired=False (label-free tuning)")
    unknown = set(forms) - set(GRIDS)
    if not forms or unknown:
        raise ValueError(f"forms must be a non-empty subset of {tuple(GRIDS)}, got {forms!r}")
    rng = np.random.default_rng(seed)
    held_q, rest_q = heldout.holdout_rows(query_bank.shape[0], holdout, max_holdout, rng,
                                          minimum=50, what="tune (query_bank)")
    held_g, rest_g = ((held_q, rest_q) if paired else
                      heldout.holdout_rows(gallery_bank.shape[0], holdout, max_holdout, rng,
                                           minimum=50, what="tune (gallery_bank)"))
    queries, gallery = query_bank[held_q], gallery_bank[held_g]
    bank_q, bank_g = query_bank[rest_q], gallery_bank[rest_g]
    grids = {form: {**GRIDS[form], **((grid or {}).get(form, {}))} for form in forms}
    bar = _progress_bar(sum(len(heldout.grid(g)) for g in grids.values()), progress)
    candidates = []  # (form, params, scores reduced to ranks or a skewness)
    reduce = diagonal_ranks if paired else top_k_skewness
    for form, form_grid in grids.items():
        if form == QUERY_SIDE:
            scored = heldout.query_side_grid_scores(queries, gallery, bank_q, form_grid,
                                                    progress=bar)
        elif form in (RENORMALIZATION, RENORMALIZED):
            scored = heldout.renormalization_grid_scores(
                queries, gallery, bank_q, bank_g, form_grid, invgc=form == RENORMALIZED,
                max_bank_size=max_bank_size, progress=bar)
        else:
            scored = heldout.invgc_grid_scores(queries, gallery, bank_q, bank_g, form, form_grid,
                                               max_bank_size=max_bank_size, progress=bar)
        for params, scores in scored:
            candidates.append((form, params, reduce(scores)))
    plain = reduce(queries @ gallery.T)
    choose = _choose_paired if paired else _choose_label_free
    form, params, rows, gain, interval, decision = choose(candidates, plain, grids, rng,
                                                          n_bootstrap)
    params = {"form": form, **params}
    if form in FORMS + (RENORMALIZED,):
        params["max_bank_size"] = max_bank_size
    return TuneResult(params, rows, gain, interval, decision, time.perf_counter() - start,
                      HeldOut(queries, gallery, bank_q, bank_g, paired),
                      (query_bank, gallery_bank))


def _route(form):
    """What a form's decision line calls it."""
    return {QUERY_SIDE: "the query-side correction", RENORMALIZATION: "renormalization",
            RENORMALIZED: "InvGC on renormalized rows"}.get(form, f"InvGC ({form} form)")


def _identity(form):
    """The identity as ``(form, params)``: every rate of ``form`` 0 (the projection form's for
    the renormalization routes, which have no rate)."""
    form = form if form in FORMS + (QUERY_SIDE,) else "projection"
    return form, {key: value for key, value in Rates.identity(form).params().items()
                  if key != "form"}


def _choose_paired(candidates, plain_ranks, grids, rng, n_bootstrap):
    """Best held-out R@1+R@5+R@10; cross-fitted gain interval; do-no-harm."""
    plain_hits = hits(plain_ranks)
    scores = np.stack([hits(ranks) for _, _, ranks in candidates])  # (n_candidates, n_h)
    rows = [{"method": "plain", **recalls(plain_ranks), "sum": float(plain_hits.mean()),
             "params": {}}]
    for form in grids:
        members = [i for i, c in enumerate(candidates) if c[0] == form]
        best = members[int(np.argmax(scores[members].mean(axis=1)))]
        rows.append({"method": form, **recalls(candidates[best][2]),
                     "sum": float(scores[best].mean()), "params": candidates[best][1]})
    form, params, _ = candidates[int(np.argmax(scores.mean(axis=1)))]
    gains = _cross_fitted_gains(scores, plain_hits, rng)
    interval = bootstrap_interval(gains, rng, n_bootstrap)
    if interval[0] <= 0:
        decision = (f"do-no-harm: the gain's 95% interval [{interval[0]:+.2f}, {interval[1]:+.2f}] "
                    "reaches 0, so the identity (the plain index) is chosen")
        form, params = _identity(form)
    else:
        decision = (f"{_route(form)} helps on held-out pairs: gain {gains.mean():+.2f} "
                    f"R@1+R@5+R@10, 95% interval [{interval[0]:+.2f}, {interval[1]:+.2f}]")
    return form, params, rows, float(gains.mean()), interval, decision


def _choose_label_free(candidates, plain_skewness, grids, rng, n_bootstrap):
    """Least k-skewness of the held-out gallery rows' top-10 occurrences under the held-out
    query rows; the identity unless it lowers the plain index's skewness."""
    nan = float("nan")

    def row(method, skew, params):
        return {"method": method, "R@1": nan, "R@5": nan, "R@10": nan, "sum": nan,
                "k_skewness": float(skew), "params": params}

    rows = [row("plain", plain_skewness, {})]
    for form in grids:
        members = [c for c in candidates if c[0] == form]
        best = min(members, key=lambda c: c[2])
        rows.append(row(form, best[2], best[1]))
    form, params, skew = min(candidates, key=lambda c: c[2])
    if skew >= plain_skewness:
        decision = (f"label-free: no setting lowers the k-skewness of the plain index "
                    f"({plain_skewness:.2f}), so the identity (the plain index) is chosen")
        form, params = _identity(form)
    else:
        decision = (f"label-free ({_route(form)}): k-skewness of held-out rows {plain_skewness:.2f} "
                    f"-> {skew:.2f} (no pairs: no recall, gain or interval)")
    return form, params, rows, None, None, decision


def _cross_fitted_gains(scores, plain_scores, rng):
    """Per-query gains over plain of the candidate picked on the *other* half of the queries.

    scores : (n_candidates, n) per-query scores; plain_scores : (n,). Returns (n,) float64."""
    n = plain_scores.size
    fold = rng.permutation(n) % 2
    gains = np.empty(n)
    for f in (0, 1):
        pick = int(np.argmax(scores[:, fold != f].mean(axis=1)))
        gains[fold == f] = scores[pick, fold == f] - plain_scores[fold == f]
    return gains
