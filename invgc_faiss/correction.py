"""The InvGC correction: fitted once on reference banks, then maps gallery batches to corrected vectors.

Math (SCIENCE.md section 1), for a gallery row ``x`` (unit norm) and a bank ``B`` (``M x d``, unit
rows) with rate ``r``::

    x_B = normalize(x - r * off_B(x))
    x'  = normalize(1/2 x_{B_g} + 1/2 x_{B_q})        (one bank: x' = x_B)

with the subtractive offset ``off_B`` of either variant:

* ``"localadj"`` (default): ``k = max(1, floor(pool_rate * M))``, ``s_j = x . b_j``,
  ``off(x) = (1/k) sum_{j in N_k(x)} s_j b_j`` over the ``k`` most similar bank rows;
  degree ``deg(x) = sum_{j in N_k(x)} s_j``.
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

import numpy as np

from . import kernels
from .bank_search import apply_search_params, build_bank_index
from .validation import as_float_matrix, as_unit_rows, check_pool_rate, check_positive_int, check_rate

logger = logging.getLogger(__name__)

VARIANTS = ("localadj", "full")


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
    """

    def __init__(self, bank, pool_rate, bank_index=None):
        self.bank = bank
        self.k = pool_size(pool_rate, bank.shape[0])
        self.bank_index = build_bank_index(bank, bank_index)

    def __call__(self, x, offsets, degrees):
        """Write ``off(x)`` into ``offsets`` (n, d) and ``deg(x)`` into ``degrees`` (n,)."""
        sims, nbrs = self.bank_index.search(x, self.k)
        kernels.weighted_neighbour_mean(self.bank, sims, nbrs, offsets, degrees)


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
        """Write ``off(x)`` into ``offsets`` (n, d) and ``x . b_mean - mu`` into ``degrees`` (n,)."""
        np.matmul(x, self.cov, out=offsets)
        offsets -= self.mu * self.bank_mean
        np.matmul(x, self.bank_mean, out=degrees)
        degrees -= self.mu


