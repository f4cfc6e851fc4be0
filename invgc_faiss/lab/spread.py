"""Spread variants of a paired split: the same pairs with the cone taken away, as users do.

Each variant maps every array of a :class:`PairedSplit` (test pairs, reference pairs, tuning pairs)
with a map fitted on the reference pairs only, then renormalizes the rows:

* ``as_is``: nothing changes;
* ``centered_shared``: both sides minus one mean, that of the two banks pooled;
* ``centered_per_side``: each side minus its own bank's mean;
* ``whitened``: PCA-whitening fitted on the two banks pooled (mean removed, each principal
  direction divided by its standard deviation, eigenvalues floored at 1e-6 of the largest);
* ``itc``: the outputs of an ITC-only adapter trained on the reference pairs (the stress test's
  ``itc`` alignment: :mod:`invgc_faiss.rebalance`), which spreads the cone as a side effect.

The tuning arrays are views of the reference arrays (the tuning rows last), so the maps keep that
partition.
"""
import dataclasses

import numpy as np

from ..rebalance import ALIGNMENTS
from .metrics import degeneration
from .stress import SIDE_ARRAYS

VARIANTS = ("as_is", "centered_shared", "centered_per_side", "whitened", "itc")


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _maps(split, variant, *, itc_epochs=None, seed=0):
    """``{"query": f, "gallery": f}``, each a callable (n, d) -> (n, d) float32."""
    q, g = split.bank_queries.astype(np.float64), split.bank_gallery.astype(np.float64)
    if variant == "as_is":
        return {"query": lambda x: x, "gallery": lambda x: x}
    if variant == "centered_shared":
        mean = np.vstack([q, g]).mean(axis=0)
        return {side: (lambda x: _unit(x - mean)) for side in ("query", "gallery")}
    if variant == "centered_per_side":
        mq, mg = q.mean(axis=0), g.mean(axis=0)
        return {"query": lambda x: _unit(x - mq), "gallery": lambda x: _unit(x - mg)}
    if variant == "whitened":
        both = np.vstack([q, g])
        mean = both.mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov(both - mean, rowvar=False))
        values = np.maximum(values, 1e-6 * values.max())
        whiten = vectors / np.sqrt(values)
        return {side: (lambda x: _unit((x - mean) @ whiten)) for side in ("query", "gallery")}
    if variant == "itc":
        adapter = ALIGNMENTS["itc"](seed=seed, **({} if itc_epochs is None else
                                                  {"max_epochs": itc_epochs}))
        adapter.fit(split.bank_queries, split.bank_gallery)
        return {"query": adapter.transform_query, "gallery": adapter.transform_gallery}
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def spread_variant(split, variant, *, itc_epochs=None, seed=0):
    """A copy of ``split`` with both sides mapped by ``variant`` (module docstring), the maps
    fitted on the reference pairs."""
    maps = _maps(split, variant, itc_epochs=itc_epochs, seed=seed)
    changes = {}
    for side, (test_name, bank_name, tune_name, tune_bank_name) in SIDE_ARRAYS.items():
        bank = np.ascontiguousarray(maps[side](getattr(split, bank_name)), dtype=np.float32)
        n_tune_bank = getattr(split, tune_bank_name).shape[0]
        changes.update({test_name: np.ascontiguousarray(maps[side](getattr(split, test_name)),
                                                        dtype=np.float32),
                        bank_name: bank, tune_bank_name: bank[:n_tune_bank],
                        tune_name: bank[n_tune_bank:]})
    return dataclasses.replace(split, description=f"{split.description} [{variant}]", **changes)


def crowding(rows, sample=2000, seed=0):
    """``(mean cosine, nearest-neighbour cosine)`` of unit rows (n, d)
    (:func:`invgc_faiss.lab.metrics.degeneration`) over a seeded sample of at most ``sample``
    rows."""
    rows = np.asarray(rows)
    if rows.shape[0] > sample:
        rows = rows[np.random.default_rng(seed).choice(rows.shape[0], sample, replace=False)]
    measured = degeneration(rows)
    return measured["mean_cos"], measured["nn_cos"]
