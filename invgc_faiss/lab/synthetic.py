"""Generated cone-shaped paired embeddings: for scale tests and smoke runs, never for quality claims.

Two "modalities" share a latent vector per pair; each sits in its own narrow cone (a common offset
direction per modality, as dual encoders show a modality gap) with anisotropic spread, which is
what makes a few gallery items hubs.
"""
import numpy as np

from .datasets import PairedSplit


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def cone_vectors(n, d, *, rng, axis=None, spread=0.5, decay=0.9):
    """``n`` unit vectors around ``axis`` (d,) with anisotropic Gaussian spread, float32 (n, d)."""
    if axis is None:
        axis = _unit(rng.standard_normal((1, d)))[0]
    scales = spread * decay ** np.arange(d)
    return _unit(axis + rng.standard_normal((n, d)) * scales)


def make_cone_pairs(n_test=1000, n_bank=4000, d=64, *, seed=0, noise=0.6, tune_fraction=0.2):
    """Synthetic paired split: queries and gallery share a latent per pair, in two cones.

    Parameters
    ----------
    n_test, n_bank : int
        Test pairs and reference (bank) pairs.
    tune_fraction : float
        Share of the reference pairs held out for tuning (the last ones).
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
    split = n - int(tune_fraction * n_bank)
    return PairedSplit(
        queries=queries[:n_test], gallery=gallery[:n_test],
        bank_queries=queries[n_test:], bank_gallery=gallery[n_test:],
        tune_queries=queries[split:], tune_gallery=gallery[split:],
        tune_bank_queries=queries[n_test:split], tune_bank_gallery=gallery[n_test:split],
        description=f"SYNTHETIC cone pairs (generated, d={d}, seed={seed}): not real data",
    )
