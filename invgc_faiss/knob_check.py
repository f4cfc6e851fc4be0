"""What a scale knob costs on your own data: held-out R@1 of InvGC with the knob against exact InvGC.

The label-free checks inside the library compare offsets (behind ``bank_search_params="auto"``
and the drift warnings) and the top-1 of reference queries over corrected bank rows (the ranking
warning), not retrieval of true pairs. How much an offset error costs depends on the retrieval
margins of the data: on real E5 embeddings an offset cosine of 0.9995 cost 0.6 R@1, on generated
cone pairs 0.9994 cost 2.4; the ranking check is conservative on real data for that reason. With
paired reference banks, :func:`check_knobs` measures the ranking of true pairs itself. It holds
out pairs, corrects the held-out gallery rows once with exact bank search over whole banks (the
reference) and once per knob setting, and reports each setting's held-out R@1, its change
against the reference with a paired bootstrap 95 % interval, and the speed-up of the correction.
:func:`ladder` lists the settings of one approximate bank index; :meth:`KnobReport.cheapest`
picks the fastest one that the held-out pairs vouch for.
"""
import time
import warnings

import faiss
import numpy as np

from .bank_search import KNOB_LADDERS, accuracy_knob, best_seconds, build_bank_index
from .correction import InvGC
from .heldout import holdout_rows
from .measures import bootstrap_interval, diagonal_ranks, hits
from .projected_bank import KNOB as PROJECTED_KNOB, projected_dimension
from .validation import as_unit_banks


class KnobReport:
    """Result of :func:`check_knobs`.

    Attributes
    ----------
    rows : list of dict
        One per setting, the reference (``"exact"``) first: ``name``, ``R@1`` (%), ``dR@1`` and
        ``dR@1_interval`` (95 %, paired bootstrap over held-out queries), ``correct_s`` (seconds
        to correct the held-out gallery: the best of ``TIMING_REPEATS`` after a warm call),
        ``speed_up`` (reference seconds / these), ``fit_s``,
        ``warned`` (the messages of RuntimeWarnings raised while fitting or correcting) and
        ``bank_search_params`` (the settings in force, e.g. what "auto" chose).
    n_holdout : int
    """

    def __init__(self, rows, n_holdout):
        self.rows = rows
        self.n_holdout = n_holdout

    def cheapest(self, max_loss=0.5):
        """The fastest setting whose held-out R@1 change has its 95 % interval's lower end at or
        above ``-max_loss`` points (the reference itself when none has): its InvGC keyword
        arguments, with the bank search settings "auto" chose, ready for
        ``InvGCIndex(..., **params, **report.cheapest())``. The lower end, not the mean: on the
        generated 200k bank a setting with mean -0.20 [-1.10, +0.65] lost 1.64 R@1 on test."""
        if not max_loss >= 0:
            raise ValueError(f"max_loss must be >= 0 (R@1 points), got {max_loss!r}")
        fine = [row for row in self.rows if row["dR@1_interval"][0] >= -max_loss]
        return dict(max(fine, key=lambda row: row["speed_up"])["knob"])

    def to_dict(self):
        return {"rows": self.rows, "n_holdout": self.n_holdout}

    def __str__(self):
        lines = [f"held-out pairs: {self.n_holdout}  (R@1 in %, dR@1 against exact InvGC with "
                 "95% interval; speed-up of correcting the held-out gallery)",
                 f"{'setting':<24} {'R@1':>6} {'dR@1':>6} {'interval':>16} {'speed-up':>8}  "
                 "warned  bank search"]
        for row in self.rows:
            low, high = row["dR@1_interval"]
            lines.append(f"{row['name']:<24} {row['R@1']:6.2f} {row['dR@1']:+6.2f} "
                         f"{f'[{low:+.2f}, {high:+.2f}]':>16} {row['speed_up']:8.2f}  "
                         f"{'yes' if row['warned'] else 'no':<6}  {row['bank_search_params']}")
        return "\n".join(lines)


#: check_knobs times each setting's correction this many times (after a warm call), keeps the best
TIMING_REPEATS = 2


