"""Seeded unit vectors and cone-shaped data (representation degeneration) for the tests."""
import numpy as np


def unit_rows(x):
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(rng, n, d):
    return unit_rows(rng.standard_normal((n, d)))


def cone(rng, n, d, spread=0.15, axis=None):
    """Unit vectors crowded around one direction (representation degeneration)."""
    if axis is None:
        axis = np.ones(d) / np.sqrt(d)
    return unit_rows(axis + spread * rng.standard_normal((n, d)))


def cone_data(seed, d, n_gallery, n_queries, n_gallery_bank, n_query_bank):
    """Gallery, queries and both banks around one random axis (same cone), as the dict the
    index tests take: ``d``, ``xb``, ``xq``, ``bank_g``, ``bank_q``."""
    rng = np.random.default_rng(seed)
    axis = unit_rows(rng.standard_normal((1, d)))[0]
    return {"d": d, "xb": cone(rng, n_gallery, d, 0.3, axis),
            "xq": cone(rng, n_queries, d, 0.3, axis),
            "bank_g": cone(rng, n_gallery_bank, d, 0.3, axis),
            "bank_q": cone(rng, n_query_bank, d, 0.3, axis)}
