"""Fit-time checks of the scale knobs, as a report, and every warning of the correction's fit and add.

What makes LocalAdj offsets approximate is checked here, once per fit, for the banks the
correction will search, each against what it approximates:

1. *bank search settings*: ``bank_search_params`` applied as given, or ``"auto"``: each
   approximate bank index gets the cheapest setting whose offsets on probe rows match exact
   search (:func:`invgc_faiss.bank_search.calibrate`), or exact search where that does not pay;
2. *approximate bank search* against exact search in the bank as used: the offsets of
   ``AUTO_SAMPLE`` probe rows (mean cosine, norm error), and the ranking check -- the share of
   reference queries whose top-1 among corrected bank rows changes (:func:`top1_change`);
3. *a bank sample* (``max_bank_size``, the default for banks over 2,048 rows) against another
   sample of the same size drawn apart from it: the offsets' mean cosine per bank and the
   top-1 change (:func:`sample_change`). Sampling is the default by design, so the question is
   not whether the sample differs from the whole bank (it does) but whether the result still
   depends on which rows were drawn. Each threshold is set where every setting it warned in
   ``benchmarks/sample_study.py`` lost 0.5 R@1 or more on held-out pairs and the defaults
   never warned (docs/results.md shows the table).

:func:`run` returns a :class:`FitReport`; :meth:`FitReport.warnings` writes its warnings (one
``RuntimeWarning`` per fit naming the figures and the knobs to raise, thresholds ``WARN_*``).
The add-time warning about bank searches that come back short is written here too
(:func:`warn_short_search`).
"""
import dataclasses
import logging

import numpy as np

from .bank_search import (AUTO_MAX_NORM_ERROR, AUTO_MIN_COSINE, AUTO_SAMPLE, AUTO_TIMING_ROWS,
                          EXACT, accuracy_knob, apply_search_params, build_bank_index, calibrate,
                          offset_agreement)
from . import banks
from .offsets import LocalAdjOffset, correct_rows
from .validation import warn_caller

logger = logging.getLogger(__name__)

#: Share of a batch's rows allowed to get fewer than k bank neighbours before a warning
SHORT_WARN_FRACTION = 0.01
#: An approximate bank search whose offsets agree less than this with exact search (on probe
#: rows, at fit time) is accepted with a warning (thresholds: docs/scale.md)
WARN_MIN_COSINE = 0.995
WARN_MAX_NORM_ERROR = 0.02
#: ... and so is one that changes the top-1 corrected bank row of more than this share of
#: reference queries (the ranking check). Chosen on real eng->deu and generated 200k banks
#: (benchmarks/warn_threshold.py): every setting at or below it lost <= 1 R@1 there; offset
#: cosine alone cannot be one threshold (0.9969 lost 1.2 R@1 on real data, 0.99985 lost 1.3
#: on generated data)
WARN_MAX_TOP1_CHANGE = 0.12
#: A bank sample warns when its offsets and those of another sample of its size agree less than
#: this (mean cosine on probe rows) ...
WARN_MIN_SAMPLE_COSINE = 0.99
#: ... or when the two samples change the top-1 corrected bank row of more than this share of
#: reference queries (both chosen in benchmarks/sample_study.py: docs/results.md)
WARN_MAX_SAMPLE_CHANGE = 0.65
#: The default projection form runs only on a crowded query bank: where the mean direction of a
#: probe row's pool neighbours shares at least this much with the bank's mean direction (mean
#: cosine over CROWDING_PROBES rows of the bank sample). Below it the defaults are the identity.
#: Chosen on 45 settings (benchmarks/spread_study.py, docs/results.md "Where there is no cone"):
#: every setting where the projection form lost more than 0.5 R@1 to plain faiss measured at most
#: 0.825 (E5 verses centered on a shared mean); the real sets where it gained measured 0.900 to
#: 0.996 (a static encoder's paraphrases 0.900 and 0.926, E5 verses as they come 0.994-0.996).
#: Generated cone data where it also gained (0.66, 0.78) now falls back: the identity, no loss.
MIN_SHARED_DIRECTION = 0.86
CROWDING_PROBES = 256
#: Corrected gallery-side bank rows, and query-side bank rows ranking them, of the ranking checks
RANKING_ROWS = 2048
RANKING_QUERIES = 1024
#: Most neighbour entries (rows x k) one exact reference search may hold at once
REFERENCE_BUDGET = 1 << 22
#: Most neighbour entries (rows x k) the ranking check may ask of exact search in all; it is
#: skipped (logged) when that leaves fewer than RANKING_MIN_ROWS rows
RANKING_BUDGET = 1 << 25
RANKING_MIN_ROWS = 512


