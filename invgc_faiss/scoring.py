"""Closed-form InvGC from per-bank offsets: corrected rows, and corrected scores without them.

:func:`combine` turns a batch's offsets (one ``(n, d)`` slice per bank) into the corrected rows
for any rates (docs/science.md §1b). Rerank mode and the held-out grids score ``q . x'`` without
forming ``x'``: with ``u_b = x - r_b o_b`` (``o_b`` the bank-b offset) and
``x' = normalize(sum_b normalize(u_b))``::

    n_b  = ||u_b||^2 = x.x - 2 r_b x.o_b + r_b^2 o_b.o_b          a_b = 1 / sqrt(n_b)  (0 if n_b = 0)
    q.y  = sum_b a_b (q.x - r_b q.o_b)                              y = sum_b a_b u_b
    ||y||^2 = sum_b a_b^2 n_b + 2 a_0 a_1 u_0.u_1,   u_0.u_1 = x.x - r_0 x.o_0 - r_1 x.o_1 + r_0 r_1 o_0.o_1
    q.x' = q.y / ||y||                                  (one bank: q.x' = a_0 (q.x - r_0 q.o_0))

``q.x`` and ``q.o_b`` come from searches; the rest from six per-item scalars
``x.x, x.o_0, x.o_1, o_0.o_0, o_1.o_1, o_0.o_1`` (:func:`rerank_scalars`). Nothing stored
depends on the rates, so they can change after the offsets are computed. In the projection form
``r_b`` is the per-item rate ``rho_b (x.o_b) / (o_b.o_b)``, read from the same scalars.
"""
import numpy as np

from . import kernels, row_blocks

N_SCALARS = 6


def _dot(a, b):
    return np.einsum("ij,ij->i", a, b)


def combine(x, offsets, rates, names, out=None):
    """Corrected rows from per-bank offsets: ``normalize(sum_b normalize(x - r_b(x) o_b))`` over
    the banks of ``names`` that enter the combination (:meth:`Rates.active`), ``x`` itself when
    none does.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    offsets : ndarray of shape (n_banks, n, d), float32, one slice per name
    rates : Rates
    names : list of str, the bank of each offsets slice
    out : ndarray of shape (n, d), float32, optional

    Returns
    -------
    ndarray of shape (n, d), float32
    """
    out = np.empty_like(x) if out is None else out
    active = rates.active(names)
    if not active:
        out[:] = x
        return out
    used = offsets if len(active) == offsets.shape[0] else np.ascontiguousarray(offsets[active])
    bank_rates = rates.of(names)
    per_item = np.empty((len(active), x.shape[0]), dtype=np.float64)
    for slot, b in enumerate(active):
        per_item[slot] = rates.row_rates(bank_rates[b], x, used[slot])
    row_blocks.map_rows(x.shape[0], lambda i, j: kernels.subtract_normalize_combine(
        x[i:j], used[:, i:j], per_item[:, i:j], out[i:j]))
    return out


def rerank_scalars(x, offsets):
    """The six per-item scalars ``[x.x, x.o_0, x.o_1, o_0.o_0, o_1.o_1, o_0.o_1]``.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    offsets : ndarray of shape (n_banks, n, d), float32, n_banks in {1, 2}

    Returns
    -------
    ndarray of shape (n, 6), float32 (bank-1 terms are 0 with one bank)
    """
    x64 = x.astype(np.float64)
    o0 = offsets[0].astype(np.float64)
    o1 = offsets[1].astype(np.float64) if offsets.shape[0] == 2 else np.zeros_like(o0)
    return np.column_stack([_dot(x64, x64), _dot(x64, o0), _dot(x64, o1), _dot(o0, o0),
                            _dot(o1, o1), _dot(o0, o1)]).astype(np.float32)


def corrected_scores(qx, qo, scalars, rates, names):
    """``q . x'`` from raw scores and per-item quantities (module docstring), vectorized.

    Parameters
    ----------
    qx : ndarray of shape S, raw scores ``q . x``
    qo : ndarray of shape (n_banks,) + S, ``q . o_b``
    scalars : ndarray of shape S + (6,), from :func:`rerank_scalars`
    rates : Rates
    names : list of str, the bank of each ``qo`` slice (and of the scalars' bank terms)

    Returns
    -------
    ndarray of shape S, float64
    """
    qx = np.asarray(qx, dtype=np.float64)
    active = rates.active(names)
    if not active:
        return qx
    bank_rates = rates.of(names)
    s = np.asarray(scalars, dtype=np.float64)
    xx = s[..., 0]
    numerator = np.zeros_like(qx)
    weights, sq_norms, item_rates = [], [], []
    for b in active:
        r = rates.item_rates(bank_rates[b], s[..., 1 + b], s[..., 3 + b])
        n_b = xx - 2 * r * s[..., 1 + b] + r * r * s[..., 3 + b]
        a_b = np.where(n_b > 0, 1 / np.sqrt(np.maximum(n_b, 1e-300)), 0.0)
        numerator += a_b * (qx - r * qo[b])
        weights.append(a_b)
        sq_norms.append(n_b)
        item_rates.append(r)
    if len(active) == 1:
        return numerator
    r0, r1 = item_rates
    u0u1 = xx - r0 * s[..., 1] - r1 * s[..., 2] + r0 * r1 * s[..., 5]
    yy = (weights[0] ** 2 * sq_norms[0] + weights[1] ** 2 * sq_norms[1]
          + 2 * weights[0] * weights[1] * u0u1)
    return np.where(yy > 0, numerator / np.sqrt(np.maximum(yy, 1e-300)), 0.0)
