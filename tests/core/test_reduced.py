"""The reduced product path (``n_components``): offsets in the bank's principal subspace.

Checked against an independent float64 reference (tests/helpers/dense_reference.py), against
the exact path where it must be the exact path, and for the selection kernels it brought."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from invgc_faiss import InvGC, InvGCIndex, kernels
from invgc_faiss.offsets import DEFAULT_COMPONENTS, LocalAdjOffset
from tests.helpers import dense_reference as ref
from tests.helpers.data import cone, random_unit


def score_rows(rng, m):
    """Rows of the shapes a selection meets: normal, uniform, skewed (a cone's similarities),
    heavy-tailed, a coarse grid (ties at any rank), two values, all equal."""
    rows = [rng.standard_normal(m), rng.random(m), 0.9 - rng.exponential(0.05, m),
            rng.standard_cauchy(m), np.round(rng.standard_normal(m) * 4) / 4,
            np.where(np.arange(m) % 5 == 0, 0.5, -0.5), np.full(m, 0.25)]
    return np.ascontiguousarray(np.array(rows, np.float32))


@pytest.mark.parametrize("m,k", [(2048, 409), (2048, 1), (2048, 2047), (500, 57), (100, 20)])
def test_selection_keeps_what_a_stable_sort_keeps(rng, m, k):
    """keep_top_k, top_k_of_rows and the reduced pool keep the k entries a stable descending
    sort puts first, on rows where the counting passes close in and on rows that fall back to
    the histogram (ties, two values, all equal)."""
    scores = np.concatenate([score_rows(rng, m) for _ in range(3)])
    n = scores.shape[0]
    expected = np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :k], axis=1)
    sims, nbrs = np.empty((n, k), np.float32), np.empty((n, k), np.int64)
    kernels.top_k_of_rows(scores, k, sims, nbrs)
    assert_array_equal(nbrs, expected)
    kept, degrees = scores.copy(), np.empty(n, np.float32)
    kernels.keep_top_k(kept, k, degrees)
    mask = np.zeros_like(scores, bool)
    np.put_along_axis(mask, expected, True, axis=1)
    assert_array_equal(kept, np.where(mask, scores, 0))
    bank = rng.standard_normal((m, 5)).astype(np.float32)
    offsets, sums = np.empty((n, 5), np.float32), np.empty(n, np.float32)
    kernels.reduced_pool_means(scores, k, bank, offsets, sums)
    weights = np.where(mask, scores, 0).astype(np.float64)
    assert_allclose(offsets, weights @ bank / k, rtol=1e-5, atol=1e-5)
    assert_allclose(sums, weights.sum(axis=1), rtol=1e-6)


def test_the_counting_passes_close_in_on_ordinary_rows(rng):
    """The fast path is the one taken: on normal, uniform and skewed rows the counting passes
    bracket the k-th largest within WINDOW entries; on a two-valued row they cannot."""
    rows = score_rows(rng, 2048)
    for row in rows[:3]:
        lo, n_lo, hi, n_hi, ok = kernels._bracket(row, 409)
        assert ok and n_lo >= 409 > n_hi and n_lo - n_hi <= kernels.WINDOW
        assert (row >= lo).sum() == n_lo and (row >= hi).sum() == n_hi
    assert not kernels._bracket(rows[5], 409)[4]


def test_reduced_offsets_match_the_float64_reference(rng):
    """Offsets through the reduced path equal the reference's to float32 rounding, and the
    pool is the reference's but for bank rows within float32 rounding of the k-th."""
    d, p = 96, 24
    bank, x = cone(rng, 3000, d, 0.3), cone(rng, 400, d, 0.3)
    off = LocalAdjOffset(bank, 0.2, n_components=p)
    assert off.basis.shape == (p, d)
    assert_allclose(off.basis @ off.basis.T, np.eye(p), atol=1e-5)
    offsets, degrees = np.empty((400, d), np.float32), np.empty(400, np.float32)
    off(x, offsets, degrees)
    expected, top, kth = ref.reduced_localadj_offset(x, bank, 0.2, p)
    assert_allclose(offsets, expected, atol=2e-6)
    # the same pool: the sum of the kept similarities is the reference's
    s = (x @ off.basis.T) @ off.bank_reduced.T
    assert_allclose(degrees, np.take_along_axis(s.astype(np.float64), top, 1).sum(1), rtol=1e-5)


def test_none_or_at_least_d_components_is_the_exact_path(rng):
    """``n_components=None`` and ``n_components >= d`` take the exact path (no basis), which
    matches the dense reference; the default reduces where d > 64."""
    d = 96
    bank, x = cone(rng, 1500, d, 0.3), cone(rng, 200, d, 0.3)
    exact = InvGC(rho_q=1.0, n_components=None).fit(query_bank=bank)
    wide = InvGC(rho_q=1.0, n_components=d).fit(query_bank=bank)
    default = InvGC(rho_q=1.0).fit(query_bank=bank)
    assert exact.offsets_[0].basis is None and wide.offsets_[0].basis is None
    assert default.offsets_[0].basis.shape == (DEFAULT_COMPONENTS, d)
    assert default.get_params()["n_components"] == DEFAULT_COMPONENTS
    assert_array_equal(wide.transform(x), exact.transform(x))
    assert_allclose(exact.transform(x), ref.projection_invgc(x, [bank], [1.0], 0.2), atol=1e-5)


def decaying_cone(rng, n, d, axis):
    """Unit rows around ``axis`` whose spread falls off geometrically by direction, as real
    embeddings' spectra do (the top 64 of 128 directions hold all but ~1e-4 of the energy)."""
    rows = axis + rng.standard_normal((n, d)) * (0.3 * 0.9 ** np.arange(d))
    return np.ascontiguousarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), np.float32)