@dataclasses.dataclass
class FitReport:
    """What the fit-time checks found (a correction's ``report_``).

    Attributes
    ----------
    bank_search_params : str, dict or None
        The bank search settings in force (what "auto" chose, or as given).
    calibration : dict
        Per bank calibrated by "auto": the knob value, offset cosine, norm error, time ratio.
    agreement : dict
        Per bank with an approximate search: mean cosine and norm error of its offsets against
        exact search in the bank as used, and the probe rows used.
    top1_change : float or None
        The ranking check of approximate search: the share of reference queries whose top-1
        corrected bank row it changes against exact search (None: all exact, offsets as close
        as "auto" asks, or not checked).
    sample_agreement : dict
        Per sampled bank: mean cosine and norm error between its offsets from the sample and
        from another sample of the same size, and the probe rows used.
    sample_change : float or None
        The share of reference queries whose top-1 corrected bank row changes between those two
        samples, under the rates in force (None: no bank the rates use is sampled).
    knobs : dict
        Per bank checked: the knobs that make its offsets approximate, as a user raises them.
    kept : dict
        Per sampled bank checked: ``(rows kept, rows given)``.
    gallery_alone_unchanged : bool
        A gallery bank alone with the default rates: the correction is the identity.
    crowding : dict
        The query bank's crowding (:func:`crowding`): ``mean_cos``, ``mean_norm``,
        ``shared_direction`` (empty without a LocalAdj query bank).
    not_crowded : bool
        The default rates were asked for and the query bank is not crowded
        (``shared_direction < MIN_SHARED_DIRECTION``): the correction is the identity.
    """

    bank_search_params: object = None
    calibration: dict = dataclasses.field(default_factory=dict)
    agreement: dict = dataclasses.field(default_factory=dict)
    top1_change: float = None
    sample_agreement: dict = dataclasses.field(default_factory=dict)
    sample_change: float = None
    knobs: dict = dataclasses.field(default_factory=dict)
    kept: dict = dataclasses.field(default_factory=dict)
    gallery_alone_unchanged: bool = False
    crowding: dict = dataclasses.field(default_factory=dict)
    not_crowded: bool = False

    def warnings(self):
        """The warnings this report calls for: a list of ``(message, category)``."""
        out = []
        if self.not_crowded:
            c = self.crowding
            out.append((f"the query bank is not crowded in a cone (its rows' local mean "
                        f"directions share {c['shared_direction']:.2f} with the bank's mean "
                        f"direction, < {MIN_SHARED_DIRECTION}; mean cosine {c['mean_cos']:.2f}): "
                        "there the default projection form lost R@1 against plain faiss on every "
                        "set measured, so the defaults leave vectors unchanged; with reference "
                        "pairs, invgc_faiss.tune weighs renormalization and each form",
                        UserWarning))
        if self.gallery_alone_unchanged:
            out.append(("with a gallery bank alone the defaults leave vectors unchanged (no "
                        "untuned setting was safe in the defaults study): pass a query bank, set "
                        "rho_g, or use invgc_faiss.tune", UserWarning))
        figures, named = self._search_figures(), {}
        if figures:
            named.update(dict.fromkeys(knob for knobs in self.knobs.values() for knob in knobs
                                       if knob != "max_bank_size"))
        sample = self._sample_figures()
        if sample:
            kept = ", ".join(f"{name} bank {rows} of {given}"
                             for name, (rows, given) in self.kept.items())
            named[f"max_bank_size (rows kept: {kept})"] = None
        figures += sample
        if figures:
            out.append((f"{'; '.join(figures)}: results may lose accuracy; raise "
                        f"{' or '.join(named)}, or measure the cost on paired reference data "
                        "with invgc_faiss.check_knobs", RuntimeWarning))
        return out

    def _search_figures(self):
        """What approximate bank search moved past its thresholds, in words."""
        figures = [f"the {name} bank's offsets drift from exact search (mean cosine "
                   f"{r['cosine']:.4f}, norm error {100 * r['norm_error']:.1f}% on "
                   f"{r['probes']} bank rows)" for name, r in self.agreement.items()
                   if r["cosine"] < WARN_MIN_COSINE or r["norm_error"] > WARN_MAX_NORM_ERROR]
        if self.top1_change is not None and self.top1_change > WARN_MAX_TOP1_CHANGE:
            figures.append(f"the top-1 corrected bank row of {100 * self.top1_change:.0f}% of "
                           "reference queries differs from exact bank search")
        return figures

    def _sample_figures(self):
        """What bank sampling moved past its thresholds, in words: the two samples' top-1 change
        and, per sampled bank, their offsets' agreement."""
        figures = []
        if self.sample_change is not None and self.sample_change > WARN_MAX_SAMPLE_CHANGE:
            figures.append(f"two samples of the banks change the top-1 corrected bank row of "
                           f"{100 * self.sample_change:.0f}% of reference queries")
        return figures + [f"the {name} bank's offsets differ between two samples (mean cosine "
                          f"{r['cosine']:.4f} on {r['probes']} bank rows)"
                          for name, r in self.sample_agreement.items()
                          if r["cosine"] < WARN_MIN_SAMPLE_COSINE]


