"""Spread variants of a paired split and the crowding statistics."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from invgc_faiss.lab.spread import VARIANTS, crowding, spread_variant
from invgc_faiss.lab.synthetic import make_cone_pairs


@pytest.fixture(scope="module")
def split():
    return make_cone_pairs(n_test=200, n_bank=1000, d=16, seed=1)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "itc"])
def test_variants_map_every_array_with_maps_fitted_on_the_reference_pairs(split, variant):
    spread = spread_variant(split, variant)
    for name in ("queries", "gallery", "bank_queries", "bank_gallery"):
        rows = getattr(spread, name)
        assert rows.dtype == np.float32 and rows.shape == getattr(split, name).shape
        assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    n = spread.tune_bank_queries.shape[0]  # the tuning arrays still partition the banks
    assert_allclose(spread.tune_bank_queries, spread.bank_queries[:n])
    assert_allclose(spread.tune_gallery, spread.bank_gallery[n:])
    before = crowding(split.bank_queries)[0]
    after = crowding(spread.bank_queries)[0]
    pooled = np.vstack([spread.bank_queries, spread.bank_gallery]).mean(axis=0)
    if variant == "as_is":
        assert after == pytest.approx(before)
    elif variant == "centered_shared":  # one mean removed: each side keeps its offset
        assert np.linalg.norm(pooled) < 0.1 < np.linalg.norm(spread.bank_queries.mean(axis=0))
    elif variant == "centered_per_side":
        assert np.linalg.norm(spread.bank_queries.mean(axis=0)) < 0.05
        assert np.linalg.norm(spread.bank_gallery.mean(axis=0)) < 0.05
    else:  # whitened: the cone is gone
        assert after < 0.5 * before and np.linalg.norm(pooled) < 0.1


def test_crowding_of_known_rows():
    d = 4
    rows = np.vstack([np.eye(d), -np.eye(d)]).astype(np.float32)  # mean 0, nn cosine 0
    mean_cos, nn_cos = crowding(rows)
    assert mean_cos == pytest.approx(-1 / 7) and nn_cos == pytest.approx(0.0)
    same = np.tile(np.eye(d)[:1], (5, 1)).astype(np.float32)
    assert crowding(same) == pytest.approx((1.0, 1.0))