def check_knobs(query_bank, gallery_bank, knobs, *, params=None, holdout=0.1, max_holdout=2000,
                seed=0, n_bootstrap=2000, normalize_input=False):
    """Held-out R@1 of InvGC under each scale-knob setting against exact InvGC.

    Parameters
    ----------
    query_bank, gallery_bank : array_like of shape (M, d), unit rows, paired
        Row i of one bank matches row i of the other (training captions and their images).
    knobs : dict ``{name: {InvGC keyword: value}}``
        The settings to check, e.g. ``{"IVF auto": {"query_bank_index": "IVF1024,Flat"},
        "HNSW ef 64": {"query_bank_index": "HNSW32", "bank_search_params": "efSearch=64"},
        "sample 4096": {"max_bank_size": 4096}, "64 dims": {"n_components": 64}}``.
    params : dict, optional
        The correction the knobs are applied to (form, rates, ``pool_rate``), as for
        :class:`~invgc_faiss.InvGC`; default the constructor's defaults. The reference uses these
        with exact bank search over the whole banks in all d dimensions
        (``max_bank_size=None, n_components=None``); a knob sets what it names, the rest as the
        reference.
    holdout : float or int
        Held-out pairs: a share or a count (at most ``max_holdout``, at least 50).
    max_holdout : int
    seed : int
    n_bootstrap : int
    normalize_input : bool

    Returns
    -------
    KnobReport
    """
    query_bank, gallery_bank = as_unit_banks(query_bank, gallery_bank, normalize=normalize_input)
    if query_bank.shape[0] != gallery_bank.shape[0]:
        raise ValueError(f"check_knobs needs paired banks (row i matches row i), got "
                         f"{query_bank.shape[0]} and {gallery_bank.shape[0]} rows")
    if not isinstance(knobs, dict) or not knobs:
        raise TypeError("knobs must be a non-empty dict {name: {InvGC keyword: value}}")
    rng = np.random.default_rng(seed)
    held, rest = holdout_rows(query_bank.shape[0], holdout, max_holdout, rng, minimum=50,
                              what="check_knobs")
    queries, gallery = query_bank[held], gallery_bank[held]
    banks = {"query_bank": query_bank[rest], "gallery_bank": gallery_bank[rest]}
    base = {**(params or {}), "max_bank_size": None, "n_components": None}
    settings = [("exact", {})] + list(knobs.items())
    built = {}  # factory string -> bank index over the banks here, shared by the settings
    rows, reference_hits = [], None
    for name, knob in settings:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            start = time.perf_counter()
            correction = InvGC(**{**base, **_shared_bank_indexes(knob, banks, built)}).fit(**banks)
            fit_s = time.perf_counter() - start
            correction.transform(gallery[:16])  # warm: kernels loaded, buffers allocated
            correct_s, corrected = best_seconds(lambda: correction.transform(gallery),
                                                TIMING_REPEATS)
        top1 = hits(diagonal_ranks(queries @ corrected.T), ks=(1,))  # 100 where top-1, else 0
        if reference_hits is None:
            reference_hits, reference_s = top1, correct_s
        diff = top1 - reference_hits
        rows.append({"name": name, "R@1": float(top1.mean()), "dR@1": float(diff.mean()),
                     "dR@1_interval": list(bootstrap_interval(diff, rng, n_bootstrap)),
                     "correct_s": correct_s, "speed_up": reference_s / correct_s, "fit_s": fit_s,
                     "warned": [str(w.message) for w in caught
                                if issubclass(w.category, RuntimeWarning)],
                     "bank_search_params": correction.report_.bank_search_params,
                     "knob": _resolved(knob, correction)})
    return KnobReport(rows, queries.shape[0])


def ladder(spec, *, bank="query", values=None):
    """Settings of one approximate bank index for :func:`check_knobs`, cheapest first.

    ``{"HNSW32 efSearch=16": {"query_bank_index": "HNSW32", "bank_search_params":
    "efSearch=16"}, ...}`` over ``values`` (default: the values "auto" tries,
    :data:`invgc_faiss.bank_search.KNOB_LADDERS`; for IVF those below ``nlist``, then ``nlist``).
    The index is built once for all of them."""
    if projected_dimension(spec) is not None:
        index, knob = None, PROJECTED_KNOB
    else:
        index = faiss.index_factory(8, spec, faiss.METRIC_INNER_PRODUCT)
        knob = accuracy_knob(index)
    if knob is None:
        raise ValueError(f"{spec!r} has no accuracy knob (nprobe, efSearch, k_factor_rf) to try")
    if values is None:
        values = list(KNOB_LADDERS[knob])
        if knob == "nprobe":
            nlist = faiss.extract_index_ivf(index).nlist
            values = [v for v in values if v < nlist] + [nlist]
    return {f"{spec} {knob}={v}": {f"{bank}_bank_index": spec, "bank_search_params": f"{knob}={v}"}
            for v in values}


def _shared_bank_indexes(knob, banks, built):
    """``knob`` with its bank index factory strings replaced by indexes built once per string
    and bank (settings that differ only in ``bank_search_params`` then share one index; the
    knob values are set on it again by each fit)."""
    knob = dict(knob)
    if knob.get("max_bank_size") is not None:  # a sample: the bank index holds other rows
        return knob
    for key in ("gallery_bank_index", "query_bank_index"):
        spec = knob.get(key)
        if isinstance(spec, str):
            bank = banks[key[:-len("_index")]]
            if (key, spec) not in built:
                built[key, spec] = build_bank_index(bank, spec)
            knob[key] = built[key, spec]
    return knob


def _resolved(knob, correction):
    """The knob as InvGC keyword arguments, with the bank search settings "auto" chose and
    ``max_bank_size=None, n_components=None`` unless the knob sets them (the setting as checked:
    whole banks, all d dimensions)."""
    resolved = {"max_bank_size": None, "n_components": None, **knob}
    if correction.report_.bank_search_params is not None:
        resolved["bank_search_params"] = correction.report_.bank_search_params
    return resolved
