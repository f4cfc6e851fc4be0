"""Residual side maps: the adapter of one side, its forward pass and its backward pass.

A side map sends a unit row ``x`` (d,) to ``z = normalize(x M)`` with ``M = I + Delta``:

* ``ResidualLinear``: ``Delta`` is a full (d, d) matrix, zero at init (identity map).
* ``ResidualLowRank(rank)``: ``Delta = P R^T`` with ``P``, ``R`` of shape (d, rank); ``P = 0`` at
  init (identity map) and ``R`` random, so the first gradient step already moves ``P``.

Backward, for ``y = x M`` and ``z = y / ||y||``::

    dL/dy     = (dL/dz - z (z . dL/dz)) / ||y||
    dL/dDelta = x^T dL/dy;   low rank:  dL/dP = x^T (dL/dy R),  dL/dR = (dL/dy)^T (x P)

Parameters live in a dict of float64 arrays that the optimiser updates in place.
"""
import numpy as np


def normalize_rows(y):
    """``y / ||y||`` row by row, and the norms (n, 1); a zero row stays zero."""
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return y / np.where(norms > 0, norms, 1.0), norms


def normalize_backward(z, norms, grad_z):
    """Gradient with respect to ``y`` of a loss whose gradient at ``z = normalize(y)`` is
    ``grad_z``."""
    radial = np.einsum("ij,ij->i", z, grad_z)[:, None]
    return (grad_z - z * radial) / np.where(norms > 0, norms, 1.0)


class ResidualLinear:
    """Full residual map ``M = I + Delta``, ``Delta`` (d, d)."""

    name = "linear"

    def init_params(self, d, rng):
        return {"delta": np.zeros((d, d))}

    def matrix(self, params):
        return np.eye(params["delta"].shape[0]) + params["delta"]

    def forward(self, params, x):
        """``z = normalize(x M)`` (B, d) and the cache for :meth:`backward`."""
        z, norms = normalize_rows(x @ self.matrix(params))
        return z, (x, z, norms)

    def backward(self, params, cache, grad_z):
        x, z, norms = cache
        return {"delta": x.T @ normalize_backward(z, norms, grad_z)}


class ResidualLowRank:
    """Low-rank residual map ``M = I + P R^T``, ``P`` and ``R`` of shape (d, rank)."""

    name = "lowrank"

    def __init__(self, rank):
        self.rank = rank

    def init_params(self, d, rng):
        return {"p": np.zeros((d, self.rank)),
                "r": rng.standard_normal((d, self.rank)) / np.sqrt(d)}

    def matrix(self, params):
        return np.eye(params["p"].shape[0]) + params["p"] @ params["r"].T

    def forward(self, params, x):
        h = x @ params["p"]
        z, norms = normalize_rows(x + h @ params["r"].T)
        return z, (x, h, z, norms)

    def backward(self, params, cache, grad_z):
        x, h, z, norms = cache
        grad_y = normalize_backward(z, norms, grad_z)
        return {"p": x.T @ (grad_y @ params["r"]), "r": grad_y.T @ h}


def side_map(kind, rank):
    """The side map for ``kind`` ``"linear"`` or ``"lowrank"`` (then of rank ``rank``)."""
    if kind == "linear":
        return ResidualLinear()
    if kind == "lowrank":
        return ResidualLowRank(rank)
    raise ValueError(f"adapter kind must be 'linear' or 'lowrank', got {kind!r}")
