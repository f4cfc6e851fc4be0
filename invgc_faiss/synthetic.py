"""Generated cone-shaped paired embeddings: for scale tests and smoke runs, never for quality claims.

Two "modalities" share a latent vector per pair; each sits in its own narrow cone (a common offset
direction per modality, as dual encoders show a modality gap) with anisotropic spread, which is
what makes a few gallery items hubs.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class PairedSplit:
    """Paired embeddings for one retrieval task; row i of ``queries`` matches row i of ``gallery``.

    Attributes
    ----------
    queries, gallery : ndarray of shape (n, d), float32, unit rows -- the test pairs
    bank_queries, bank_gallery : ndarray of shape (m, d), float32, unit rows -- reference pairs
    description : str
    """

    queries: np.ndarray
    gallery: np.ndarray
    bank_queries: np.ndarray
    bank_gallery: np.ndarray
    description: str


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def cone_vectors(n, d, *, rng, axis=None, spread=0.5, decay=0.9):
    """``n`` unit vectors around ``axis`` (d,) with anisotropic Gaussian spread, float32 (n, d)."""
    if axis is None:
        axis = _unit(rng.standard_normal((1, d)))[0]
    scales = spread * decay ** np.arange(d)
    return _unit(axis + rng.standard_normal((n, d)) * scales)


def make_cone_pairs(n_test=1000, n_bank=4000, d=64, *, seed=0, noise=0.6):
    """Synthetic paired split: queries and gallery share a latent per pair, in two cones.

    Parameters
    ----------
    n_test, n_bank : int
        Test pairs and reference (bank) pairs.
    d : int
    seed : int
    noise : float
        Per-modality noise relative to the shared latent; higher is a harder task.

    Returns
    -------
    PairedSplit
    """
    rng = np.random.default_rng(seed)
    n = n_test + n_bank
    scales = 0.9 ** np.arange(d)
    latent = rng.standard_normal((n, d)) * scales
    axes = _unit(rng.standard_normal((2, d)))
    queries = _unit(1.5 * axes[0] + latent + noise * rng.standard_normal((n, d)) * scales)
    gallery = _unit(1.5 * axes[1] + latent + noise * rng.standard_normal((n, d)) * scales)
    return PairedSplit(
        queries=queries[:n_test], gallery=gallery[:n_test],
        bank_queries=queries[n_test:], bank_gallery=gallery[n_test:],
        description=f"SYNTHETIC cone pairs (generated, d={d}, seed={seed}): not real data",
    )