def warn_fit(report):
    """Write the report's warnings, attributed to the caller's line."""
    for message, category in report.warnings():
        warn_caller(message, category)


def warn_short_search(name, k, found):
    """The add-time warning: when more than ``SHORT_WARN_FRACTION`` of a batch got fewer than
    ``k`` neighbours from the ``name`` bank's search (``found``: per row, int (n,)), warn and
    return True; else return False."""
    short = float(np.mean(found < k)) if found.size else 0.0
    if short <= SHORT_WARN_FRACTION:
        return False
    warn_caller(f"the {name} bank search found fewer than k = {k} neighbours for "
                f"{100 * short:.1f}% of a batch (mean found {found.mean():.0f}); offsets are means "
                "over the neighbours found, which drifts from the exact result: raise nprobe (IVF) "
                "or efSearch (HNSW) with bank_search_params, or use bank_search_params='auto'",
                RuntimeWarning)
    return True


def probe_rows(bank, n, seed):
    """A seeded sample of ``n`` rows of ``bank`` (all when it has fewer), in bank order."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(bank.shape[0], min(n, bank.shape[0]), replace=False))
    return np.ascontiguousarray(bank[rows])


def knobs_of(off, full):
    """The knobs that make a LocalAdj bank's offsets approximate, as a user would raise them:
    ``max_bank_size`` when ``off`` holds a sample of the ``full`` bank, and the accuracy knob of
    an approximate bank index (empty list: exact search in the whole bank)."""
    knob = accuracy_knob(off.bank_index)
    sampled = off.bank.shape[0] < full.shape[0]
    return ((["max_bank_size"] if sampled else [])
            + ([f"{knob} (bank_search_params)"] if knob else []))


def run(offsets, names, full_banks, sample_rows, rates, searched, *, spec, pool_rate, seed):
    """Apply the bank search settings and check the knobs of the LocalAdj banks ``searched``.

    Parameters
    ----------
    offsets : list of LocalAdjOffset, one per name (their bank indexes are set here)
    names : list of str
    full_banks : dict ``{name: rows}``, the banks as given, before any sample
    sample_rows : dict ``{name: row numbers or None}``, each bank's sample (None: whole)
    rates : Rates, the rates in force (resolved)
    searched : list of int, positions of the banks the correction will search
    spec : the correction's ``bank_search_params``
    pool_rate : float
    seed : int, the correction's ``bank_seed`` (draws the probe rows and the other samples)

    Returns
    -------
    FitReport
    """
    report = FitReport()
    first = full_banks[names[0]]
    probes = probe_rows(first, AUTO_SAMPLE, seed)
    report.bank_search_params, report.calibration = apply_bank_search(
        spec, offsets, names, searched, probes, lambda: probe_rows(first, AUTO_TIMING_ROWS, seed))
    others = {}  # sampled bank -> exact offsets of another sample of its size
    for b in searched:
        name, off, full = names[b], offsets[b], full_banks[names[b]]
        report.knobs[name] = knobs_of(off, full)
        agreement = search_agreement(off, probes, pool_rate, report.calibration.get(name))
        if agreement is not None:
            report.agreement[name] = agreement
        if sample_rows.get(name) is not None:
            report.kept[name] = (off.bank.shape[0], full.shape[0])
            rows = banks.other_sample_rows(full.shape[0], sample_rows[name], seed + 1)
            others[name] = LocalAdjOffset(banks.rows_of(full, rows), pool_rate,
                                          n_components=off.n_components)
            report.sample_agreement[name] = _agreement(
                _exact(off, pool_rate), others[name], probes)
    active = rates.active(names)
    # offsets as close to exact search as "auto" asks: no such setting changed more than 6.1 %
    # of top-1s in benchmarks/warn_threshold.py, so the ranking check is skipped
    close = all(r["cosine"] >= AUTO_MIN_COSINE and r["norm_error"] <= AUTO_MAX_NORM_ERROR
                for r in report.agreement.values())
    if not close and any(names[b] in report.agreement for b in active):
        report.top1_change = top1_change(offsets, names, full_banks, rates, pool_rate, seed)
    if any(names[b] in others for b in active):
        report.sample_change = sample_change(offsets, names, full_banks, others, rates,
                                             pool_rate, seed)
    return report


def apply_bank_search(spec, offsets, names, searched, probes, timing_rows):
    """Apply ``bank_search_params``: a string to every bank index, a dict per bank, or ``"auto"``
    (``None``, the default, means "auto" for approximate bank indexes) -- calibrated, for the
    banks ``searched``, against exact search (in the bank as used) on ``probes``; a bank whose
    approximate search does not pay (timed on the rows ``timing_rows()`` returns) gets
    ``"exact"``, an exact flat index.

    Returns
    -------
    in_force : str, dict or None, the settings in force
    calibration : dict, the calibration report per calibrated bank
    """
    if isinstance(spec, str) and spec != "auto":
        apply_search_params([off.bank_index for off in offsets], spec)
        return spec, {}
    if isinstance(spec, dict):
        unknown = set(spec) - set(names)
        if unknown:
            raise ValueError(f"bank_search_params names banks {sorted(unknown)}, the banks are "
                             f"{names}")
        for name, off in zip(names, offsets):
            if spec.get(name) == EXACT:
                off.bank_index = build_bank_index(off.bank, None)
            elif name in spec:
                apply_search_params([off.bank_index], spec[name])
        return dict(spec), {}
    if spec not in (None, "auto"):
        raise TypeError(f"bank_search_params must be None, 'auto', a string or a dict per bank, "
                        f"got {type(spec).__name__}")
    chosen, calibration, rows = {}, {}, None
    for b in searched:
        name, off = names[b], offsets[b]
        if accuracy_knob(off.bank_index) is None:
            continue  # exact search: nothing to calibrate
        if rows is None:  # drawn once, and only when some bank is approximate
            rows = timing_rows()
        setting, calibration[name] = calibrate(off.bank_index, off.bank, off.k, probes,
                                               off.offsets_from_search, rows)
        if setting == EXACT:
            off.bank_index = build_bank_index(off.bank, None)
        chosen[name] = setting
        logger.info("bank search for the %s bank calibrated: %s", name, calibration[name])
    return chosen or None, calibration


def search_agreement(off, probes, pool_rate, calibrated=None):
    """Offsets of the probes through a bank's approximate search against exact search in the
    bank as used: ``{"cosine", "norm_error", "probes"}``, or None for an exact bank.
    ``calibrated``: that bank's "auto" report, which already made this very comparison."""
    if accuracy_knob(off.bank_index) is None:
        return None
    if calibrated:
        return {"cosine": calibrated["cosine"], "norm_error": calibrated["norm_error"],
                "probes": probes.shape[0]}
    return _agreement(off, _exact(off, pool_rate), probes)


