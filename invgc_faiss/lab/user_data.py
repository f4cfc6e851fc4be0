"""The user's own embeddings from ``.npy`` files, checked, as a :class:`PairedSplit`.

Files are opened as memory maps (``np.load(mmap_mode="r")``) and each is checked where it is
read: a 2-D array of real numbers, finite, unit rows (or normalized with ``normalize=True``), the
dimension of the others; paired files must have the same number of rows. A bad file raises
``ValueError``/``TypeError`` whose message starts with the file's path.

The held-out tuning pairs are a seeded sample of the bank pairs (share ``holdout``, at most
``max_holdout``); the rest of the bank pairs serve as banks while tuning, and all of them as the
final banks -- the protocol of the real-data evaluation.
"""
import numpy as np

from ..heldout import holdout_rows
from ..validation import as_float_matrix, as_unit_rows
from .datasets import PairedSplit


def load_embeddings(path, d=None, *, normalize=False):
    """A checked float32 (n, d) array from a ``.npy`` file (memory-mapped while checked)."""
    try:
        raw = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as a .npy array ({exc})") from None
    try:
        x = as_float_matrix(raw, d, name="array")
        return as_unit_rows(x, name="array", normalize=normalize)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def load_truth(path, n_queries, n_gallery):
    """Ground truth (n_queries,) int64: the gallery row of each query, from a ``.npy`` file."""
    try:
        truth = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as a .npy array ({exc})") from None
    if truth.dtype.kind not in "iu" or truth.shape != (n_queries,):
        raise ValueError(f"{path}: ground truth must be integers of shape ({n_queries},), got "
                         f"{truth.dtype} {truth.shape}")
    if truth.size and (truth.min() < 0 or truth.max() >= n_gallery):
        raise ValueError(f"{path}: ground-truth rows must lie in 0..{n_gallery - 1}")
    return truth.astype(np.int64)


def check_paired(a, b, path_a, path_b):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{path_a} and {path_b} must be paired (row i matches row i) but have "
                         f"{a.shape[0]} and {b.shape[0]} rows")


def split_from_files(queries, gallery, query_bank, gallery_bank, *, truth=None, holdout=0.1,
                     max_holdout=2000, seed=0, normalize=False):
    """A :class:`PairedSplit` (and the ground truth) from four ``.npy`` paths.

    Parameters
    ----------
    queries, gallery, query_bank, gallery_bank : str
        Test queries and gallery; reference pairs (row i of each bank matches).
    truth : str, optional
        Gallery row of each test query; without it row i of the queries matches row i of the
        gallery (and both directions can be evaluated).
    holdout, max_holdout, seed : as for :func:`invgc_faiss.tune`
    normalize : bool

    Returns
    -------
    split : PairedSplit
    ground_truth : ndarray (n_queries,) int64 or None
    """
    bank_q = load_embeddings(query_bank, normalize=normalize)
    d = bank_q.shape[1]
    bank_g = load_embeddings(gallery_bank, d, normalize=normalize)
    check_paired(bank_q, bank_g, query_bank, gallery_bank)
    test_q = load_embeddings(queries, d, normalize=normalize)
    test_g = load_embeddings(gallery, d, normalize=normalize)
    ground_truth = None
    if truth is not None:
        ground_truth = load_truth(truth, test_q.shape[0], test_g.shape[0])
    else:
        check_paired(test_q, test_g, queries, gallery)
    m = bank_q.shape[0]
    held, rest = holdout_rows(m, holdout, max_holdout, np.random.default_rng(seed), minimum=10,
                              what=f"{query_bank} (label-free tuning)")
    n_h = held.size
    split = PairedSplit(
        queries=test_q, gallery=test_g, bank_queries=bank_q, bank_gallery=bank_g,
        tune_queries=bank_q[held], tune_gallery=bank_g[held],
        tune_bank_queries=bank_q[rest], tune_bank_gallery=bank_g[rest],
        description=(f"files: test {test_q.shape[0]} queries x {test_g.shape[0]} gallery, "
                     f"{m} reference pairs ({n_h} held out for label-free tuning), d = {d}"))
    return split, ground_truth
