"""Fit-time checks of the scale knobs, as a report, and every warning of the correction's fit and add.

What makes LocalAdj offsets approximate -- a bank sample (``max_bank_size``), an approximate
bank index -- is handled here, once per fit, for the banks the correction will search:

1. *bank search settings*: ``bank_search_params`` applied as given, or ``"auto"``: each
   approximate bank index gets the cheapest setting whose offsets on probe rows match exact
   search (:func:`invgc_faiss.bank_search.calibrate`), or exact search where that does not pay;
2. *offsets*: each knob-bearing bank's offsets on ``AUTO_SAMPLE`` probe rows against exact search
   in the whole bank (mean cosine, norm error);
3. *ranking*: the share of reference queries whose top-1 among corrected bank rows changes when
   every active bank is searched exactly in full (:func:`top1_change`).

:func:`run` returns a :class:`FitReport`; :func:`warn_fit` writes its warnings (one
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
from .offsets import LocalAdjOffset, correct_rows, pool_size
from .validation import warn_caller

logger = logging.getLogger(__name__)

#: Share of a batch's rows allowed to get fewer than k bank neighbours before a warning
SHORT_WARN_FRACTION = 0.01
#: A bank sample or approximate bank search whose offsets agree less than this with exact
#: search (on probe rows, at fit time) is accepted with a warning (thresholds: docs/scale.md)
WARN_MIN_COSINE = 0.995
WARN_MAX_NORM_ERROR = 0.02
#: ... and so are knobs that change the top-1 corrected bank row of more than this share of
#: reference queries (the ranking check). Chosen on real eng->deu and generated 200k banks
#: (benchmarks/warn_threshold.py): every setting at or below it lost <= 1 R@1 there; offset
#: cosine alone cannot be one threshold (0.9969 lost 1.2 R@1 on real data, 0.99985 lost 1.3
#: on generated data)
WARN_MAX_TOP1_CHANGE = 0.12
#: Corrected gallery-side bank rows, and query-side bank rows ranking them, of that check
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
        Per bank with a knob: mean cosine and norm error of its offsets against exact search in
        the whole bank, and the probe rows used.
    top1_change : float or None
        The ranking check: the share of reference queries whose top-1 corrected bank row the
        knobs change (None: all exact, offsets as close as "auto" asks, or not checked).
    knobs : dict
        Per bank checked: the knobs that make its offsets approximate, as a user raises them.
    kept : dict
        Per sampled bank checked: ``(rows kept, rows given)``.
    gallery_alone_unchanged : bool
        A gallery bank alone with the default rates: the correction is the identity.
    """

    bank_search_params: object = None
    calibration: dict = dataclasses.field(default_factory=dict)
    agreement: dict = dataclasses.field(default_factory=dict)
    top1_change: float = None
    knobs: dict = dataclasses.field(default_factory=dict)
    kept: dict = dataclasses.field(default_factory=dict)
    gallery_alone_unchanged: bool = False

    def warnings(self):
        """The warnings this report calls for: a list of ``(message, category)``."""
        out = []
        if self.gallery_alone_unchanged:
            out.append(("with a gallery bank alone the defaults leave vectors unchanged (no "
                        "untuned setting was safe in the defaults study): pass a query bank, set "
                        "rho_g, or use invgc_faiss.tune", UserWarning))
        drifting = {name: r for name, r in self.agreement.items() if (
            r["cosine"] < WARN_MIN_COSINE or r["norm_error"] > WARN_MAX_NORM_ERROR)}
        reordered = self.top1_change is not None and self.top1_change > WARN_MAX_TOP1_CHANGE
        if not drifting and not reordered:
            return out
        figures = [f"the {name} bank's offsets drift from exact search (mean cosine "
                   f"{r['cosine']:.4f}, norm error {100 * r['norm_error']:.1f}% on "
                   f"{r['probes']} bank rows)" for name, r in drifting.items()]
        if reordered:
            figures.append(f"the top-1 corrected bank row of {100 * self.top1_change:.0f}% of "
                           "reference queries differs from exact search over the whole banks")
        kept = ", ".join(f"{name} bank {rows} of {given}"
                         for name, (rows, given) in self.kept.items())
        named = dict.fromkeys(f"max_bank_size (rows kept: {kept})" if knob == "max_bank_size"
                              else knob for knobs in self.knobs.values() for knob in knobs)
        out.append((f"{'; '.join(figures)}: results may lose accuracy; raise "
                    f"{' or '.join(named)}, or measure the cost on paired reference data with "
                    "invgc_faiss.check_knobs", RuntimeWarning))
        return out


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


