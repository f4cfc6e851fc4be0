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
    """``bank`` itself when it has at most ``max_rows`` rows (or ``max_rows`` is None), else the
    rows :func:`sample_rows` picks, in bank order."""
    return rows_of(bank, sample_rows(bank.shape[0], max_rows, seed))


def rows_of(bank, rows):
    """``bank`` itself when ``rows`` is None, else its ``rows`` as a C-contiguous copy."""
    return bank if rows is None else np.ascontiguousarray(bank[rows])


def sample_rows(m, max_rows, seed):
    """Row numbers of a uniform random sample of ``max_rows`` of ``m`` rows without
    replacement, sorted, drawn by ``numpy.random.default_rng(seed)``; None when every row is
    kept (``m <= max_rows`` or ``max_rows`` is None)."""
    if max_rows is None or m <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(m, max_rows, replace=False))


def other_sample_rows(m, rows, seed):
    """Another sample of as many of ``m`` rows as ``rows`` holds, drawn apart from it: rows not
    in ``rows`` when there are enough, else all of those and the rest from ``rows``; sorted,
    drawn by ``numpy.random.default_rng(seed)``. (The fit-time checks compare the two.)"""
    rng = np.random.default_rng(seed)
    rest = np.setdiff1d(np.arange(m), rows, assume_unique=True)
    if rest.size >= rows.size:
        return np.sort(rng.choice(rest, rows.size, replace=False))
    return np.sort(np.concatenate([rest, rng.choice(rows, rows.size - rest.size, replace=False)]))