def crowding(off, pool_rate, seed):
    """Label-free crowding of a LocalAdj bank (its sample as used), at fit time.

    ``mean_cos``: the mean pairwise cosine of the bank rows; ``mean_norm``: the norm of their
    mean; ``shared_direction``: over ``CROWDING_PROBES`` seeded bank rows ``p``, the mean cosine
    between ``off(p)`` (exact search) and the bank's mean row. In a cone every local mean points
    along the shared direction (near 1); without one it points at ``p``'s own neighbourhood (near
    0), and projecting ``p`` off it removes ``p``'s own direction (docs/science.md §1e).

    Returns
    -------
    dict of float
    """
    bank = off.bank
    m = bank.shape[0]
    total = bank.sum(axis=0, dtype=np.float64)
    stats = {"mean_cos": float((total @ total - m) / max(1, m * (m - 1))),
             "mean_norm": float(np.linalg.norm(total) / m)}
    probes = probe_rows(bank, CROWDING_PROBES, seed)
    exact = _exact(off, pool_rate)
    local = exact.offsets_from_search(*exact.top_k(probes))
    cosine, _ = offset_agreement(local, np.broadcast_to(total, local.shape))
    stats["shared_direction"] = float(cosine.mean())
    return stats


def _exact(off, pool_rate):
    """``off`` itself if it searches exactly, else an exact offset over the same bank rows."""
    return off if accuracy_knob(off.bank_index) is None else LocalAdjOffset(off.bank, pool_rate)


