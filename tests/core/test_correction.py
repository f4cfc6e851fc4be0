"""Stored vectors match the dense float64 reference written from docs/science.md (to <= 1e-5)."""
import faiss
import numpy as np
import pytest
import threadpoolctl
from numpy.testing import assert_allclose, assert_array_equal

from tests.helpers import dense_reference as ref
from tests.helpers.data import cone, random_unit, unit_rows
from invgc_faiss import InvGC, InvGCIndex
from invgc_faiss.offsets import pool_size

TOL = 1e-5


def stored_vectors(index):
    return index.index.reconstruct_n(0, index.ntotal)


def build_and_add(x, bank_g, bank_q, **params):
    d = x.shape[1]
    index = InvGCIndex(faiss.IndexFlatIP(d), gallery_bank=bank_g, query_bank=bank_q, **params)
    index.add(x)
    return index


def datasets(rng):
    d = 24
    axis = unit_rows(rng.standard_normal((1, d)))[0]
    dup_bank = np.repeat(random_unit(rng, 40, d), 3, axis=0)  # every similarity tied 3 ways
    return {
        "random": (random_unit(rng, 120, d), random_unit(rng, 90, d), random_unit(rng, 70, d)),
        "cone": (cone(rng, 120, d, 0.1, axis), cone(rng, 90, d, 0.1, axis), cone(rng, 70, d, 0.1, axis)),
        "ties": (np.repeat(random_unit(rng, 40, d), 3, axis=0), dup_bank, dup_bank[::-1].copy()),
    }


@pytest.mark.parametrize("data", ["random", "cone", "ties"])
@pytest.mark.parametrize("pool_rate", [1e-4, 0.05, 0.3, 1.0])  # k = 1 ... k = M
@pytest.mark.parametrize("banks", ["both", "gallery", "query"])
def test_localadj_matches_dense_reference(data, pool_rate, banks):
    x, bank_g, bank_q = datasets(np.random.default_rng(7))[data]
    use_g = bank_g if banks in ("both", "gallery") else None
    use_q = bank_q if banks in ("both", "query") else None
    index = build_and_add(x, use_g, use_q, r_g=0.7, r_q=1.3, pool_rate=pool_rate)
    expected = ref.invgc(x, [b for b in (use_g, use_q) if b is not None],
                         [r for b, r in ((use_g, 0.7), (use_q, 1.3)) if b is not None],
                         "localadj", pool_rate)
    assert_allclose(stored_vectors(index), expected, atol=TOL)


def test_pool_size_edges():
    assert pool_size(1e-4, 90) == 1
    assert pool_size(1.0, 90) == 90
    assert pool_size(0.05, 90) == 4
    assert pool_size(0.01, 99) == 1


def test_degrees_match_dense_reference(small_data):
    s = small_data
    index = build_and_add(s["xb"], s["bank_g"], s["bank_q"], r_g=0.3, r_q=0.3, pool_rate=0.1)
    ids = np.arange(0, 300, 7)
    deg = index.get_degrees(ids)
    assert_allclose(deg[:, 0], ref.localadj_bank(s["xb"][ids], s["bank_g"], 0.3, 0.1)[1], atol=1e-4)
    assert_allclose(deg[:, 1], ref.localadj_bank(s["xb"][ids], s["bank_q"], 0.3, 0.1)[1], atol=1e-4)


@pytest.mark.parametrize("banks", ["both", "gallery", "query"])
def test_full_variant_equals_batch_formula_given_full_gallery_mean(rng, banks):
    x, bank_g, bank_q = (cone(rng, 200, 20), cone(rng, 150, 20), cone(rng, 130, 20))
    use = [b for b, keep in ((bank_g, banks != "query"), (bank_q, banks != "gallery")) if keep]
    rates = [0.6, 0.9][: len(use)] if banks == "both" else [0.6 if banks == "gallery" else 0.9]
    index = InvGCIndex(faiss.IndexFlatIP(20), variant="full", r_g=0.6, r_q=0.9,
                       gallery_bank=bank_g if banks != "query" else None,
                       query_bank=bank_q if banks != "gallery" else None)
    index.train(x)  # gallery mean from the full gallery
    for start in range(0, 200, 64):  # streamed in batches
        index.add(x[start:start + 64])
    assert_allclose(stored_vectors(index), ref.invgc(x, use, rates, "full"), atol=TOL)


def test_full_variant_untrained_uses_gallery_bank_mean(rng):
    x, bank_g, bank_q = cone(rng, 100, 20), cone(rng, 150, 20), cone(rng, 130, 20)
    index = build_and_add(x, bank_g, bank_q, variant="full", r_g=0.5, r_q=0.8)
    expected = ref.invgc(x, [bank_g, bank_q], [0.5, 0.8], "full",
                         gallery_mean=bank_g.astype(np.float64).mean(axis=0))
    assert_allclose(stored_vectors(index), expected, atol=TOL)


