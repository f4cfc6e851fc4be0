"""Reference banks as a correction takes them: validated, named in one order, sampled to a bound.

Banks are kept in a dict ``{name: rows}`` whose order is the correction's bank order
(``bank_names_``): ``"gallery"`` first, then ``"query"``, each only when given. Arguments come
query bank first, as everywhere in the library.
"""
import numpy as np

from .validation import as_float_matrix, as_unit_rows


def validated(query_bank=None, gallery_bank=None, *, d=None, normalize=False):
    """The banks given, checked: float32 (M, d) C-contiguous, finite, unit rows (normalized
    first with ``normalize=True``), all of dimension ``d`` (the first bank's when None).

    Returns
    -------
    dict ``{"gallery": ndarray, "query": ndarray}`` of the banks given, gallery bank first
    """
    if query_bank is None and gallery_bank is None:
        raise ValueError("InvGC needs at least one reference bank (query_bank or gallery_bank)")
    banks = {}
    for name, bank in (("gallery", gallery_bank), ("query", query_bank)):
        if bank is not None:
            bank = as_float_matrix(bank, d, name=f"{name}_bank")
            banks[name] = as_unit_rows(bank, name=f"{name}_bank", normalize=normalize)
            d = bank.shape[1]
    return banks


def sample(bank, max_rows, seed):
    """``bank`` itself when it has at most ``max_rows`` rows (or ``max_rows`` is None), else a
    uniform random sample of ``max_rows`` of its rows without replacement, in bank order, drawn
    by ``numpy.random.default_rng(seed)``."""
    if max_rows is None or bank.shape[0] <= max_rows:
        return bank
    keep = np.sort(np.random.default_rng(seed).choice(bank.shape[0], max_rows, replace=False))
    return np.ascontiguousarray(bank[keep])
