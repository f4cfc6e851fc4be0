"""The InvGC correction: fitted once on reference banks, then maps gallery batches to corrected vectors.

``fit`` takes the banks (query bank first, by keyword), samples each to ``max_bank_size`` rows
(:mod:`invgc_faiss.banks`), builds one offset per bank (:mod:`invgc_faiss.offsets`) and has the
fit-time checks set and judge its bank searches (:mod:`invgc_faiss.checks`). ``transform`` then
maps gallery rows to ``x' = normalize(sum_b normalize(x - r_b(x) off_b(x)))`` over the banks its
rates use (:mod:`invgc_faiss.rates`, docs/science.md §1).
"""
import logging

import numpy as np

from . import banks, checks, gpu
from .offsets import DEFAULT_COMPONENTS, VARIANTS, FullOffset, LocalAdjOffset, correct_rows
from .rates import Rates
from .validation import (as_float_matrix, as_unit_rows, check_pool_rate, check_positive_int,
                         check_start, warn_caller)

logger = logging.getLogger(__name__)

#: Default LocalAdj pool and bank sample, chosen by the defaults study (docs/results.md)
DEFAULT_POOL_RATE = 0.2
DEFAULT_MAX_BANK_SIZE = 2048


class InvGC:
    """InvGC gallery correction over one or two reference banks (scikit-learn conventions).

    Parameters
    ----------
    form : {"projection", "paper"}, optional
        Default ``"paper"`` when ``r_g``/``r_q`` are given, else ``"projection"``.
    r_g, r_q : float >= 0, optional
        The paper form's rates (unset: 0.25 and 1.5). ``r_g = r_q = 0`` is the identity.
    rho_g, rho_q : float >= 0, optional
        The projection form's rates (unset: ``rho_q = 1``, ``rho_g = 0``: the gallery bank is not
        used; with a gallery bank alone that is the identity, and a warning says so). Unset, they
        apply only where the query bank is crowded in a cone
        (:func:`invgc_faiss.checks.crowding`); elsewhere the correction is the identity, and a
        warning says why (``report_.not_crowded``). Set ``rho_q=1`` to apply them anyway.
    variant : {"localadj", "full"}
    pool_rate : float in (0, 1]
        LocalAdj neighbourhood as a share of each bank: ``k = max(1, floor(pool_rate * M))``.
    query_bank_index, gallery_bank_index : None, str or faiss.Index
        LocalAdj bank search: exact ``IndexFlatIP`` (None), a faiss factory string, ``"Proj{m}"``
        or an index (:func:`invgc_faiss.bank_search.build_bank_index`).
    bank_search_params : None, "auto", str or dict
        Accuracy knobs of approximate bank indexes in faiss ParameterSpace syntax
        (``"nprobe=16"``), for every bank or per bank (``{"query": "efSearch=128"}``); None or
        "auto": calibrated against exact search (:func:`invgc_faiss.checks.apply_bank_search`).
    max_bank_size : int or None
        A larger bank is replaced by a seeded uniform sample of this many rows; ``k`` follows
        the sample. None keeps every row.
    bank_seed : int
    normalize_input : bool
        False: gallery and bank rows must have unit norm, else ``ValueError``. True: they are
        L2-normalized first (zero rows still raise).
    n_components : int or None
        LocalAdj over an exact bank with a pool of at least 5 % of it (the defaults): the
        similarities and offsets are computed in the bank's top ``n_components`` uncentred
        principal directions (:func:`invgc_faiss.offsets.reduced_offsets`; 64: 4.7x less work per
        row at d = 384; test R@1 at most 0.25 below the exact path, -0.25 to +0.61, on every real
        direction where the defaults correct, docs/results.md). None, or at least ``d``: exactly,
        in all ``d`` dimensions (the path tested against the dense reference). Bank indexes, small pools and the GPU stay exact.
    batch_size : int
        Rows corrected at once; bounds working memory to O(batch_size x (k + d)).
    fixed_rates : bool
        True: the fit-time checks cover the banks the rates use. False: the rates may change
        after fitting (rerank mode's ``set_rates``), so every bank given is checked.
    device : {"cpu", "gpu"}
        ``"gpu"``: exact LocalAdj banks are searched and averaged on the GPU
        (:mod:`invgc_faiss.gpu`); without a usable GPU a warning says why and the CPU runs it.

    Attributes
    ----------
    offsets_ : list of LocalAdjOffset or FullOffset, one per bank, in ``bank_names_`` order
    bank_names_ : list of str, ``"gallery"`` and/or ``"query"`` (gallery bank first)
    rates_ : Rates, the form and rates in use
    report_ : invgc_faiss.checks.FitReport, the fit-time checks (bank search settings in force)
    d_ : int
    device_ : str, ``"cpu"`` when a GPU was asked for but cannot run
    gallery_mean_ : ndarray of shape (d,), float64, or None (full variant only)
    """

    def __init__(self, *, form=None, r_g=None, r_q=None, rho_g=None, rho_q=None,
                 variant="localadj", pool_rate=DEFAULT_POOL_RATE, query_bank_index=None,
                 gallery_bank_index=None, bank_search_params=None,
                 max_bank_size=DEFAULT_MAX_BANK_SIZE, bank_seed=0, normalize_input=False,
                 n_components=DEFAULT_COMPONENTS, batch_size=16384, fixed_rates=True,
                 device="cpu"):
        Rates.given(form, r_g=r_g, r_q=r_q, rho_g=rho_g, rho_q=rho_q)  # validated here
        self.form, self.r_g, self.r_q, self.rho_g, self.rho_q = form, r_g, r_q, rho_g, rho_q
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.pool_rate = check_pool_rate(pool_rate)
        self.query_bank_index = query_bank_index
        self.gallery_bank_index = gallery_bank_index
        self.bank_search_params = bank_search_params
        self.max_bank_size = (None if max_bank_size is None
                              else check_positive_int(max_bank_size, "max_bank_size"))
        self.bank_seed = int(bank_seed)
        self.normalize_input = bool(normalize_input)
        self.n_components = (None if n_components is None
                             else check_positive_int(n_components, "n_components"))
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.fixed_rates = bool(fixed_rates)
        self.device = gpu.check_device(device)
        self.offsets_ = None

    def get_params(self):
        """Constructor parameters that files store as JSON (bank indexes and device excluded).
        Once fitted, ``bank_search_params`` is the setting in force (calibrated by "auto"), so a
        reloaded correction searches its banks exactly as this one does."""
        fitted = getattr(self, "offsets_", None) is not None
        return {"form": self.form, "r_g": self.r_g, "r_q": self.r_q, "rho_g": self.rho_g,
                "rho_q": self.rho_q, "variant": self.variant, "pool_rate": self.pool_rate,
                "normalize_input": self.normalize_input, "batch_size": self.batch_size,
                "bank_search_params": (self.report_.bank_search_params if fitted
                                       else self.bank_search_params),
                "max_bank_size": self.max_bank_size, "bank_seed": self.bank_seed,
                "n_components": self.n_components, "fixed_rates": self.fixed_rates}

    def fit(self, *args, query_bank=None, gallery_bank=None):
        """Validate the banks, sample them, build the per-bank offsets and check the knobs.

        Parameters
        ----------
        query_bank, gallery_bank : array_like of shape (M_q, d) and (M_g, d), or None
            At least one; both of the same dimension. A positional call takes the old order
            ``fit(gallery_bank, query_bank)``, with a ``DeprecationWarning`` (one release).

        Returns
        -------
        self
        """
        if args:
            query_bank, gallery_bank = _old_bank_order(args, query_bank, gallery_bank)
        full = banks.validated(query_bank, gallery_bank, normalize=self.normalize_input)
        names = list(full)
        given = Rates.given(self.form, r_g=self.r_g, r_q=self.r_q, rho_g=self.rho_g,
                            rho_q=self.rho_q)
        rates = given.resolved(names)
        kept = {name: banks.sample_rows(len(full[name]), self.max_bank_size, self.bank_seed)
                for name in names}
        sampled = [banks.rows_of(full[name], rows) for name, rows in kept.items()]
        device = gpu.resolve_device(self.device) if self.variant == "localadj" else "cpu"
        if self.variant == "localadj":
            specs = {"query": self.query_bank_index, "gallery": self.gallery_bank_index}
            offsets = [LocalAdjOffset(bank, self.pool_rate, specs[name], device,
                                      self.n_components)
                       for name, bank in zip(names, sampled)]
            crowding = ({} if "query" not in names else checks.crowding(
                offsets[names.index("query")], self.pool_rate, self.bank_seed))
            not_crowded = (given.form == "projection" and given.gallery is None
                           and given.query is None and bool(crowding)
                           and crowding["shared_direction"] < checks.MIN_SHARED_DIRECTION)
            if not_crowded:  # the defaults where there is no cone: the identity
                rates = Rates.identity("projection")
            searched = rates.active(names) if self.fixed_rates else list(range(len(names)))
            report = checks.run(offsets, names, full, kept, rates, searched,
                                spec=self.bank_search_params, pool_rate=self.pool_rate,
                                seed=self.bank_seed)
            report.crowding, report.not_crowded = crowding, not_crowded
        else:
            offsets, report = [FullOffset(bank) for bank in sampled], checks.FitReport()
        report.gallery_alone_unchanged = (names == ["gallery"] and given.gallery is None
                                          and not rates.active(names))
        self.offsets_, self.bank_names_, self.rates_, self.report_ = offsets, names, rates, report
        self.d_, self.device_, self.gallery_mean_ = sampled[0].shape[1], device, None
        self._warned_short = False
        if self.variant == "full":
            self.fit_gallery_mean(sampled[0].mean(axis=0, dtype=np.float64))
        checks.warn_fit(report)
        logger.info("InvGC %s (%s form) fitted: banks %s, sizes %s, rates %s", self.variant,
                    rates.form, names, [b.shape[0] for b in sampled], rates)
        return self

    def fit_gallery_mean(self, gallery_mean):
        """Set the gallery mean row ``x_mean`` (d,) used by the full variant's ``mu``."""
        self.gallery_mean_ = np.asarray(gallery_mean, dtype=np.float64)
        for off in self.offsets_:
            off.set_gallery_mean(self.gallery_mean_)

    @property
    def banks(self):
        """The banks in use (samples where sampled), in ``bank_names_`` order."""
        return [off.bank for off in self.offsets_]

    def check_input(self, x, name="x", allow_empty=False):
        """Validate gallery rows: float32 (n, d_), finite, unit (or normalized if asked)."""
        self._check_fitted()
        x = as_float_matrix(x, self.d_, name=name, allow_empty=allow_empty)
        return as_unit_rows(x, name=name, normalize=self.normalize_input)

    def transform(self, x, start=0):
        """Validate ``x`` (n, d) and return its corrected rows, float32 (n, d).

        ``start``: the position of ``x[0]`` in the gallery. A row's correction is the same bit
        for bit whatever batch it comes in when each batch passes the position of its first row
        (the indexes, :func:`invgc_faiss.transform_in_batches` and the Dask build do); without
        it, within float32 rounding (docs/reproducibility.md)."""
        return self.correct(self.check_input(x), start)[0]

    def correct(self, x, start=0):
        """Corrected vectors and per-bank degrees of validated rows (see :meth:`check_input`).

        Only the banks that enter the combination are searched (:meth:`Rates.active`); an
        unused bank's degree column is NaN.

        Parameters
        ----------
        x : ndarray of shape (n, d), float32, unit rows
        start : int >= 0, the position of ``x[0]`` in the gallery (:meth:`transform`)

        Returns
        -------
        corrected : ndarray of shape (n, d), float32, unit rows (a copy of ``x`` when no bank
            is used)
        degrees : ndarray of shape (n, n_banks), float32
        """
        self._check_fitted()
        active = self.rates_.active(self.bank_names_)
        corrected, used = correct_rows(
            x, [self.offsets_[b] for b in active], self.rates_,
            [self.bank_names_[b] for b in active], self.batch_size, on_found=self._on_found,
            start=check_start(start))
        degrees = np.full((x.shape[0], len(self.offsets_)), np.nan, dtype=np.float32)
        degrees[:, active] = used
        return corrected, degrees

    def offsets(self, x, banks=None, start=0):
        """Per-bank subtractive offsets and degrees of validated rows, independent of the rates.

        Parameters
        ----------
        x : ndarray of shape (n, d), float32, unit rows
        banks : list of int, optional
            Which banks (positions in ``bank_names_``); default all.
        start : int >= 0, the position of ``x[0]`` in the gallery (:meth:`transform`)

        Returns
        -------
        offsets : ndarray of shape (n_banks, n, d), float32
        degrees : ndarray of shape (n_banks, n), float32
        """
        self._check_fitted()
        banks = range(len(self.offsets_)) if banks is None else banks
        n, d = x.shape
        offsets = np.empty((len(banks), n, d), dtype=np.float32)
        degrees = np.empty((len(banks), n), dtype=np.float32)
        for slot, b in enumerate(banks):
            found = self.offsets_[b](x, offsets[slot], degrees[slot], check_start(start))
            if found is not None:
                self._on_found(found, self.offsets_[b], self.bank_names_[b])
        return offsets, degrees

    def _on_found(self, found, off, name):
        """Warn once per fit when an approximate bank search came back short."""
        if not self._warned_short:
            self._warned_short = checks.warn_short_search(name, off.k, found)

    def _check_fitted(self):
        if self.offsets_ is None:
            raise ValueError("InvGC is not fitted: call fit(query_bank=..., gallery_bank=...) "
                             "first")


def _old_bank_order(args, query_bank, gallery_bank):
    """``fit(gallery_bank, query_bank)`` positionally: the order before 0.2, still taken (with a
    DeprecationWarning) for one release."""
    if len(args) > 2 or (len(args) == 2 and query_bank is not None) or gallery_bank is not None:
        raise TypeError("InvGC.fit takes the banks by keyword: fit(query_bank=..., "
                        "gallery_bank=...)")
    warn_caller("InvGC.fit(gallery_bank, query_bank) with positional banks is deprecated and "
                "will be refused in the next release: pass fit(query_bank=..., "
                "gallery_bank=...)", DeprecationWarning)
    return (args[1] if len(args) == 2 else query_bank), args[0]