def test_full_variant_is_affine_map(rng):
    """x' depends on x alone through C x and constants: correcting rows one by one or together,
    and with the bank replaced by a differently sized bank of equal C and b_mean, agree."""
    bank = cone(rng, 64, 12)
    corr = InvGC(variant="full", r_g=0.4).fit(gallery_bank=bank)
    doubled = InvGC(variant="full", r_g=0.4).fit(gallery_bank=np.concatenate([bank, bank]))
    x = cone(rng, 30, 12)
    together = corr.transform(x)
    assert_allclose(np.vstack([corr.transform(row[None]) for row in x]), together, atol=1e-6)
    assert_allclose(doubled.transform(x), together, atol=1e-6)


@pytest.mark.parametrize("variant", ["localadj", "full"])
def test_zero_rates_reproduce_plain_index_exactly(small_data, variant):
    s = small_data
    index = build_and_add(s["xb"], s["bank_g"], s["bank_q"], r_g=0.0, r_q=0.0, variant=variant)
    plain = faiss.IndexFlatIP(s["d"])
    plain.add(s["xb"])
    D, I = index.search(s["xq"], 20)
    D0, I0 = plain.search(s["xq"], 20)
    np.testing.assert_array_equal(I, I0)
    np.testing.assert_array_equal(D, D0)


def test_batching_does_not_change_result(small_data):
    s = small_data
    banks = {"query_bank": s["bank_q"], "gallery_bank": s["bank_g"]}
    big = InvGC(r_g=0.5, r_q=0.5, pool_rate=0.1).fit(**banks)
    tiny = InvGC(r_g=0.5, r_q=0.5, pool_rate=0.1, batch_size=7).fit(**banks)
    assert_allclose(tiny.transform(s["xb"]), big.transform(s["xb"]), atol=1e-7)


def test_cancelled_row_stays_zero_not_nan():
    """k = 1, r = 1, x equal to a bank row: x - r off(x) = 0; normalize(0) = 0 by convention."""
    bank = np.eye(4, dtype=np.float32)
    out = InvGC(r_g=1.0, pool_rate=0.25).fit(gallery_bank=bank).transform(bank[:1])
    assert np.all(np.isfinite(out))
    assert_allclose(out, np.zeros((1, 4)), atol=1e-7)



@pytest.mark.parametrize("block_rows", [0, 7, 1000, 5000])
def test_gather_kernel_is_the_weighted_mean_over_found_rows_for_any_bank_blocking(rng, block_rows):
    """The cache-blocked gather (rows' neighbours ordered by bank block, the bank walked block by
    block) against a float64 loop; block_rows 7 asks for more blocks than k, which the kernel
    caps at k (3000 / 50 = 60 rows a block)."""
    from invgc_faiss import kernels

    bank = rng.standard_normal((3000, 8)).astype(np.float32)
    k = 50
    nbrs = np.stack([rng.choice(3000, k, replace=False) for _ in range(40)]).astype(np.int64)
    nbrs[rng.random(nbrs.shape) < 0.2] = -1
    nbrs[3] = -1  # a row with nothing found
    sims = rng.random(nbrs.shape).astype(np.float32)
    offsets, degrees = np.empty((40, 8), np.float32), np.empty(40, np.float32)
    found = np.empty(40, np.int64)
    kernels.weighted_neighbour_mean(bank, sims, nbrs, offsets, degrees, found, block_rows)
    for i in range(40):
        kept = nbrs[i] >= 0
        weighted = (sims[i, kept, None].astype(np.float64) * bank[nbrs[i, kept]]).sum(axis=0)
        assert found[i] == kept.sum()
        assert_allclose(offsets[i], weighted / max(kept.sum(), 1), rtol=1e-6, atol=1e-7)
        assert degrees[i] == pytest.approx(sims[i, kept].astype(np.float64).sum(), rel=1e-6)
    assert not offsets[3].any() and found[3] == 0


