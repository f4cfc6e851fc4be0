"""The InvGC correction: fitted once on reference banks, then maps gallery batches to corrected vectors.

Math, for a gallery row ``x`` (unit norm) and a bank ``B`` (``M x d``, unit rows), in the
paper's form with rate ``r`` (the projection form, rates ``rho``, is in :mod:`invgc_faiss.forms`)::

    x_B = normalize(x - r * off_B(x))
    x'  = normalize(1/2 x_{B_g} + 1/2 x_{B_q})        (one bank: x' = x_B)

with the subtractive offset ``off_B`` of either variant:

* ``"localadj"`` (default): ``k = max(1, floor(pool_rate * M))``, ``s_j = x . b_j``,
  ``off(x) = (1/k) sum_{j in N_k(x)} s_j b_j`` over the ``k`` most similar bank rows;
  degree ``deg(x) = sum_{j in N_k(x)} s_j``. An approximate bank index may find fewer than ``k``
  rows: the mean is then over the rows found (see ``kernels.weighted_neighbour_mean``), and a
  warning names the knob to turn when more than ``SHORT_WARN_FRACTION`` of a batch came back short.
* ``"full"``: ``off(x) = C x - mu b_mean`` with ``C = B^T B / M``, ``b_mean`` the mean bank row,
  ``mu = x_mean . b_mean`` and ``x_mean`` the gallery mean (from :meth:`InvGC.fit_gallery_mean`,
  else the gallery-side bank mean). This equals ``(1/M) (W_x - mu) B`` with ``W = X B^T``: an
  affine map, O(d^2) per vector whatever M. Its degree is ``x . b_mean - mu``, the mean centred
  edge weight.

Design of the LocalAdj hot path (measured by ``benchmarks/bench_add.py``): faiss finds the top-k
bank neighbours (``IndexFlatIP``: BLAS blocks with heap selection inside faiss, memory O(batch x k)),
then a Numba kernel gathers the similarity-weighted mean of the k rows. The alternative -- a numpy
BLAS block ``X B^T`` followed by a Numba parallel top-k select and the same gather -- computes the
same thing, needs O(batch x M) memory for the block, and was slower in that benchmark (gallery
20k, two banks of 50k, d = 384, k = 500, 2 cores: 19.9 s for this design against 38.2 s, and
188 MiB against 832 MiB of working memory), so it lives only in ``benchmarks/``. The gather costs k*d per row against M*d for the search, so the add
throughput tracks faiss's own kNN throughput.
"""
import logging
import math
import warnings

import numpy as np

from . import forms, gpu, kernels
from .bank_search import (AUTO_MAX_NORM_ERROR, AUTO_MIN_COSINE, AUTO_SAMPLE,
                          AUTO_TIMING_ROWS, EXACT, accuracy_knob,
                          apply_search_params, build_bank_index, calibrate, offset_agreement)
from .validation import as_float_matrix, as_unit_rows, check_pool_rate, check_positive_int

logger = logging.getLogger(__name__)

VARIANTS = ("localadj", "full")
#: Default LocalAdj pool and bank sample, chosen by the defaults study (README)
DEFAULT_POOL_RATE = 0.2
DEFAULT_MAX_BANK_SIZE = 4096
#: Share of a batch's rows allowed to get fewer than k bank neighbours before a warning
SHORT_WARN_FRACTION = 0.01
#: A bank sample or approximate bank search whose offsets agree less than this with exact
#: search (on probe rows, at fit time) is accepted with a warning (thresholds: README, scale)
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


def knobs_of(off, full):
    """The knobs that make a LocalAdj bank's offsets approximate, as a user would raise them:
    ``max_bank_size`` when ``off`` holds a sample of the ``full`` bank, and the accuracy knob of
    an approximate bank index (empty list: exact search in the whole bank)."""
    knob = accuracy_knob(off.bank_index)
    sampled = off.bank.shape[0] < full.shape[0]
    return ((["max_bank_size"] if sampled else [])
            + ([f"{knob} (bank_search_params)"] if knob else []))


def pool_size(pool_rate, bank_size):
    """Number of bank neighbours LocalAdj averages over: ``max(1, floor(pool_rate * M))``."""
    return max(1, int(math.floor(pool_rate * bank_size)))