def _agreement(off, reference, probes):
    """Mean cosine and norm error of the probes' offsets through ``off`` against
    ``reference``, with the number of probes (at most ``REFERENCE_BUDGET`` entries of k)."""
    n_probes = max(1, min(probes.shape[0], REFERENCE_BUDGET // max(off.k, reference.k)))
    sample = probes[:n_probes]
    cosine, ratio = offset_agreement(off.offsets_from_search(*off.top_k(sample)),
                                     reference.offsets_from_search(*reference.top_k(sample)))
    return {"cosine": float(cosine.mean()), "norm_error": float(np.abs(ratio - 1).mean()),
            "probes": n_probes}


def top1_change(offsets, names, full_banks, rates, pool_rate, seed):
    """Ranking check of approximate bank search: the share of reference queries whose top-1
    among corrected bank rows changes when every active bank is searched exactly (in the bank
    as used: a sample stays the sample). Rows and queries: :func:`ranking_rows`. Returns the
    share, float, or None (logged) when ``RANKING_BUDGET`` leaves fewer than
    ``RANKING_MIN_ROWS`` rows at this k."""
    active = rates.active(names)
    return _top1_between(full_banks, names, rates, seed,
                         [offsets[b] for b in active],
                         [_exact(offsets[b], pool_rate) for b in active])


def sample_change(offsets, names, full_banks, others, rates, pool_rate, seed):
    """Bank sampling's ranking figure: the share of reference queries whose top-1 among
    corrected bank rows changes between the sample in use and another sample of its size
    (``others``: bank name -> exact offsets of that sample), both searched exactly. Rows and
    queries: :func:`ranking_rows`."""
    active = rates.active(names)
    fitted = [_exact(offsets[b], pool_rate) for b in active]
    return _top1_between(full_banks, names, rates, seed, fitted,
                         [others.get(names[b], off) for b, off in zip(active, fitted)])


def _top1_between(full_banks, names, rates, seed, first_way, second_way):
    """The share of reference queries whose top-1 among the ranking rows changes between the
    rows corrected through the offsets ``first_way`` and through ``second_way`` (one per active
    bank), or None (logged) when the budget leaves too few rows."""
    used = [names[b] for b in rates.active(names)]
    k = max(off.k for off in first_way + second_way)
    drawn = ranking_rows(full_banks, names, min(RANKING_ROWS, RANKING_BUDGET // k), seed)
    if drawn is None:
        logger.info("ranking check skipped (k = %d is too large, or the banks too small)", k)
        return None
    rows, queries = drawn
    batch = max(1, REFERENCE_BUDGET // k)
    top1 = [np.argmax(queries @ correct_rows(rows, way, rates, used, batch)[0].T, axis=1)
            for way in (first_way, second_way)]
    return float(np.mean(top1[0] != top1[1]))


def ranking_rows(full_banks, names, n_rows, seed):
    """The rows the ranking checks correct and the queries that rank them, or None when fewer
    than ``RANKING_MIN_ROWS`` rows can be drawn.

    Rows: up to ``n_rows`` rows of the first bank (gallery-side); queries: up to
    ``RANKING_QUERIES`` rows of the query bank (the first bank without one), uncorrected; when
    both banks have as many rows, never the row numbers of the corrected rows (no self-matches,
    no paired partners: partners would make the check blind: docs/results.md)."""
    first = full_banks[names[0]]
    query_side = full_banks.get("query", first)
    n_rows = min(n_rows, first.shape[0] // 2)
    if n_rows < RANKING_MIN_ROWS:
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(first.shape[0])
    rows = np.ascontiguousarray(first[np.sort(order[:n_rows])])
    if query_side.shape[0] == first.shape[0]:
        picks = order[n_rows:n_rows + RANKING_QUERIES]
    else:
        picks = rng.choice(query_side.shape[0], min(RANKING_QUERIES, query_side.shape[0]),
                           replace=False)
    return rows, np.ascontiguousarray(query_side[np.sort(picks)])