def test_positional_banks_keep_the_old_order_for_one_release(small_data):
    """``fit(gallery_bank, query_bank)`` positionally was the order before 0.2: it still works,
    with a DeprecationWarning; the banks are keyword arguments now, query bank first."""
    s = small_data
    params = {"r_g": 0.5, "r_q": 1.0, "pool_rate": 0.1}
    by_keyword = InvGC(**params).fit(query_bank=s["bank_q"], gallery_bank=s["bank_g"])
    with pytest.warns(DeprecationWarning, match=r"fit\(query_bank=..., gallery_bank=...\)") as w:
        old_order = InvGC(**params).fit(s["bank_g"], s["bank_q"])
    assert w[0].filename == __file__
    assert old_order.bank_names_ == by_keyword.bank_names_ == ["gallery", "query"]
    assert_allclose(old_order.transform(s["xb"]), by_keyword.transform(s["xb"]), atol=0)
    with pytest.warns(DeprecationWarning):
        assert InvGC(**params).fit(s["bank_g"]).bank_names_ == ["gallery"]
    with pytest.raises(TypeError, match="by keyword"):
        InvGC(**params).fit(s["bank_g"], gallery_bank=s["bank_g"])


@pytest.mark.parametrize("n_components", [None, 8])
@pytest.mark.parametrize("variant", ["localadj", "full"])
@pytest.mark.parametrize("banks", ["query", "both"])
def test_a_rows_correction_does_not_depend_on_the_batch_it_came_in(rng, banks, variant,
                                                                   n_components, monkeypatch):
    """Bit for bit, on every BLAS kernel: one row at a time, odd batch sizes and one batch store
    the same vectors when each batch gives the position of its first row (``start``): every
    product runs over the row's fixed block of the grid, on one BLAS thread. Batches under
    SERIAL_ROWS run the gather on one thread, larger ones on all; batches under CHUNK_ROWS
    combine on the calling thread, larger ones in chunks on the pool; the block pool runs one
    worker or several. ``n_components=8``: the reduced path (d = 24), None the exact one."""
    from invgc_faiss import kernels, row_blocks
    import numba
    monkeypatch.setattr(kernels, "SERIAL_ROWS", 10)  # sizes 1 and 7 serial, the rest parallel
    monkeypatch.setattr(row_blocks, "CHUNK_ROWS", 10)  # the same for the per-row kernels
    threads = numba.get_num_threads()
    x, bank_g, bank_q = (random_unit(rng, n, 24) for n in (300, 300, 200))
    given = {"query_bank": bank_q, "gallery_bank": bank_g if banks == "both" else None}
    correction = InvGC(pool_rate=0.05, rho_q=1.0, rho_g=1.0 if banks == "both" else None,
                       variant=variant, n_components=n_components).fit(**given)
    reduced = [getattr(off, "basis", None) is not None for off in correction.offsets_]
    assert all(reduced) == (n_components is not None and variant == "localadj")
    whole, degrees = correction.correct(x)
    for size in (1, 7, 13, 299):
        parts = [correction.correct(x[i:i + size], i) for i in range(0, 300, size)]
        assert_array_equal(np.concatenate([p[0] for p in parts]), whole)
        assert_array_equal(np.concatenate([p[1] for p in parts]), degrees)
    assert_array_equal(correction.transform(x[150:], start=150), whole[150:])
    numba.set_num_threads(1)  # one block worker
    try:
        assert_array_equal(correction.correct(x)[0], whole)
    finally:
        numba.set_num_threads(threads)
    with threadpoolctl.threadpool_limits(1):  # whatever BLAS thread count the caller set
        assert_array_equal(correction.correct(x)[0], whole)
    for pool in (0.05, 0.02):  # the second product, and the gather (smaller pools)
        correction = InvGC(pool_rate=pool, rho_q=1.0,
                           n_components=n_components).fit(query_bank=bank_q)
        whole = correction.correct(x)[0]
        parts = [correction.correct(x[i:i + 7], i)[0] for i in range(0, 300, 7)]
        assert_array_equal(np.concatenate(parts), whole)
    assert numba.get_num_threads() == threads  # restored after the serial batches


def test_without_its_position_a_row_is_corrected_within_float32_rounding(rng):
    """``transform`` without ``start`` puts a batch's first row at the grid's origin: a row may
    then meet another BLAS call, whose float32 rounding differs by a few ulp. The stated bound:
    each coordinate within 1e-5. A similarity is within d * 2**-24 (1.4e-6 at d = 24) of exact
    whichever call computes it, the offset a mean of such terms, and the projection divides by
    norms near 1 on these rows; measured on OpenBLAS's AVX2 kernel: at most 3.1e-7 (d = 24 and
    d = 384), with half the rows differing at all."""
    x, bank_q = random_unit(rng, 300, 24), random_unit(rng, 200, 24)
    correction = InvGC(pool_rate=0.05, rho_q=1.0).fit(query_bank=bank_q)
    whole = correction.transform(x)
    parts = np.concatenate([correction.transform(x[i:i + 7]) for i in range(0, 300, 7)])
    assert_allclose(parts, whole, rtol=0, atol=1e-5)
