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

The default since 0.7, for an exact bank and a pool of at least ``PRODUCT_MIN_POOL``: the same
offset computed in the bank's top ``n_components`` uncentred principal directions
(:func:`reduced_offsets`, docs/science.md §1f), 4.7x less arithmetic per row at d = 384; not the
exact offset, but its projection onto those directions over a pool chosen by the projected
similarities. ``n_components=None`` takes the exact paths below.

Three exact ways to the offsets of one bank, the same result to float32 rounding (``benchmarks/
dense_crossover.py`` timed them side by side on banks of 2k, 4k, 20k and 100k rows, pools
0.001-0.2):

* an *exact bank* (the default) and a pool of at least ``PRODUCT_MIN_POOL`` of it: the
  similarities of a block of rows, ``S = X B^T``, by one BLAS product; each row's k largest
  kept in place by an O(M) selection (``kernels.keep_top_k``), no k-heap; then ``S B / k`` by a
  second BLAS product (:func:`product_offsets`). At the default pool (k = 409 of a 2,048-row
  sample) 4.4x faster than the 0.1 path, faiss's search with its k-heap and the gather;
* an exact bank and a smaller pool: the same product and selection, compacted to the k
  neighbours (:func:`invgc_faiss.bank_search.exact_top_k`), then the gather below;
* an *approximate bank index* (IVF, HNSW, ``"Proj{m}"``): its own search (``nbrs = -1`` where it
  finds fewer than k), then the gather: a Numba kernel sums the similarity-weighted k rows in
  float64 (``kernels.weighted_neighbour_mean``).