class LocalAdjOffset:
    """Subtractive offset of one bank, LocalAdj variant (see module docstring).

    Parameters
    ----------
    bank : ndarray of shape (M, d), float32, unit rows (validated by the caller)
    pool_rate : float in (0, 1]
    bank_index : None, str or faiss.Index -- see :func:`invgc_faiss.bank_search.build_bank_index`
    device : {"cpu", "gpu"}, as resolved by :func:`invgc_faiss.gpu.resolve_device`
        ``"gpu"`` moves an exact bank (``bank_index=None``) to the GPU (:class:`gpu.GpuBank`);
        the CPU ``bank_index`` stays for the fit-time checks.
    """

    def __init__(self, bank, pool_rate, bank_index=None, device="cpu"):
        self.bank = bank
        self.k = pool_size(pool_rate, bank.shape[0])
        self.on_gpu = gpu.GpuBank(bank, self.k) if device == "gpu" and bank_index is None else None
        self.bank_index = build_bank_index(bank, bank_index)

    def __call__(self, x, offsets, degrees):
        """Write ``off(x)`` into ``offsets`` (n, d) and ``deg(x)`` into ``degrees`` (n,);
        return the number of bank neighbours found per row, int64 (n,)."""
        if self.on_gpu is not None:
            return self.on_gpu(x, offsets, degrees)
        sims, nbrs = self.bank_index.search(x, self.k)
        found = np.empty(x.shape[0], dtype=np.int64)
        kernels.weighted_neighbour_mean(self.bank, sims, nbrs, offsets, degrees, found)
        return found

    def offsets_from_search(self, sims, nbrs):
        """Offsets (n, d) float32 from a search result ``sims, nbrs`` (n, k) of this bank."""
        n = sims.shape[0]
        offsets = np.empty((n, self.bank.shape[1]), dtype=np.float32)
        kernels.weighted_neighbour_mean(self.bank, sims, nbrs, offsets,
                                        np.empty(n, np.float32), np.empty(n, np.int64))
        return offsets


class FullOffset:
    """Subtractive offset of one bank, full-adjacency variant: ``off(x) = C x - mu b_mean``.

    Parameters
    ----------
    bank : ndarray of shape (M, d), float32, unit rows (validated by the caller)
    """

    def __init__(self, bank):
        bank64 = bank.astype(np.float64)
        self.bank = bank
        # C and b_mean accumulated in float64, applied in float32 (one sgemm per batch)
        self.cov = (bank64.T @ bank64 / bank.shape[0]).astype(np.float32)  # C, (d, d), symmetric
        self.bank_mean = bank64.mean(axis=0).astype(np.float32)  # b_mean, (d,)
        self.mu = np.float32(0.0)

    def set_gallery_mean(self, gallery_mean):
        """Set ``mu = x_mean . b_mean`` from the gallery mean row (d,)."""
        self.mu = np.float32(np.asarray(gallery_mean, np.float64) @ self.bank_mean)

    def __call__(self, x, offsets, degrees):
        """Write ``off(x)`` into ``offsets`` (n, d) and ``x . b_mean - mu`` into ``degrees`` (n,);
        return None (every bank row takes part)."""
        np.matmul(x, self.cov, out=offsets)
        offsets -= self.mu * self.bank_mean
        np.matmul(x, self.bank_mean, out=degrees)
        degrees -= self.mu
        return None


