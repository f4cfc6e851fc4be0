"""Bank search: approximate bank indexes, their settings, "auto" calibration, bank samples."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from invgc_faiss import InvGC, InvGCIndex
from tests.helpers import dense_reference as ref


def test_bank_search_params_are_applied_and_persisted(tmp_path, small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       gallery_bank_index="IVF4,Flat", query_bank_index="HNSW8",
                       bank_search_params="nprobe=3,efSearch=77", rho_q=1.0)
    g, q = (off.bank_index for off in index.correction.offsets_)
    assert faiss.extract_index_ivf(g).nprobe == 3
    assert faiss.downcast_index(q).hnsw.efSearch == 77
    index.add(s["xb"])
    invgc_faiss.write_index(index, tmp_path / "i")
    loaded = invgc_faiss.read_index(tmp_path / "i")
    assert faiss.extract_index_ivf(loaded.correction.offsets_[0].bank_index).nprobe == 3
    loaded.add(s["xq"])
    index.add(s["xq"])
    assert_array_equal(loaded.search(s["xq"], 5)[1], index.search(s["xq"], 5)[1])


def test_bad_bank_search_params(small_data):
    with pytest.raises(ValueError, match="'nosuchknob' applies to none of the bank indexes"):
        InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=small_data["bank_g"],
                   gallery_bank_index="IVF4,Flat", bank_search_params="nosuchknob=3")


def test_full_probe_ivf_bank_equals_exact_bank(small_data):
    s = small_data
    exact = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       rho_q=1.0)
    ann = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                     gallery_bank_index="IVF4,Flat", query_bank_index="IVF4,Flat",
                     bank_search_params="nprobe=4", rho_q=1.0)
    assert_allclose(ann.correction.transform(s["xb"]), exact.correction.transform(s["xb"]),
                    atol=1e-6)


def test_max_bank_size_samples_the_bank(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       max_bank_size=50, bank_seed=3, pool_rate=0.1, r_g=0.3, r_q=0.3)
    sample_g, sample_q = index.correction.banks
    assert sample_g.shape == sample_q.shape == (50, 16)
    rows = {tuple(r) for r in s["bank_g"]}
    assert all(tuple(r) in rows for r in sample_g)
    index.add(s["xb"])
    expected = ref.invgc(s["xb"], [sample_g, sample_q], [0.3, 0.3], "localadj", 0.1)
    assert_allclose(index.index.reconstruct_n(0, 300), expected, atol=1e-5)


def test_auto_calibrates_approximate_banks_and_the_file_keeps_it(tmp_path, monkeypatch):
    from invgc_faiss import bank_search
    monkeypatch.setattr(bank_search, "AUTO_MAX_TIME_RATIO", np.inf)  # keep ANN at any speed
    rng = np.random.default_rng(2)
    d = 32
    from tests.helpers.data import cone
    bank_g, bank_q = cone(rng, 3000, d, 0.3), cone(rng, 2000, d, 0.3)
    xb = cone(rng, 400, d, 0.3)
    common = {"gallery_bank": bank_g, "query_bank": bank_q, "pool_rate": 0.05,
              "max_bank_size": None, "rho_g": 1.0, "rho_q": 1.0}
    exact = InvGCIndex(faiss.IndexFlatIP(d), **common)
    auto = InvGCIndex(faiss.IndexFlatIP(d), gallery_bank_index="IVF64,Flat",
                      query_bank_index="HNSW16", **common)
    settings = auto.correction.report_.bank_search_params
    assert set(settings) == {"gallery", "query"}
    assert settings["gallery"].startswith("nprobe=") and settings["query"].startswith("efSearch=")
    for report in auto.correction.report_.calibration.values():
        assert report["cosine"] >= 0.99995 and report["norm_error"] <= 0.002
    from invgc_faiss.bank_search import offset_agreement
    for b in range(2):
        cosine, ratio = offset_agreement(auto.correction.offsets(xb)[0][b],
                                         exact.correction.offsets(xb)[0][b])
        assert cosine.mean() > 0.998 and abs(ratio.mean() - 1) < 0.02
    explicit = InvGCIndex(faiss.IndexFlatIP(d), gallery_bank_index="IVF64,Flat",
                          query_bank_index="IVF64,Flat", bank_search_params="nprobe=2", **common)
    assert explicit.correction.report_.bank_search_params == "nprobe=2"
    assert explicit.correction.report_.calibration == {}
    auto.add(xb)
    invgc_faiss.write_index(auto, tmp_path / "auto.invgc")
    loaded = invgc_faiss.read_index(tmp_path / "auto.invgc")
    assert loaded.correction.report_.bank_search_params == settings
    assert loaded.correction.report_.calibration == {}  # applied from the file, not calibrated again
    loaded.add(xb[:50])
    auto.add(xb[:50])
    assert_array_equal(loaded.index.reconstruct_n(0, 450), auto.index.reconstruct_n(0, 450))


def test_auto_falls_back_to_exact_search_where_approximate_does_not_pay(tmp_path, monkeypatch,
                                                                        small_data):
    from invgc_faiss import bank_search
    monkeypatch.setattr(bank_search, "AUTO_MAX_TIME_RATIO", 0.0)  # approximate never pays
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       gallery_bank_index="IVF4,Flat", query_bank_index="HNSW8", rho_g=1.0,
                       rho_q=1.0, pool_rate=0.1, bank_search_params="auto")
    assert index.correction.report_.bank_search_params == {"gallery": "exact", "query": "exact"}
    assert all(type(faiss.downcast_index(off.bank_index)) is faiss.IndexFlatIP
               for off in index.correction.offsets_)
    exact = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       rho_g=1.0, rho_q=1.0, pool_rate=0.1)
    index.add(s["xb"])
    exact.add(s["xb"])
    assert_array_equal(index.index.reconstruct_n(0, 300), exact.index.reconstruct_n(0, 300))
    invgc_faiss.write_index(index, tmp_path / "e.invgc")
    loaded = invgc_faiss.read_index(tmp_path / "e.invgc")
    assert loaded.correction.report_.bank_search_params == {"gallery": "exact", "query": "exact"}


def test_only_the_banks_in_use_are_calibrated(small_data, monkeypatch):
    from invgc_faiss import bank_search
    monkeypatch.setattr(bank_search, "AUTO_MAX_TIME_RATIO", np.inf)
    s = small_data
    common = {"gallery_bank": s["bank_g"], "query_bank": s["bank_q"], "pool_rate": 0.1,
              "gallery_bank_index": "IVF4,Flat", "query_bank_index": "IVF4,Flat"}
    baked = InvGCIndex(faiss.IndexFlatIP(16), rho_q=1.0, **common)  # query bank only
    assert set(baked.correction.report_.calibration) == {"query"}
    rerank = invgc_faiss.InvGCRerankIndex(faiss.IndexFlatIP(16), **common)  # rates may change
    assert set(rerank.correction.report_.calibration) == {"gallery", "query"}


def test_auto_times_its_choice_on_a_batch_of_add_size(monkeypatch):
    from invgc_faiss import bank_search
    from tests.helpers.data import cone
    timed = []
    search_seconds = bank_search._search_seconds

    def spy(index, rows, k):
        timed.append(rows.shape)
        return search_seconds(index, rows, k)
    monkeypatch.setattr(bank_search, "_search_seconds", spy)
    bank = cone(np.random.default_rng(5), 3000, 32, 0.3)
    InvGC(rho_q=1.0, pool_rate=0.02, query_bank_index="IVF16,Flat").fit(query_bank=bank)
    assert timed == [(bank_search.AUTO_TIMING_ROWS, 32)] * 2  # approximate, then exact


@pytest.mark.parametrize("m,k", [(500, 57), (4096, 819), (300, 1), (64, 64), (2000, 1999)])
@pytest.mark.parametrize("on_grid", [True, False])
def test_exact_top_k_is_the_stable_descending_top_k(rng, m, k, on_grid):
    """The O(M) selection keeps the k entries a stable descending sort of the exact (float64)
    scores puts first (ties at rank k to the lowest bank rows), in ascending row order.

    on_grid: every coordinate a multiple of 0.5, so float32 scores are exact and tie often: the
    rows and values kept are the stable sort's, bit for bit. Otherwise not bit for bit: BLAS rounds
    a float32 dot product by the shape of the call (docs/reproducibility.md). Each kept value is
    then within ``d * 2**-24`` of the exact score (the worst-case rounding of a length-d float32
    dot product of unit vectors), and the rows kept are the exact top k but for bank rows whose
    exact score lies within twice that bound of the k-th."""
    from invgc_faiss.bank_search import exact_top_k
    from tests.helpers.data import random_unit
    x, bank = random_unit(rng, 40, 12), random_unit(rng, m, 12)
    if on_grid:
        x, bank = np.round(x * 2) / 2, np.round(bank * 2) / 2
    exact = x.astype(np.float64) @ bank.T.astype(np.float64)
    kth = -np.sort(-exact, axis=1)[:, k - 1:k]
    sims, nbrs = exact_top_k(x, bank, k)
    expected = np.sort(np.argsort(-exact, axis=1, kind="stable")[:, :k], axis=1)
    if on_grid:
        assert k == m or ((exact == kth).sum(axis=1) > 1).any()  # some row ties at rank k
        assert_array_equal(nbrs, expected)
        assert_array_equal(sims, np.take_along_axis(exact, expected, axis=1))
        return
    bound = x.shape[1] * 2.0 ** -24
    assert np.all(np.diff(nbrs, axis=1) > 0)
    assert np.abs(sims - np.take_along_axis(exact, nbrs, axis=1)).max() <= bound
    for i in range(x.shape[0]):
        swapped = np.setxor1d(nbrs[i], expected[i])
        assert np.all(np.abs(exact[i, swapped] - kth[i]) <= 2 * bound), i


def crafted_score_rows(rng, m):
    """Rows that stress a histogram select: all equal, two values, one outlier over a tight
    cluster (every other entry in one bucket), a coarse grid (many ties), plain random."""
    rows = [np.full(m, 0.25), np.where(np.arange(m) % 3 == 0, 0.5, -0.5),
            np.concatenate([[10.0], 0.3 + 1e-6 * rng.standard_normal(m - 1)]),
            np.round(rng.standard_normal(m) * 3) / 3, rng.standard_normal(m)]
    return np.ascontiguousarray(np.array(rows, np.float32))


@pytest.mark.parametrize("m,k", [(64, 1), (64, 63), (4096, 819), (5000, 2500)])
def test_selection_kernels_on_rows_that_crowd_one_bucket(rng, m, k):
    """keep_top_k and top_k_of_rows keep the stable descending sort's first k on rows whose
    values crowd one histogram bucket or tie at rank k."""
    from invgc_faiss import kernels
    scores = crafted_score_rows(rng, m)
    expected = np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :k], axis=1)
    sims, nbrs = np.empty((5, k), np.float32), np.empty((5, k), np.int64)
    kernels.top_k_of_rows(scores, k, sims, nbrs)
    assert_array_equal(nbrs, expected)
    kept, degrees = scores.copy(), np.empty(5, np.float32)
    kernels.keep_top_k(kept, k, degrees)
    mask = np.zeros_like(scores, bool)
    np.put_along_axis(mask, expected, True, axis=1)
    assert_array_equal(kept, np.where(mask, scores, 0))
    assert_allclose(degrees, np.where(mask, scores, 0).astype(np.float64).sum(axis=1), rtol=1e-6)


def test_exact_banks_select_what_faiss_selects_and_offsets_match_the_reference(rng):
    from invgc_faiss.offsets import LocalAdjOffset
    from tests.helpers.data import cone
    bank, x = cone(rng, 3000, 32, 0.3), cone(rng, 500, 32, 0.3)
    off = LocalAdjOffset(bank, 0.2)
    sims, nbrs = off.top_k(x)
    faiss_sims, faiss_nbrs = off.bank_index.search(x, off.k)  # faiss's k-heap, the 0.1 path
    same = np.array([set(a) == set(b) for a, b in zip(nbrs, faiss_nbrs)])
    assert same.mean() > 0.99  # the rest: float32 near-ties at rank k, decided differently
    assert_allclose(np.sort(sims, axis=1)[same], np.sort(faiss_sims, axis=1)[same], atol=1e-6)
    offsets, degrees = np.empty((500, 32), np.float32), np.empty(500, np.float32)
    off(x, offsets, degrees)
    assert_allclose(offsets, ref.localadj_offset(x, bank, 0.2), atol=1e-6)