Ties at rank k go to the lowest bank rows on an exact bank (faiss's heap broke them its own way,
so float32 near-ties may pick another row than 0.1 did). A row's offset does not depend on the
batch it came in: every BLAS product runs over a fixed row block at the row's grid position
(:mod:`invgc_faiss.row_blocks`; ``start`` is the position of the batch's first row).
"""
import math

import numpy as np

from . import gpu, kernels, row_blocks
from .bank_search import build_bank_index, exact_top_k, is_exact
from .projected_bank import uncentred_projection
from .scoring import combine

VARIANTS = ("localadj", "full")
#: An exact bank whose pool is at least this share of it gets its offsets from a second BLAS
#: product instead of the gather: faster from pool 0.1 on banks of 2k-100k rows and from 0.05 on
#: 2k-4k rows (at 0.05 on 20k-100k rows within 3 % of the gather), the gather faster at 0.02 and
#: below (benchmarks/dense_crossover.py)
PRODUCT_MIN_POOL = 0.05
#: The product path runs in the bank's top this-many uncentred principal directions by default
#: (:func:`reduced_offsets`): 4.7x less arithmetic at d = 384, 3-4x the throughput
#: (benchmarks/bench_reduced.py)
DEFAULT_COMPONENTS = 64


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
    n_components : int or None
        With an exact bank on the CPU, a pool of at least ``PRODUCT_MIN_POOL`` and
        ``n_components < d``: offsets by :func:`reduced_offsets` in the bank's top
        ``n_components`` uncentred principal directions (``basis``, (p, d)). None: the exact
        product path.
    """

    def __init__(self, bank, pool_rate, bank_index=None, device="cpu", n_components=None):
        self.bank = bank
        self.k = pool_size(pool_rate, bank.shape[0])
        self.on_gpu = gpu.GpuBank(bank, self.k) if device == "gpu" and bank_index is None else None
        self.bank_index = build_bank_index(bank, bank_index)
        self.n_components = n_components
        self.basis = self.bank_reduced = None
        if (n_components is not None and n_components < bank.shape[1] and self.on_gpu is None
                and self._product_path()):
            self.basis = principal_basis(bank, n_components)
            self.bank_reduced = np.ascontiguousarray(bank @ self.basis.T)

    def _product_path(self):
        return is_exact(self.bank_index) and self.k >= PRODUCT_MIN_POOL * self.bank.shape[0]

    def __call__(self, x, offsets, degrees, start=0):
        """Write ``off(x)`` into ``offsets`` (n, d) and ``deg(x)`` into ``degrees`` (n,);
        return the number of bank neighbours found per row, int64 (n,). ``start``: the grid
        position of ``x[0]`` (:mod:`invgc_faiss.row_blocks`)."""
        if self.on_gpu is not None:
            return self.on_gpu(x, offsets, degrees)
        if self.basis is not None:
            reduced_offsets(x, self.basis, self.bank_reduced, self.k, offsets, degrees, start)
            return np.full(x.shape[0], self.k, dtype=np.int64)
        if self._product_path():
            product_offsets(x, self.bank, self.k, offsets, degrees, start)
            return np.full(x.shape[0], self.k, dtype=np.int64)
        sims, nbrs = self.top_k(x, start)
        found = np.empty(x.shape[0], dtype=np.int64)
        _neighbour_mean(self.bank, sims, nbrs, offsets, degrees, found)
        return found

    def top_k(self, x, start=0):
        """``sims, nbrs`` (n, k) of the rows ``x`` (n, d): the dense selection for an exact bank
        (rows at grid positions from ``start``), else the bank index's search (``nbrs = -1``
        where it found fewer)."""
        if is_exact(self.bank_index):
            return exact_top_k(x, self.bank, self.k, start)
        return self.bank_index.search(x, self.k)

    def offsets_from_search(self, sims, nbrs):
        """Offsets (n, d) float32 from a search result ``sims, nbrs`` (n, k) of this bank."""
        n = sims.shape[0]
        offsets = np.empty((n, self.bank.shape[1]), dtype=np.float32)
        _neighbour_mean(self.bank, sims, nbrs, offsets, np.empty(n, np.float32),
                        np.empty(n, np.int64))
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
        # [C | b_mean] (d, d + 1): offsets and degrees from one product per row block
        self.cov_and_mean = np.ascontiguousarray(np.column_stack([self.cov, self.bank_mean]))

    def set_gallery_mean(self, gallery_mean):
        """Set ``mu = x_mean . b_mean`` from the gallery mean row (d,)."""
        self.mu = np.float32(np.asarray(gallery_mean, np.float64) @ self.bank_mean)

    def __call__(self, x, offsets, degrees, start=0):
        """Write ``off(x)`` into ``offsets`` (n, d) and ``x . b_mean - mu`` into ``degrees`` (n,);
        return None (every bank row takes part). One product ``x [C | b_mean]`` per row block
        (``start``: the grid position of ``x[0]``, :mod:`invgc_faiss.row_blocks`)."""
        d = x.shape[1]
        product = row_blocks.product(x, self.cov_and_mean, start)
        np.subtract(product[:, :d], self.mu * self.bank_mean, out=offsets)
        np.subtract(product[:, d], self.mu, out=degrees)
        return None


def product_offsets(x, bank, k, offsets, degrees, start=0):
    """LocalAdj offsets over the exact top-k by two BLAS products per row block: ``S = X B^T``,
    each row's k largest kept in place (``kernels.keep_top_k``), then ``S B / k``.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    bank : ndarray of shape (M, d), float32
    k : int, 1 <= k <= M
    offsets : ndarray of shape (n, d), float32, output
    degrees : ndarray of shape (n,), float32, output
    start : int, the grid position of ``x[0]`` (:mod:`invgc_faiss.row_blocks`)
    """
    rows = row_blocks.block_rows(bank.shape[0])

    def work(block):
        scores = block @ bank.T
        sums = np.empty(rows, dtype=np.float32)
        kernels.keep_top_k(scores, k, sums)
        return np.divide(scores @ bank, np.float32(k)), sums

    row_blocks.map_blocks(x, start, rows, work, (offsets, degrees))


def _neighbour_mean(bank, sims, nbrs, offsets, degrees, found):
    """``kernels.weighted_neighbour_mean`` over all threads, on the calling thread for batches
    under ``kernels.SERIAL_ROWS`` rows (the fit's probes: no parallel runtime to start)."""
    if sims.shape[0] < kernels.SERIAL_ROWS:
        kernels.weighted_neighbour_mean_serial(bank, sims, nbrs, offsets, degrees, found)
    else:
        kernels.weighted_neighbour_mean(bank, sims, nbrs, offsets, degrees, found)


def principal_basis(bank, n_components):
    """The top ``n_components`` eigenvectors of ``B^T B`` as rows, float32 (p, d), each signed
    so that its largest entry in absolute value is positive (LAPACKs may return either sign;
    the offsets do not depend on it but their rounding would)."""
    basis, _ = uncentred_projection(bank, n_components)
    lead = basis[np.arange(basis.shape[0]), np.argmax(np.abs(basis), axis=1)]
    return np.ascontiguousarray(basis * np.where(lead < 0, -1, 1).astype(np.float32)[:, None])


def reduced_offsets(x, basis, bank_reduced, k, offsets, degrees, start=0):
    """LocalAdj offsets in the bank's principal subspace, per row block: ``x~ = X V^T``,
    ``S~ = x~ B~^T`` with ``B~ = B V^T`` (similarities in ``p`` dimensions), each row's k
    largest kept (the same rule as the exact path, on ``S~``), their bank rows summed in ``p``
    dimensions (``kernels.reduced_pool_means``) and lifted back, ``off = (1/k) sum s~_j b~_j V``.

    ``V`` (``basis``) holds the top ``p`` eigenvectors of ``B^T B``, so ``s~_j`` is ``x . b_j``
    less the part outside them, and ``off`` is the exact offset's projection onto them when the
    pool is the same. Arithmetic per row: ``2 p (d + M)`` multiply-adds and a sum over ``k``
    rows of ``p``, against ``2 M d`` for :func:`product_offsets` (docs/science.md §1f).

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    basis : ndarray of shape (p, d), float32, orthonormal rows
    bank_reduced : ndarray of shape (M, p), float32, ``bank @ basis.T``
    k : int, 1 <= k <= M
    offsets : ndarray of shape (n, d), float32, output
    degrees : ndarray of shape (n,), float32, output: the sums of the k reduced similarities
    start : int, the grid position of ``x[0]`` (:mod:`invgc_faiss.row_blocks`)
    """
    rows = row_blocks.block_rows(bank_reduced.shape[0])
    basis_t = np.ascontiguousarray(basis.T)

    def work(block):
        scores = (block @ basis_t) @ bank_reduced.T
        reduced = np.empty((rows, basis.shape[0]), dtype=np.float32)
        sums = np.empty(rows, dtype=np.float32)
        kernels.reduced_pool_means(scores, k, bank_reduced, reduced, sums)
        return reduced @ basis, sums

    row_blocks.map_blocks(x, start, rows, work, (offsets, degrees))


def correct_rows(x, offsets, rates, names, batch_size, on_found=None, start=0):
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
    start : int, the grid position of ``x[0]`` (:mod:`invgc_faiss.row_blocks`)

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
    for first in range(0, n, batch_size):
        stop = min(n, first + batch_size)
        if stop - first < rows:  # last, shorter batch: contiguous buffers of its own size
            batch_offsets = np.empty((len(offsets), stop - first, d), dtype=np.float32)
            batch_degrees = np.empty((len(offsets), stop - first), dtype=np.float32)
        for slot, (off, name) in enumerate(zip(offsets, names)):
            found = off(x[first:stop], batch_offsets[slot], batch_degrees[slot], start + first)
            if found is not None and on_found is not None:
                on_found(found, off, name)
        degrees[first:stop] = batch_degrees.T
        combine(x[first:stop], batch_offsets, rates, names, out=corrected[first:stop])
    return corrected, degrees