class InvGC:
    """InvGC gallery correction over one or two reference banks.

    The constructor stores parameters; :meth:`fit` takes the banks and builds what the correction
    needs (bank search indexes for LocalAdj, ``C``, ``b_mean`` for the full variant).

    Parameters
    ----------
    r_g, r_q : float >= 0
        Rates of the gallery-side and query-side banks. ``r_g = r_q = 0`` is the identity, exactly.
    variant : {"localadj", "full"}
    pool_rate : float in (0, 1]
        LocalAdj neighbourhood as a share of each bank: ``k = max(1, floor(pool_rate * M))``.
    gallery_bank_index, query_bank_index : None, str or faiss.Index
        LocalAdj bank search (default exact ``IndexFlatIP``; see ``bank_search``).
    bank_search_params : str, optional
        Accuracy knobs of approximate bank indexes, faiss ParameterSpace syntax
        (``"nprobe=16"``, ``"efSearch=128"``).
    max_bank_size : int, optional
        Scale knob: a bank with more rows is replaced by a uniform random sample of this many
        (seed ``bank_seed``); ``k`` follows the sample (``pool_rate`` of it).
    bank_seed : int
    normalize_input : bool
        False (default): gallery and bank rows must already have unit norm, else ``ValueError``.
        True: they are L2-normalized first (zero rows still raise).
    batch_size : int
        Rows corrected at once; bounds working memory to O(batch_size x (k + d)).

    Attributes
    ----------
    offsets_ : list of LocalAdjOffset or FullOffset, one per bank (gallery bank first)
    rates_ : ndarray of shape (n_banks,), float64
    bank_names_ : list of str, ``"gallery"`` and/or ``"query"``
    d_ : int
    gallery_mean_ : ndarray of shape (d,), float64 (full variant only; None for LocalAdj)
    """

    def __init__(self, *, r_g=0.3, r_q=0.3, variant="localadj", pool_rate=0.01,
                 gallery_bank_index=None, query_bank_index=None, bank_search_params=None,
                 max_bank_size=None, bank_seed=0, normalize_input=False, batch_size=16384):
        self.r_g = check_rate(r_g, "r_g")
        self.r_q = check_rate(r_q, "r_q")
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
        self.offsets_ = None

    def get_params(self):
        """Constructor parameters that persistence can store as JSON (bank indexes excluded)."""
        return {"r_g": self.r_g, "r_q": self.r_q, "variant": self.variant,
                "pool_rate": self.pool_rate, "normalize_input": self.normalize_input,
                "batch_size": self.batch_size, "bank_search_params": self.bank_search_params,
                "max_bank_size": self.max_bank_size, "bank_seed": self.bank_seed}

    def fit(self, gallery_bank=None, query_bank=None, d=None):
        """Validate the banks and build the per-bank offsets.

        Parameters
        ----------
        gallery_bank : array_like of shape (M_g, d) or None
        query_bank : array_like of shape (M_q, d) or None
            At least one bank is required; both must have the same dimension ``d``.
        d : int or None
            Expected dimension (the index's), if known.

        Returns
        -------
        self
        """
        if gallery_bank is None and query_bank is None:
            raise ValueError("InvGC needs at least one reference bank (gallery_bank or query_bank)")
        banks, names, rates, specs = [], [], [], []
        for name, bank, rate, spec in (("gallery", gallery_bank, self.r_g, self.gallery_bank_index),
                                       ("query", query_bank, self.r_q, self.query_bank_index)):
            if bank is None:
                continue
            bank = as_float_matrix(bank, d, name=f"{name}_bank")
            bank = as_unit_rows(bank, name=f"{name}_bank", normalize=self.normalize_input)
            if self.max_bank_size is not None and bank.shape[0] > self.max_bank_size:
                rng = np.random.default_rng(self.bank_seed)
                keep = np.sort(rng.choice(bank.shape[0], self.max_bank_size, replace=False))
                bank = np.ascontiguousarray(bank[keep])
            d = bank.shape[1]
            banks.append(bank)
            names.append(name)
            rates.append(rate)
            specs.append(spec)
        if self.variant == "localadj":
            offsets = [LocalAdjOffset(b, self.pool_rate, s) for b, s in zip(banks, specs)]
            if self.bank_search_params:
                apply_search_params([off.bank_index for off in offsets], self.bank_search_params)
        else:
            offsets = [FullOffset(b) for b in banks]
        self.offsets_ = offsets
        self.rates_ = np.array(rates, dtype=np.float64)
        self.bank_names_ = names
        self.d_ = d
        self.gallery_mean_ = None
        if self.variant == "full":
            self.fit_gallery_mean(banks[0].mean(axis=0, dtype=np.float64))
        logger.info("InvGC %s fitted: banks %s, sizes %s", self.variant, names,
                    [b.shape[0] for b in banks])
        return self

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

    def correct(self, x):
        """Corrected vectors and per-bank degrees of validated rows (see :meth:`check_input`).

        Parameters
        ----------
        x : ndarray of shape (n, d), float32, unit rows

        Returns
        -------
        corrected : ndarray of shape (n, d), float32, unit rows (``x`` itself copied when every
            rate is 0)
        degrees : ndarray of shape (n, n_banks), float32
        """
        self._check_fitted()
        n, d = x.shape
        nb = len(self.offsets_)
        corrected = np.empty((n, d), dtype=np.float32)
        degrees = np.empty((n, nb), dtype=np.float32)
        # one working buffer for every batch: no fresh pages to fault in per batch
        rows = min(n, self.batch_size)
        offsets = np.empty((nb, rows, d), dtype=np.float32)
        batch_degrees = np.empty((nb, rows), dtype=np.float32)
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            if stop - start < rows:  # last, shorter batch: contiguous buffers of its own size
                offsets = np.empty((nb, stop - start, d), dtype=np.float32)
                batch_degrees = np.empty((nb, stop - start), dtype=np.float32)
            self.offsets(x[start:stop], out=(offsets, batch_degrees))
            degrees[start:stop] = batch_degrees.T
            self.combine(x[start:stop], offsets, self.rates_, out=corrected[start:stop])
        return corrected, degrees

    def offsets(self, x, out=None):
        """Per-bank subtractive offsets and degrees of validated rows, independent of the rates.

        Parameters
        ----------
        x : ndarray of shape (n, d), float32, unit rows
        out : tuple of two arrays, optional
            Preallocated ``(offsets, degrees)`` of the shapes below, C-contiguous.

        Returns
        -------
        offsets : ndarray of shape (n_banks, n, d), float32
        degrees : ndarray of shape (n_banks, n), float32
        """
        self._check_fitted()
        n, d = x.shape
        if out is None:
            out = (np.empty((len(self.offsets_), n, d), dtype=np.float32),
                   np.empty((len(self.offsets_), n), dtype=np.float32))
        offsets, degrees = out
        for b, off in enumerate(self.offsets_):
            off(x, offsets[b], degrees[b])
        return offsets, degrees

    @staticmethod
    def combine(x, offsets, rates, out=None):
        """``normalize(sum_b normalize(x - rates[b] * offsets[b]))``; ``x`` itself when all rates
        are 0. Offsets from :meth:`offsets` can be combined with many rates (the tuner does)."""
        out = np.empty_like(x) if out is None else out
        rates = np.ascontiguousarray(rates, dtype=np.float64)
        if not rates.any():
            out[:] = x
        else:
            kernels.subtract_normalize_combine(x, offsets, rates, out)
        return out

    def transform(self, x):
        """Validate ``x`` (n, d) and return its corrected rows, float32 (n, d)."""
        return self.correct(self.check_input(x))[0]

    def _check_fitted(self):
        if self.offsets_ is None:
            raise ValueError("InvGC is not fitted: call fit(gallery_bank=..., query_bank=...) first")