def run(offsets, names, full_banks, rates, searched, *, spec, pool_rate, seed):
    """Apply the bank search settings and check the knobs of the LocalAdj banks ``searched``.

    Parameters
    ----------
    offsets : list of LocalAdjOffset, one per name (their bank indexes are set here)
    names : list of str
    full_banks : dict ``{name: rows}``, the banks as given, before any sample
    rates : Rates, the rates in force (resolved)
    searched : list of int, positions of the banks the correction will search
    spec : the correction's ``bank_search_params``
    pool_rate : float
    seed : int, the correction's ``bank_seed`` (draws the probe rows)

    Returns
    -------
    FitReport
    """
    report = FitReport()
    first = full_banks[names[0]]
    probes = probe_rows(first, AUTO_SAMPLE, seed)
    report.bank_search_params, report.calibration = apply_bank_search(
        spec, offsets, names, searched, probes, lambda: probe_rows(first, AUTO_TIMING_ROWS, seed))
    for b in searched:
        name, off, full = names[b], offsets[b], full_banks[names[b]]
        report.knobs[name] = knobs_of(off, full)
        if "max_bank_size" in report.knobs[name]:
            report.kept[name] = (off.bank.shape[0], full.shape[0])
        agreement = offset_agreement_report(off, full, probes, pool_rate,
                                            report.calibration.get(name))
        if agreement is not None:
            report.agreement[name] = agreement
    # offsets as close to exact search as "auto" asks: no such setting changed more than 6.1 %
    # of top-1s in benchmarks/warn_threshold.py, so the ranking check is skipped
    close = all(name in report.agreement
                and report.agreement[name]["cosine"] >= AUTO_MIN_COSINE
                and report.agreement[name]["norm_error"] <= AUTO_MAX_NORM_ERROR
                for name, knobs in report.knobs.items() if knobs)
    active = rates.active(names)
    if not close and any(report.knobs.get(names[b]) for b in active):
        report.top1_change = top1_change(offsets, names, full_banks, rates, pool_rate, seed)
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


def offset_agreement_report(off, full, probes, pool_rate, calibrated=None):
    """Offsets of the probes through one bank's knobs against exact search in the whole bank:
    ``{"cosine", "norm_error", "probes"}``, or None without knobs or (logged) when the whole
    bank's top-k of the probes would be too large. ``calibrated``: that bank's "auto" report,
    which already made this comparison when the bank is not sampled."""
    if not knobs_of(off, full):
        return None
    if off.bank.shape[0] == full.shape[0] and calibrated:
        return {"cosine": calibrated["cosine"], "norm_error": calibrated["norm_error"],
                "probes": probes.shape[0]}
    exact = LocalAdjOffset(full, pool_rate)
    n_probes = min(probes.shape[0], REFERENCE_BUDGET // exact.k)
    if n_probes < 16:
        logger.info("offsets of the knobs not checked (k = %d of the whole bank is too large "
                    "for the check)", exact.k)
        return None
    sample = probes[:n_probes]
    cosine, ratio = offset_agreement(off.offsets_from_search(*off.top_k(sample)),
                                     exact.offsets_from_search(*exact.top_k(sample)))
    return {"cosine": float(cosine.mean()), "norm_error": float(np.abs(ratio - 1).mean()),
            "probes": n_probes}


def top1_change(offsets, names, full_banks, rates, pool_rate, seed):
    """Label-free ranking check of the knobs: the share of reference queries whose top-1 among
    corrected bank rows changes when every active bank is searched exactly in full.

    Rows: up to ``RANKING_ROWS`` rows of the first bank (gallery-side), corrected twice -- as
    fitted, and with exact offsets over the whole banks; queries: up to ``RANKING_QUERIES`` rows
    of the query bank (the first bank without one), uncorrected; when both banks have as many
    rows, never the row numbers of the corrected rows (no self-matches, no paired partners:
    partners would make the check blind: docs/results.md). Returns the share, float, or None
    (logged) when ``RANKING_BUDGET`` would leave fewer than ``RANKING_MIN_ROWS`` rows at this k.
    """
    active = rates.active(names)
    used = [names[b] for b in active]
    first = full_banks[names[0]]
    query_side = full_banks.get("query", first)
    k = max(pool_size(pool_rate, full_banks[name].shape[0]) for name in used)
    n_rows = min(RANKING_ROWS, first.shape[0] // 2, RANKING_BUDGET // k)
    if n_rows < RANKING_MIN_ROWS:
        logger.info("ranking check of the knobs skipped (k = %d of the whole banks or %d bank "
                    "rows is too large or too small for it)", k, first.shape[0])
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(first.shape[0])
    rows = np.ascontiguousarray(first[np.sort(order[:n_rows])])
    if query_side.shape[0] == first.shape[0]:
        picks = order[n_rows:n_rows + RANKING_QUERIES]
    else:
        picks = rng.choice(query_side.shape[0], min(RANKING_QUERIES, query_side.shape[0]),
                           replace=False)
    queries = np.ascontiguousarray(query_side[np.sort(picks)])
    as_fitted = correct_rows(rows, [offsets[b] for b in active], rates, used, n_rows)[0]
    # the same correction with exact search over the whole banks, in batches of at most
    # REFERENCE_BUDGET neighbour entries
    exact = [LocalAdjOffset(full_banks[name], pool_rate) for name in used]
    in_full = correct_rows(rows, exact, rates, used, max(1, REFERENCE_BUDGET // k))[0]
    top1 = [np.argmax(queries @ corrected.T, axis=1) for corrected in (as_fitted, in_full)]
    return float(np.mean(top1[0] != top1[1]))
