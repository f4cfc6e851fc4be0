"""Rerank mode: exact rescoring of q . x', rates changed at search time, attaching to built indexes."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from tests.helpers import dense_reference as ref
import invgc_faiss
from tests.helpers.data import cone
from invgc_faiss import InvGCIndex, InvGCRerankIndex
from invgc_faiss.rates import Rates
from invgc_faiss.scoring import combine, corrected_scores, rerank_scalars

IP = faiss.METRIC_INNER_PRODUCT


@pytest.fixture
def data(rng):
    d = 16
    axis = np.ones(d) / 4
    return {"d": d, "xb": cone(rng, 300, d, 0.4, axis), "xq": cone(rng, 40, d, 0.4, axis),
            "bank_g": cone(rng, 200, d, 0.4, axis), "bank_q": cone(rng, 150, d, 0.4, axis)}


def params(s, **extra):
    return {"gallery_bank": s["bank_g"], "query_bank": s["bank_q"], "r_g": 0.7, "r_q": 1.6,
            "pool_rate": 0.05, **extra}


def build(cls, s, inner=None, **extra):
    index = cls(inner or faiss.IndexFlatIP(s["d"]), **params(s, **extra))
    index.train(s["xb"])
    index.add(s["xb"])
    return index


@pytest.mark.parametrize("variant", ["localadj", "full"])
@pytest.mark.parametrize("banks", ["both", "gallery", "query"])
def test_rescored_scores_equal_dense_reference(data, variant, banks):
    s = data
    kw = {"offset_dtype": "float32", "k_factor": 300, "variant": variant}
    if banks == "gallery":
        kw["query_bank"] = None
    if banks == "query":
        kw["gallery_bank"] = None
    index = build(InvGCRerankIndex, s, **kw)
    used = [(b, r) for b, r in ((kw.get("gallery_bank", s["bank_g"]), 0.7),
                                (kw.get("query_bank", s["bank_q"]), 1.6)) if b is not None]
    corrected = ref.invgc(s["xb"], [b for b, _ in used], [r for _, r in used], variant, 0.05,
                          gallery_mean=s["xb"].mean(axis=0) if variant == "full" else None)
    D, I = index.search(s["xq"], 20)
    expected = np.take_along_axis(s["xq"].astype(np.float64) @ corrected.T, I, axis=1)
    assert_allclose(D, expected, atol=1e-5)


@pytest.mark.parametrize("variant", ["localadj", "full"])
@pytest.mark.parametrize("candidates", ["union", "projected", "raw"])
def test_covering_k_factor_equals_baked_mode(data, variant, candidates):
    s = data
    baked = build(InvGCIndex, s, variant=variant)
    rerank = build(InvGCRerankIndex, s, variant=variant, k_factor=1000, offset_dtype="float32",
                   candidates=candidates)
    D0, I0 = baked.search(s["xq"], 15)
    D, I = rerank.search(s["xq"], 15)
    assert_array_equal(I, I0)
    assert_allclose(D, D0, atol=1e-5)


def test_float16_offsets_keep_score_error_below_1e3(data):
    s = data
    full = build(InvGCRerankIndex, s, k_factor=1000, offset_dtype="float32")
    half = build(InvGCRerankIndex, s, k_factor=1000, offset_dtype="float16")
    assert half.items.columns["offsets_0"].dtype == np.float16
    D32, I32 = full.search(s["xq"], 300)
    D16, I16 = half.search(s["xq"], 300)
    order = np.argsort(I16, axis=1)
    assert_array_equal(np.sort(I32, axis=1), np.take_along_axis(I16, order, axis=1))
    assert np.abs(np.take_along_axis(D32, np.argsort(I32, axis=1), axis=1)
                  - np.take_along_axis(D16, order, axis=1)).max() <= 1e-3


def test_rates_change_at_search_time_without_rebuild(data):
    s = data
    rerank = build(InvGCRerankIndex, s, k_factor=1000, offset_dtype="float32")
    stored = {k: v.copy() for k, v in rerank.items.columns.items()}
    for r_g, r_q in ((0.0, 0.0), (2.5, 0.3), (0.0, 3.0)):
        rerank.set_rates(r_g=r_g, r_q=r_q)
        baked = build(InvGCIndex, s, r_g=r_g, r_q=r_q)
        assert_array_equal(rerank.search(s["xq"], 10)[1], baked.search(s["xq"], 10)[1])
    for k, v in stored.items():
        assert_array_equal(rerank.items.columns[k], v)
    plain = faiss.IndexFlatIP(s["d"])
    plain.add(s["xb"])
    rerank.set_rates(0.0, 0.0)
    assert_array_equal(rerank.search(s["xq"], 10)[1], plain.search(s["xq"], 10)[1])
    with pytest.raises(ValueError, match="r_g must be finite and >= 0"):
        rerank.set_rates(r_g=-1)


def test_small_k_factor_still_returns_k_results_from_the_candidates(data):
    s = data
    rerank = build(InvGCRerankIndex, s, k_factor=2)
    D, I = rerank.search(s["xq"], 5)
    assert (I >= 0).all() and (np.diff(D, axis=1) <= 1e-7).all()


def test_l2_inner_index(data):
    s = data
    baked = build(InvGCIndex, s, inner=faiss.IndexFlatL2(s["d"]))
    rerank = build(InvGCRerankIndex, s, inner=faiss.IndexFlatL2(s["d"]), k_factor=1000,
                   offset_dtype="float32")
    D0, I0 = baked.search(s["xq"], 10)
    D, I = rerank.search(s["xq"], 10)
    assert_array_equal(I, I0)
    assert_allclose(D, D0, atol=2e-5)


def test_pads_like_faiss_and_handles_selector(data):
    s = data
    rerank = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), **params(s))
    rerank.add_with_ids(s["xb"][:3], np.array([10, 20, 30]))
    D, I = rerank.search(s["xq"][:2], 5)
    assert (I[:, 3:] == -1).all() and np.isneginf(D[:, 3:]).all()
    sel = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.array([20, 30])))
    _, I = rerank.search(s["xq"][:2], 5, params=sel)
    assert set(I[:, :2].ravel()) <= {20, 30} and (I[:, 2:] == -1).all()


def test_remove_ids_keeps_items_aligned(data):
    s = data
    baked = build(InvGCIndex, s)
    rerank = build(InvGCRerankIndex, s, k_factor=1000, offset_dtype="float32")
    for index in (baked, rerank):
        assert index.remove_ids(np.arange(0, 300, 3)) == 100
    assert_array_equal(rerank.search(s["xq"], 10)[1], baked.search(s["xq"], 10)[1])


def test_range_search_is_refused(data):
    with pytest.raises(NotImplementedError, match="rerank mode"):
        build(InvGCRerankIndex, data).range_search(data["xq"], 0.5)


def test_corrected_scores_match_combine(data):
    """The closed form equals scoring the vectors scoring.combine builds."""
    s = data
    index = build(InvGCIndex, s)
    offsets, _ = index.correction.offsets(s["xb"])
    rates, names = Rates("paper", gallery=0.9, query=2.2), index.correction.bank_names_
    corrected = combine(s["xb"], offsets, rates, names)
    qo = np.stack([s["xq"] @ o.T for o in offsets])
    got = corrected_scores(s["xq"] @ s["xb"].T, qo, rerank_scalars(s["xb"], offsets)[None], rates,
                           names)
    assert_allclose(got, s["xq"] @ corrected.T, atol=1e-5)


INNERS = {
    "flat": lambda d, x: _filled(faiss.IndexFlatIP(d), x),
    "ivf": lambda d, x: _filled(faiss.index_factory(d, "IVF4,Flat", IP), x),
    "hnsw": lambda d, x: _filled(faiss.index_factory(d, "HNSW16", IP), x),
    "idmap": lambda d, x: _filled(faiss.IndexIDMap2(faiss.IndexFlatIP(d)), x, ids=True),
    "pq": lambda d, x: _filled(faiss.index_factory(d, "PQ4x4", IP), x),
}


def _filled(index, x, ids=False):
    index.train(x)
    if ids:
        index.add_with_ids(x, np.arange(x.shape[0]) * 10 + 3)
    else:
        index.add(x)
    return index


@pytest.mark.parametrize("kind", list(INNERS))
def test_from_existing_matches_building_from_scratch(data, kind):
    s = data
    existing = INNERS[kind](s["d"], s["xb"])
    set_probe(existing)
    before = faiss.serialize_index(existing) if kind != "idmap" else None
    vectors = s["xb"] if kind == "pq" else None  # PQ cannot give back exact vectors
    done = []
    attached = InvGCRerankIndex.from_existing(
        existing, vectors=vectors, batch_size=64, progress=lambda n, total: done.append(n),
        k_factor=1000, offset_dtype="float32", **params(s))
    assert sum(done) == 300 and attached.ntotal == 300
    if before is not None:  # an IVF's temporary direct map is gone again
        assert faiss.serialize_index(existing).tobytes() == before.tobytes()
    fresh = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), k_factor=1000, offset_dtype="float32",
                             **params(s))
    if kind == "idmap":
        fresh.add_with_ids(s["xb"], np.arange(300) * 10 + 3)
    else:
        fresh.add(s["xb"])
    # per-item data equals adding the same vectors from scratch
    for name, column in fresh.items.columns.items():
        assert_allclose(attached.items.columns[name], column, atol=1e-6)
    if kind in ("flat", "idmap"):  # exact raw scores, exhaustive candidates: same results
        assert_array_equal(attached.search(s["xq"], 10)[1], fresh.search(s["xq"], 10)[1])


def set_probe(index):
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = ivf.nlist


def test_from_existing_refuses_ivf_with_custom_ids(data):
    s = data
    ivf = faiss.index_factory(s["d"], "IVF4,Flat", IP)
    ivf.train(s["xb"])
    ivf.add_with_ids(s["xb"], np.arange(300) + 1000)
    with pytest.raises(ValueError, match="custom ids"):
        InvGCRerankIndex.from_existing(ivf, **params(s))


def test_from_existing_checks_vector_shape(data):
    s = data
    flat = _filled(faiss.IndexFlatIP(s["d"]), s["xb"])
    with pytest.raises(ValueError, match=r"vectors must have shape \(300, 16\)"):
        InvGCRerankIndex.from_existing(flat, vectors=s["xb"][:10], **params(s))


def test_persistence_round_trip(tmp_path, data):
    s = data
    index = build(InvGCRerankIndex, s, k_factor=3)
    index.set_rates(r_g=2.0)
    path = tmp_path / "rerank.invgc"
    invgc_faiss.write_index(index, path)
    loaded = invgc_faiss.read_index(path)
    assert isinstance(loaded, InvGCRerankIndex) and loaded.k_factor == 3
    assert loaded.rates == index.rates
    D0, I0 = index.search(s["xq"], 10)
    D, I = loaded.search(s["xq"], 10)
    assert_array_equal(I, I0)
    assert_array_equal(D, D0)


@pytest.mark.parametrize("offset_dtype", ["float32", "float16"])
def test_rerank_rows_added_in_any_batches_equal_one_add(data, offset_dtype):
    """Offsets, scalars and degrees are those of one add, bit for bit, on every BLAS kernel:
    each add corrects its rows at their gallery positions (docs/reproducibility.md)."""
    s = data
    whole = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), offset_dtype=offset_dtype, **params(s))
    whole.add(s["xb"])
    parts = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), offset_dtype=offset_dtype, **params(s))
    for start in range(0, 300, 13):
        parts.add(s["xb"][start:start + 13])
    for name, column in whole.items.columns.items():
        assert_array_equal(parts.items.columns[name], column)
    assert_array_equal(parts.search(s["xq"], 10)[1], whole.search(s["xq"], 10)[1])