class InvGC:
    """InvGC gallery correction over one or two reference banks.

    The constructor stores parameters; :meth:`fit` takes the banks and builds what the correction
    needs (bank search indexes for LocalAdj, ``C``, ``b_mean`` for the full variant).

    Parameters
    ----------
    form : {"projection", "paper"}, optional
        Which correction (:mod:`invgc_faiss.forms`). Default: ``"paper"`` when ``r_g``/``r_q``
        are given, else ``"projection"``.
    r_g, r_q : float >= 0, optional
        The paper form's rates of the gallery-side and query-side banks (unset: 0.25 and 1.5).
        ``r_g = r_q = 0`` is the identity, exactly.
    rho_g, rho_q : float >= 0, optional
        The projection form's rates (unset: ``rho_q = 1``, ``rho_g = 0``: the gallery bank is not
        used; with a gallery bank alone that is the identity, and a warning says so -- no untuned
        gallery-side setting was safe in the defaults study).
    variant : {"localadj", "full"}
    pool_rate : float in (0, 1]
        LocalAdj neighbourhood as a share of each bank: ``k = max(1, floor(pool_rate * M))``.
        Default 0.2.
    gallery_bank_index, query_bank_index : None, str or faiss.Index
        LocalAdj bank search (default exact ``IndexFlatIP``; see ``bank_search``): a faiss
        factory string (``"IVF1024,Flat"``, ``"HNSW32"``), ``"Proj{m}"`` (top k from an
        m-dimensional projection, reranked exactly: :mod:`invgc_faiss.projected_bank`) or an index.
    bank_search_params : None, "auto", str or dict
        Accuracy knobs of approximate bank indexes, faiss ParameterSpace syntax
        (``"nprobe=16"``, ``"efSearch=128"``, ``"k_factor_rf=2"``), for every bank index, or per
        bank (``{"query": "nprobe=32"}``). ``None`` (default) or ``"auto"``: each approximate bank
        index gets the cheapest setting whose offsets on a sample of bank rows match exact search
        (mean cosine >= 0.99995, mean norm error <= 0.2 %;
        :func:`invgc_faiss.bank_search.calibrate`);
        a knob set by hand on a bank index you pass is replaced unless you give this parameter.
    max_bank_size : int or None
        Scale knob: a bank with more rows is replaced by a uniform random sample of this many
        (seed ``bank_seed``); ``k`` follows the sample (``pool_rate`` of it). Default 4096: the
        offsets are means over a fifth of the bank and survive the sampling (README's table);
        ``None`` keeps every row.
    bank_seed : int
    normalize_input : bool
        False (default): gallery and bank rows must already have unit norm, else ``ValueError``.
        True: they are L2-normalized first (zero rows still raise).
    batch_size : int
        Rows corrected at once; bounds working memory to O(batch_size x (k + d)).
    device : {"cpu", "gpu"}
        ``"gpu"``: exact LocalAdj banks are searched and averaged on the GPU
        (:mod:`invgc_faiss.gpu`); without a usable GPU a warning says why and the CPU runs it.
        A placement, not a parameter of the result: files do not store it.

    Attributes
    ----------
    offsets_ : list of LocalAdjOffset or FullOffset, one per bank (gallery bank first)
    form_ : str, the form in use
    rates_ : ndarray of shape (n_banks,), float64, the rates in use (``r`` or ``rho``)
    bank_search_params_ : str, dict or None, the bank search settings in force
    calibration_ : dict, per calibrated bank: the knob value, offset cosine and norm error
    agreement_ : dict, per bank with a sample or an approximate search: mean cosine and norm
        error of its offsets against exact search in the whole bank, and the probe rows used
    top1_change_ : float or None, the ranking check of those knobs: the share of reference
        queries whose top-1 corrected bank row they change (None: all exact, or not checked)
    bank_names_ : list of str, ``"gallery"`` and/or ``"query"``
    device_ : str, the device in use (``"cpu"`` when a GPU was asked for but cannot run)
    d_ : int
    gallery_mean_ : ndarray of shape (d,), float64 (full variant only; None for LocalAdj)
    """

    def __init__(self, *, form=None, r_g=None, r_q=None, rho_g=None, rho_q=None,
                 variant="localadj", pool_rate=DEFAULT_POOL_RATE, gallery_bank_index=None,
                 query_bank_index=None, bank_search_params=None,
                 max_bank_size=DEFAULT_MAX_BANK_SIZE, bank_seed=0, normalize_input=False,
                 batch_size=16384, device="cpu"):
        self.form, given = forms.resolve_form(form, r_g, r_q, rho_g, rho_q)
        self.r_g, self.r_q = (given["gallery"], given["query"]) if self.form == "paper" else (None, None)
        self.rho_g, self.rho_q = (given["gallery"], given["query"]) if self.form == "projection" else (None, None)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.pool_rate = check_pool_rate(pool_rate)
        self.gallery_bank_index = gallery_bank_index
        self.query_bank_index = query_bank_index
        self.bank_search_params = bank_search_params
        self.max_bank_size = (None if max_bank_size is None
                              else check_positive_int(max_bank_size, "max_bank_size"))
        self.bank_seed = int(bank_seed)
        self.normalize_input = bool(normalize_input)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.device = gpu.check_device(device)
        self.offsets_ = None

    def get_params(self):
        """Constructor parameters that persistence can store as JSON (bank indexes excluded).
        Once fitted, ``bank_search_params`` is the setting in force (calibrated by "auto"), so a
        reloaded index searches its banks exactly as this one does."""
        search_params = (self.bank_search_params_ if getattr(self, "offsets_", None) is not None
                         else self.bank_search_params)
        return {"form": self.form, "r_g": self.r_g, "r_q": self.r_q, "rho_g": self.rho_g,
                "rho_q": self.rho_q, "variant": self.variant,
                "pool_rate": self.pool_rate, "normalize_input": self.normalize_input,
                "batch_size": self.batch_size, "bank_search_params": search_params,
                "max_bank_size": self.max_bank_size, "bank_seed": self.bank_seed}

    def fit(self, gallery_bank=None, query_bank=None, d=None, all_banks=False,
            ranking_check=True):
        """Validate the banks and build the per-bank offsets.

        Parameters
        ----------
        gallery_bank : array_like of shape (M_g, d) or None
        query_bank : array_like of shape (M_q, d) or None
            At least one bank is required; both must have the same dimension ``d``.
        d : int or None
            Expected dimension (the index's), if known.
        all_banks : bool
            Calibrate and check the bank search of every bank, not only of those the rates use
            (rerank mode, whose rates change at search time, searches every bank).
        ranking_check : bool
            Run the ranking check of the knobs (:meth:`_top1_change`; a second or two on 20k-row
            banks). The tuner's fits, which only score offsets, pass False.

        Returns
        -------
        self
        """
        if gallery_bank is None and query_bank is None:
            raise ValueError("InvGC needs at least one reference bank (gallery_bank or query_bank)")
        given = {"gallery": (self.r_g, self.rho_g), "query": (self.r_q, self.rho_q)}
        banks, full_banks, names, rates, specs = [], [], [], [], []
        for name, bank, spec in (("gallery", gallery_bank, self.gallery_bank_index),
                                 ("query", query_bank, self.query_bank_index)):
            if bank is None:
                continue
            bank = as_float_matrix(bank, d, name=f"{name}_bank")
            bank = as_unit_rows(bank, name=f"{name}_bank", normalize=self.normalize_input)
            full_banks.append(bank)
            if self.max_bank_size is not None and bank.shape[0] > self.max_bank_size:
                rng = np.random.default_rng(self.bank_seed)
                keep = np.sort(rng.choice(bank.shape[0], self.max_bank_size, replace=False))
                bank = np.ascontiguousarray(bank[keep])
            d = bank.shape[1]
            rate = given[name][0 if self.form == "paper" else 1]
            banks.append(bank)
            names.append(name)
            rates.append(forms.default_rate(self.form, name, query_bank is not None)
                         if rate is None else rate)
            specs.append(spec)
        self.bank_search_params_ = None
        self._warned_short = False
        self.calibration_ = {}
        self.agreement_ = {}
        if names == ["gallery"] and given["gallery"][1 if self.form == "projection" else 0] is None \
                and not any(rates):
            warnings.warn("with a gallery bank alone the defaults leave vectors unchanged (no "
                          "untuned setting was safe in the defaults study): pass a query bank, "
                          "set rho_g, or use invgc_faiss.tune", UserWarning, stacklevel=3)
        self.device_ = gpu.resolve_device(self.device) if self.variant == "localadj" else "cpu"
        if self.variant == "localadj":
            offsets = [LocalAdjOffset(b, self.pool_rate, s, self.device_)
                       for b, s in zip(banks, specs)]
            probes = self._probes(full_banks[0])
            searched = (range(len(offsets)) if all_banks
                        else forms.active_banks(self.form, rates))
            self._set_bank_search_params(offsets, names, probes, searched,
                                         lambda: self._probes(full_banks[0], AUTO_TIMING_ROWS))
            for b in searched:
                self._check_agreement(names[b], offsets[b], full_banks[b], probes)
        else:
            offsets = [FullOffset(b) for b in banks]
        self.offsets_ = offsets
        self.form_ = self.form
        self.rates_ = np.array(rates, dtype=np.float64)
        self.bank_names_ = names
        self.d_ = d
        self.gallery_mean_ = None
        self.top1_change_ = None
        if self.variant == "full":
            self.fit_gallery_mean(banks[0].mean(axis=0, dtype=np.float64))
        else:
            self._check_knobs(full_banks, searched, ranking_check)
        logger.info("InvGC %s (%s form) fitted: banks %s, sizes %s, rates %s", self.variant,
                    self.form, names, [b.shape[0] for b in banks], rates)
        return self

    def _probes(self, bank, n=AUTO_SAMPLE):
        """A seeded sample of ``n`` rows of the first full bank (the gallery bank when given:
        rows like the gallery's), on which bank-search and sampling knobs are checked."""
        rng = np.random.default_rng(self.bank_seed)
        rows = np.sort(rng.choice(bank.shape[0], min(n, bank.shape[0]), replace=False))
        return np.ascontiguousarray(bank[rows])

    def _check_agreement(self, name, off, full, probes):
        """Offsets of the probes through one bank's knobs (a bank sample, an approximate bank
        search) against exact search in the whole bank: mean cosine and norm error, kept in
        ``agreement_`` (with the number of probes). Skipped (logged) when the whole bank's top-k
        of the probes would be too large."""
        if not knobs_of(off, full):
            return
        if off.bank.shape[0] == full.shape[0] and name in self.calibration_:
            # "auto" just made this very comparison
            report = {key: self.calibration_[name][key] for key in ("cosine", "norm_error")}
            report["probes"] = probes.shape[0]
        else:
            exact = LocalAdjOffset(full, self.pool_rate)
            n_probes = min(probes.shape[0], REFERENCE_BUDGET // exact.k)
            if n_probes < 16:
                logger.info("%s bank: offsets of the knobs not checked (k = %d of the whole bank "
                            "is too large for the check)", name, exact.k)
                return
            sample = probes[:n_probes]
            cosine, ratio = offset_agreement(
                off.offsets_from_search(*off.bank_index.search(sample, off.k)),
                exact.offsets_from_search(*exact.bank_index.search(sample, exact.k)))
            report = {"cosine": float(cosine.mean()),
                      "norm_error": float(np.abs(ratio - 1).mean()), "probes": n_probes}
        self.agreement_[name] = report

    def _check_knobs(self, full_banks, searched, ranking_check=True):
        """Warn once (``RuntimeWarning``) when the knobs in force -- a bank sample, an
        approximate bank search -- move the offsets of a ``searched`` bank (``agreement_``) or
        the ranking under the rates in force (``top1_change_``, :meth:`_top1_change`) past the
        ``WARN_*`` thresholds; the message names the knobs to raise. The ranking check is skipped
        when every checked bank's offsets match exact search as closely as "auto" asks
        (``AUTO_MIN_COSINE``, ``AUTO_MAX_NORM_ERROR``): no such setting changed more than 6.1 %
        of top-1s in benchmarks/warn_threshold.py."""
        knobs = {b: knobs_of(self.offsets_[b], full_banks[b]) for b in searched}
        if not any(knobs.values()):
            return
        reports = {self.bank_names_[b]: self.agreement_.get(self.bank_names_[b])
                   for b in searched if knobs[b]}
        close = all(r is not None and r["cosine"] >= AUTO_MIN_COSINE
                    and r["norm_error"] <= AUTO_MAX_NORM_ERROR for r in reports.values())
        active = forms.active_banks(self.form_, self.rates_)
        if ranking_check and not close and any(knobs.get(b) for b in active):
            self.top1_change_ = self._top1_change(full_banks, active)
        drifting = {name: r for name, r in reports.items() if r is not None and (
            r["cosine"] < WARN_MIN_COSINE or r["norm_error"] > WARN_MAX_NORM_ERROR)}
        reordered = self.top1_change_ is not None and self.top1_change_ > WARN_MAX_TOP1_CHANGE
        if not drifting and not reordered:
            return
        figures = [f"the {name} bank's offsets drift from exact search (mean cosine "
                   f"{r['cosine']:.4f}, norm error {100 * r['norm_error']:.1f}% on "
                   f"{r['probes']} bank rows)" for name, r in drifting.items()]
        if reordered:
            figures.append(f"the top-1 corrected bank row of {100 * self.top1_change_:.0f}% of "
                           "reference queries differs from exact search over the whole banks")
        kept = [f"{self.bank_names_[b]} bank {self.offsets_[b].bank.shape[0]} of "
                f"{full_banks[b].shape[0]}" for b in searched if "max_bank_size" in knobs[b]]
        sampled = f"max_bank_size (rows kept: {', '.join(kept)})"
        named = dict.fromkeys(sampled if knob == "max_bank_size" else knob
                              for b in searched for knob in knobs[b])
        warnings.warn(f"{'; '.join(figures)}: results may lose accuracy; raise "
                      f"{' or '.join(named)}, or measure the cost on paired "
                      "reference data with invgc_faiss.check_knobs", RuntimeWarning, stacklevel=4)

    def _top1_change(self, full_banks, active):
        """Label-free ranking check of the knobs: the share of reference queries whose top-1
        among corrected bank rows changes when every active bank is searched exactly in full.

        Rows: up to ``RANKING_ROWS`` rows of the first bank (gallery-side), corrected twice --
        as fitted, and with exact offsets over the whole banks; queries: up to
        ``RANKING_QUERIES`` rows of the query bank (the first bank without one), uncorrected;
        when both banks have as many rows, never the row numbers of the corrected rows (no
        self-matches, no paired partners: partners would make the check blind: docs/results.md).
        Returns the share, float, or None (logged) when ``RANKING_BUDGET`` would leave fewer than
        ``RANKING_MIN_ROWS`` rows at this k."""
        first = full_banks[0]
        query_side = (full_banks[self.bank_names_.index("query")]
                      if "query" in self.bank_names_ else first)
        k = max(pool_size(self.pool_rate, full_banks[b].shape[0]) for b in active)
        n_rows = min(RANKING_ROWS, first.shape[0] // 2, RANKING_BUDGET // k)
        if n_rows < RANKING_MIN_ROWS:
            logger.info("ranking check of the knobs skipped (k = %d of the whole banks or %d bank "
                        "rows is too large or too small for it)", k, first.shape[0])
            return None
        rng = np.random.default_rng(self.bank_seed)
        order = rng.permutation(first.shape[0])
        rows = np.ascontiguousarray(first[np.sort(order[:n_rows])])
        if query_side.shape[0] == first.shape[0]:
            picks = order[n_rows:n_rows + RANKING_QUERIES]
        else:
            picks = rng.choice(query_side.shape[0], min(RANKING_QUERIES, query_side.shape[0]),
                               replace=False)
        queries = np.ascontiguousarray(query_side[np.sort(picks)])
        as_fitted = self.correct(rows, check_found=False)[0]
        # the same correction with exact search over the whole banks, in batches of at most
        # REFERENCE_BUDGET neighbour entries
        exact = InvGC(**{**self.get_params(), "bank_search_params": None, "max_bank_size": None,
                         "batch_size": max(1, REFERENCE_BUDGET // k)})
        exact.fit(**{f"{name}_bank": bank for name, bank in zip(self.bank_names_, full_banks)},
                  ranking_check=False)
        in_full = exact.correct(rows)[0]
        top1 = [np.argmax(queries @ corrected.T, axis=1) for corrected in (as_fitted, in_full)]
        return float(np.mean(top1[0] != top1[1]))

    def _set_bank_search_params(self, offsets, names, probes, searched, timing_rows):
        """Apply ``bank_search_params``: a string to every bank index, a dict per bank, or
        ``"auto"`` (the default for approximate bank indexes) -- calibrated, for the banks
        ``searched``, against exact search (in the bank as used) on the probe rows; a bank whose
        approximate search does not pay (timed on the rows ``timing_rows()`` returns) gets
        ``"exact"``, an exact flat index. The settings in force are kept in
        ``bank_search_params_``."""
        spec = self.bank_search_params
        if isinstance(spec, str) and spec != "auto":
            apply_search_params([off.bank_index for off in offsets], spec)
            self.bank_search_params_ = spec
            return
        if isinstance(spec, dict):
            unknown = set(spec) - set(names)
            if unknown:
                raise ValueError(f"bank_search_params names banks {sorted(unknown)}, the banks "
                                 f"are {names}")
            for name, off in zip(names, offsets):
                if spec.get(name) == EXACT:
                    off.bank_index = build_bank_index(off.bank, None)
                elif name in spec:
                    apply_search_params([off.bank_index], spec[name])
            self.bank_search_params_ = dict(spec)
            return
        if spec not in (None, "auto"):
            raise TypeError(f"bank_search_params must be None, 'auto', a string or a dict per "
                            f"bank, got {type(spec).__name__}")
        chosen, rows = {}, None
        for b in searched:
            name, off = names[b], offsets[b]
            if accuracy_knob(off.bank_index) is None:
                continue  # exact search: nothing to calibrate
            if rows is None:  # drawn once, and only when some bank is approximate
                rows = timing_rows()
            setting, report = calibrate(off.bank_index, off.bank, off.k, probes,
                                        off.offsets_from_search, rows)
            if setting == EXACT:
                off.bank_index = build_bank_index(off.bank, None)
            chosen[name] = setting
            self.calibration_[name] = report
            logger.info("bank search for the %s bank calibrated: %s", name, report)
        self.bank_search_params_ = chosen or None

    def fit_gallery_mean(self, gallery_mean):
        """Set the gallery mean row ``x_mean`` (d,) used by the full variant's ``mu``."""
        self.gallery_mean_ = np.asarray(gallery_mean, dtype=np.float64)
        for off in self.offsets_:
            off.set_gallery_mean(self.gallery_mean_)

    @property
    def banks(self):
        """The validated banks, in ``bank_names_`` order."""
        return [off.bank for off in self.offsets_]

    def check_input(self, x, name="x", allow_empty=False):
        """Validate gallery rows: float32 (n, d_), finite, unit (or normalized if asked)."""
        self._check_fitted()
        x = as_float_matrix(x, self.d_, name=name, allow_empty=allow_empty)
        return as_unit_rows(x, name=name, normalize=self.normalize_input)

    def correct(self, x, check_found=True):
        """Corrected vectors and per-bank degrees of validated rows (see :meth:`check_input`).

        Only the banks that enter the combination are searched (:func:`forms.active_banks`);
        an unused bank's degree column is NaN.

        Parameters
        ----------
        x : ndarray of shape (n, d), float32, unit rows
        check_found : bool
            Warn once when approximate bank searches come back short (:meth:`offsets`).

        Returns
        -------
        corrected : ndarray of shape (n, d), float32, unit rows (``x`` itself copied when no bank
            is active)
        degrees : ndarray of shape (n, n_banks), float32
        """
        self._check_fitted()
        n, d = x.shape
        active = forms.active_banks(self.form_, self.rates_)
        corrected = np.empty((n, d), dtype=np.float32)
        degrees = np.full((n, len(self.offsets_)), np.nan, dtype=np.float32)
        if not active:
            corrected[:] = x
            return corrected, degrees
        na = len(active)
        # one working buffer for every batch: no fresh pages to fault in per batch
        rows = min(n, self.batch_size)
        offsets = np.empty((na, rows, d), dtype=np.float32)
        batch_degrees = np.empty((na, rows), dtype=np.float32)
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            if stop - start < rows:  # last, shorter batch: contiguous buffers of its own size
                offsets = np.empty((na, stop - start, d), dtype=np.float32)
                batch_degrees = np.empty((na, stop - start), dtype=np.float32)
            self.offsets(x[start:stop], out=(offsets, batch_degrees), banks=active,
                         check_found=check_found)
            degrees[start:stop, active] = batch_degrees.T
            combine(x[start:stop], offsets, self.rates_[active], self.form_,
                    out=corrected[start:stop])
        return corrected, degrees

    def offsets(self, x, out=None, banks=None, check_found=True):
        """Per-bank subtractive offsets and degrees of validated rows, independent of the rates.

        Parameters
        ----------
        x : ndarray of shape (n, d), float32, unit rows
        out : tuple of two arrays, optional
            Preallocated ``(offsets, degrees)`` of the shapes below, C-contiguous.
        banks : list of int, optional
            Which banks (indexes into ``offsets_``); default all.
        check_found : bool
            Warn (once per fit) when more than ``SHORT_WARN_FRACTION`` of the rows got fewer
            than k bank neighbours. The fit-time ranking check passes False: the short rows it
            meets are reflected in its own figure, and the warning stays armed for ``add``.

        Returns
        -------
        offsets : ndarray of shape (n_banks, n, d), float32
        degrees : ndarray of shape (n_banks, n), float32
        """
        self._check_fitted()
        n, d = x.shape
        banks = range(len(self.offsets_)) if banks is None else banks
        if out is None:
            out = (np.empty((len(banks), n, d), dtype=np.float32),
                   np.empty((len(banks), n), dtype=np.float32))
        offsets, degrees = out
        for slot, b in enumerate(banks):
            found = self.offsets_[b](x, offsets[slot], degrees[slot])
            if found is not None and check_found:
                self._check_found(found, self.offsets_[b].k, self.bank_names_[b])
        return offsets, degrees

    def _check_found(self, found, k, bank_name):
        """Warn once when more than ``SHORT_WARN_FRACTION`` of a batch got fewer than ``k``
        bank neighbours (an approximate bank index searched too narrowly)."""
        short = float(np.mean(found < k)) if found.size else 0.0
        if short > SHORT_WARN_FRACTION and not self._warned_short:
            self._warned_short = True
            message = (f"the {bank_name} bank search found fewer than k = {k} neighbours for "
                       f"{100 * short:.1f}% of a batch (mean found {found.mean():.0f}); offsets "
                       "are means over the neighbours found, which drifts from the exact result: "
                       "raise nprobe (IVF) or efSearch (HNSW) with bank_search_params, or use "
                       "bank_search_params='auto'")
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    @staticmethod
    def combine(x, offsets, rates, form="paper", out=None):
        """See :func:`combine`."""
        return combine(x, offsets, rates, form, out)

    def transform(self, x):
        """Validate ``x`` (n, d) and return its corrected rows, float32 (n, d)."""
        return self.correct(self.check_input(x))[0]

    def _check_fitted(self):
        if self.offsets_ is None:
            raise ValueError("InvGC is not fitted: call fit(gallery_bank=..., query_bank=...) first")


def combine(x, offsets, rates, form="paper", out=None):
    """Corrected rows from per-bank offsets, for any rates (the tuner reuses offsets).

    ``normalize(sum_b normalize(x - r_b(x) offsets[b]))`` over the banks that enter the
    combination (:func:`forms.active_banks`), with ``r_b(x)`` the form's per-item rate; ``x``
    itself when none does.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    offsets : ndarray of shape (n_banks, n, d), float32
    rates : sequence of n_banks floats (``r`` or ``rho``)
    form : {"paper", "projection"}
    out : ndarray of shape (n, d), float32, optional

    Returns
    -------
    ndarray of shape (n, d), float32
    """
    out = np.empty_like(x) if out is None else out
    active = forms.active_banks(form, rates)
    if not active:
        out[:] = x
        return out
    used = offsets if len(active) == offsets.shape[0] else np.ascontiguousarray(offsets[active])
    per_item = np.empty((len(active), x.shape[0]), dtype=np.float64)
    for slot, b in enumerate(active):
        if form == "paper":
            per_item[slot] = rates[b]
        else:
            o = used[slot].astype(np.float64)
            per_item[slot] = forms.item_rates(form, rates[b], np.einsum("ij,ij->i", x, o),
                                              np.einsum("ij,ij->i", o, o))
    kernels.subtract_normalize_combine(x, used, per_item, out)
    return out
