"""What a scale knob costs on your own data: held-out R@1 of InvGC with the knob against exact InvGC.

The label-free checks inside the library (offset agreement on bank rows, behind
``bank_search_params="auto"`` and the drift warnings) compare offsets, not rankings. How much an
offset error costs depends on the retrieval margins of the data. On real E5 embeddings an offset
cosine of 0.9995 cost 0.6 R@1; on generated cone pairs 0.9994 cost 2.4. With paired reference
banks, :func:`check_knobs` measures the ranking itself. It holds out pairs, corrects the held-out
gallery rows once with exact bank search over whole banks (the reference) and once per knob
setting, and reports each setting's held-out R@1, its change against the reference with a paired
bootstrap 95 % interval, and the speed-up of the correction.
"""
import time
import warnings

import numpy as np

from . import heldout
from .correction import InvGC
from .validation import as_float_matrix, as_unit_rows


class KnobReport:
    """Result of :func:`check_knobs`.

    Attributes
    ----------
    rows : list of dict
        One per setting, the reference (``"exact"``) first: ``name``, ``R@1`` (%), ``dR@1`` and
        ``dR@1_interval`` (95 %, paired bootstrap over held-out queries), ``correct_s`` (seconds
        to correct the held-out gallery), ``speed_up`` (reference seconds / these), ``fit_s``,
        ``warned`` (the messages of RuntimeWarnings raised while fitting or correcting) and
        ``bank_search_params`` (the settings in force, e.g. what "auto" chose).
    n_holdout : int
    """

    def __init__(self, rows, n_holdout):
        self.rows = rows
        self.n_holdout = n_holdout

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
        "sample 4096": {"max_bank_size": 4096}}``.
    params : dict, optional
        The correction the knobs are applied to (form, rates, ``pool_rate``), as for
        :class:`~invgc_faiss.InvGC`; default the constructor's defaults. The reference uses these
        with exact bank search over the whole banks (``max_bank_size=None``).
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
    query_bank = as_unit_rows(as_float_matrix(query_bank, name="query_bank"), name="query_bank",
                              normalize=normalize_input)
    gallery_bank = as_unit_rows(as_float_matrix(gallery_bank, query_bank.shape[1],
                                                name="gallery_bank"),
                                name="gallery_bank", normalize=normalize_input)
    if query_bank.shape[0] != gallery_bank.shape[0]:
        raise ValueError(f"check_knobs needs paired banks (row i matches row i), got "
                         f"{query_bank.shape[0]} and {gallery_bank.shape[0]} rows")
    if not isinstance(knobs, dict) or not knobs:
        raise TypeError("knobs must be a non-empty dict {name: {InvGC keyword: value}}")
    rng = np.random.default_rng(seed)
    held, rest = heldout.holdout_rows(query_bank.shape[0], holdout, max_holdout, rng, minimum=50,
                                      what="check_knobs")
    queries, gallery = query_bank[held], gallery_bank[held]
    banks = {"query_bank": query_bank[rest], "gallery_bank": gallery_bank[rest]}
    base = {**(params or {}), "max_bank_size": None}
    settings = [("exact", base)] + [(name, {**base, **knob}) for name, knob in knobs.items()]
    rows, reference_hits = [], None
    for name, setting in settings:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            start = time.perf_counter()
            correction = InvGC(**setting).fit(**banks)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            corrected = correction.transform(gallery)
            correct_s = time.perf_counter() - start
        hits = (heldout.diagonal_ranks(queries @ corrected.T) == 1).astype(np.float64)
        if reference_hits is None:
            reference_hits, reference_s = hits, correct_s
        diff = 100 * (hits - reference_hits)
        means = diff[rng.integers(0, diff.size, size=(n_bootstrap, diff.size))].mean(axis=1)
        rows.append({"name": name, "R@1": 100 * float(hits.mean()), "dR@1": float(diff.mean()),
                     "dR@1_interval": [float(np.percentile(means, 2.5)),
                                       float(np.percentile(means, 97.5))],
                     "correct_s": correct_s, "speed_up": reference_s / correct_s, "fit_s": fit_s,
                     "warned": [str(w.message) for w in caught
                                if issubclass(w.category, RuntimeWarning)],
                     "bank_search_params": correction.bank_search_params_})
    return KnobReport(rows, queries.shape[0])