def test_the_default_corrects_as_the_exact_path_up_to_the_dropped_directions(rng):
    """Where 64 directions hold nearly all of the bank's energy, the default's corrected
    vectors and the exact path's coincide to 1e-3; where the spectrum is flat (an isotropic
    spread around the axis), they still agree to a cosine of 0.98 (what the dropped directions
    cost)."""
    d = 128
    axis = np.zeros(d)
    axis[0] = 1.0
    for rows, floor in ((lambda n: decaying_cone(rng, n, d, axis), 0.999),
                        (lambda n: cone(rng, n, d, 0.2), 0.98)):
        bank, x = rows(4000), rows(500)
        exact = InvGC(rho_q=1.0, n_components=None).fit(query_bank=bank).transform(x)
        fast = InvGC(rho_q=1.0).fit(query_bank=bank).transform(x)
        cos = np.einsum("ij,ij->i", exact, fast)
        assert cos.min() > floor, (floor, cos.min())
        assert not np.array_equal(exact, fast)  # two paths, not one


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                       ("64", TypeError), (True, TypeError)])
def test_bad_n_components_is_refused(bad, error):
    with pytest.raises(error, match="n_components"):
        InvGC(n_components=bad)


def test_small_pools_and_bank_indexes_stay_exact(rng):
    """The reduced path is the product path's: a pool under PRODUCT_MIN_POOL (the gather) and an
    approximate bank index keep exact similarities."""
    bank = cone(rng, 2000, 96, 0.3)
    assert LocalAdjOffset(bank, 0.01, n_components=16).basis is None
    assert LocalAdjOffset(bank, 0.2, "IVF8,Flat", n_components=16).basis is None


def test_a_saved_index_adds_as_before_and_old_files_stay_exact(rng, tmp_path):
    """The file keeps ``n_components``: a loaded index corrects further rows bit for bit as the
    one saved. A file from before the parameter (no ``n_components`` in its header) loads with
    the exact path it was written with."""
    from invgc_faiss import persistence
    d = 96
    bank, x = cone(rng, 1500, d, 0.3), cone(rng, 300, d, 0.3)
    index = InvGCIndex(faiss.IndexFlatIP(d), query_bank=bank, rho_q=1.0)
    index.add(x[:100])
    path = str(tmp_path / "reduced.invgc")
    invgc_faiss.write_index(index, path)
    loaded = invgc_faiss.read_index(path)
    assert loaded.correction.n_components == DEFAULT_COMPONENTS
    for idx in (index, loaded):
        idx.add(x[100:])
    assert_array_equal(loaded.index.reconstruct_n(0, 300), index.index.reconstruct_n(0, 300))
    header = {"bank_names": ["query"], "params": {
        k: v for k, v in index.correction.get_params().items() if k != "n_components"}}
    old = persistence._refitted(header, {"bank_query": bank}, "cpu", InvGCIndex)
    assert old.n_components is None and old.offsets_[0].basis is None
