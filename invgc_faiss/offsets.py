"""The subtractive offset of one bank, both variants, and rows corrected through offsets in batches.

For a gallery row ``x`` (unit) and a bank ``B`` (``M x d``, unit rows):

* ``"localadj"``: ``k = max(1, floor(pool_rate * M))``, ``s_j = x . b_j``,
  ``off(x) = (1/k) sum_{j in N_k(x)} s_j b_j`` over the ``k`` most similar bank rows; degree
  ``deg(x) = sum_{j in N_k(x)} s_j``. An approximate bank index may find fewer than ``k`` rows:
  the mean is then over the rows found (``kernels.weighted_neighbour_mean``).
* ``"full"``: ``off(x) = C x - mu b_mean`` with ``C = B^T B / M``, ``b_mean`` the mean bank row,
  ``mu = x_mean . b_mean`` and ``x_mean`` the gallery mean. This equals ``(1/M) (W_x - mu) B``
  with ``W = X B^T``: an affine map, O(d^2) per vector whatever M. Its degree is
  ``x . b_mean - mu``, the mean centred edge weight.

Design of the LocalAdj hot path (measured by ``benchmarks/bench_add.py``): faiss finds the top-k
bank neighbours (``IndexFlatIP``: BLAS blocks with heap selection inside faiss, memory O(batch x
k)), then a Numba kernel gathers the similarity-weighted mean of the k rows. A numpy BLAS block
``X B^T`` followed by a Numba top-k select and the same gather computes the same thing, needs
O(batch x M) memory, and was slower there (gallery 20k, two banks of 50k, d = 384, k = 500, 2
cores: 19.9 s against 38.2 s, 188 MiB against 832 MiB), so it lives only in ``benchmarks/``.
"""
import math

import numpy as np

from . import gpu, kernels
from .bank_search import build_bank_index
from .scoring import combine

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

    k = None

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


def correct_rows(x, offsets, rates, names, batch_size, on_found=None):
    """Rows ``x`` corrected through per-bank offsets, ``batch_size`` rows at a time.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32, unit rows
    offsets : list of LocalAdjOffset or FullOffset, the banks that enter the combination
    rates : Rates
    names : list of str, the bank of each offset object
    batch_size : int
        Bounds working memory to O(batch_size x (k + d)).
    on_found : callable(found, offset, name), optional
        Called per batch and LocalAdj bank with the neighbours found per row (n_batch,).

    Returns
    -------
    corrected : ndarray of shape (n, d), float32 (``x`` copied when ``offsets`` is empty)
    degrees : ndarray of shape (n, len(offsets)), float32
    """
    n, d = x.shape
    corrected = np.empty((n, d), dtype=np.float32)
    degrees = np.empty((n, len(offsets)), dtype=np.float32)
    if not offsets:
        corrected[:] = x
        return corrected, degrees
    # one working buffer for every batch: no fresh pages to fault in per batch
    rows = min(n, batch_size)
    batch_offsets = np.empty((len(offsets), rows, d), dtype=np.float32)
    batch_degrees = np.empty((len(offsets), rows), dtype=np.float32)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        if stop - start < rows:  # last, shorter batch: contiguous buffers of its own size
            batch_offsets = np.empty((len(offsets), stop - start, d), dtype=np.float32)
            batch_degrees = np.empty((len(offsets), stop - start), dtype=np.float32)
        for slot, (off, name) in enumerate(zip(offsets, names)):
            found = off(x[start:stop], batch_offsets[slot], batch_degrees[slot])
            if found is not None and on_found is not None:
                on_found(found, off, name)
        degrees[start:stop] = batch_degrees.T
        combine(x[start:stop], batch_offsets, rates, names, out=corrected[start:stop])
    return corrected, degrees
