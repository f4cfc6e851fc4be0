"""Scale knobs: approximate bank search parameters, bank sampling, streaming adds."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import dense_reference as ref
import invgc_faiss
from invgc_faiss import InvGC, InvGCIndex
from invgc_faiss.streaming import add_in_batches, transform_in_batches


def test_bank_search_params_are_applied_and_persisted(tmp_path, small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       gallery_bank_index="IVF4,Flat", query_bank_index="HNSW8",
                       bank_search_params="nprobe=3,efSearch=77")
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
    exact = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"])
    ann = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                     gallery_bank_index="IVF4,Flat", query_bank_index="IVF4,Flat",
                     bank_search_params="nprobe=4")
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


def test_add_in_batches_from_memmap_equals_one_add(tmp_path, small_data):
    s = small_data
    path = tmp_path / "gallery.npy"
    np.save(path, s["xb"])
    gallery = np.load(path, mmap_mode="r")
    streamed = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"])
    seen = []
    assert add_in_batches(streamed, gallery, batch_size=64,
                          progress=lambda n, total: seen.append((n, total))) == 300
    assert seen[0] == (64, 300) and sum(n for n, _ in seen) == 300
    whole = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"])
    whole.add(s["xb"])
    assert_array_equal(streamed.index.reconstruct_n(0, 300), whole.index.reconstruct_n(0, 300))


def test_add_in_batches_from_generator_with_ids_and_a_bad_batch(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"])
    bad = s["xb"][200:].copy()
    bad[5, 0] = np.nan
    batches = iter([s["xb"][:100], s["xb"][100:200], bad])
    with pytest.raises(ValueError, match="batch starting at row 200: x contains NaN"):
        add_in_batches(index, batches, ids=np.arange(300) + 7)
    assert_array_equal(index.stored_ids(), np.arange(200) + 7)  # earlier batches stay


def test_transform_in_batches_writes_the_corrected_rows_to_a_npy_memmap(tmp_path, small_data):
    s = small_data
    np.save(tmp_path / "gallery.npy", s["xb"])
    index = InvGCIndex(faiss.IndexFlatIP(16), query_bank=s["bank_q"])
    index.add(s["xb"])
    out = np.lib.format.open_memmap(tmp_path / "corrected.npy", "w+", np.float32, (300, 16))
    assert transform_in_batches(index.correction, np.load(tmp_path / "gallery.npy", mmap_mode="r"),
                                out, batch_size=70) == 300
    out.flush()
    assert_array_equal(np.load(tmp_path / "corrected.npy"), index.index.reconstruct_n(0, 300))
    with pytest.raises(ValueError, match="the source had 300 rows, out has 301"):
        transform_in_batches(index.correction, s["xb"], np.empty((301, 16), np.float32))
    with pytest.raises(ValueError, match="batch starting at row 280: out has 299 rows, the source"):
        transform_in_batches(index.correction, s["xb"], np.empty((299, 16), np.float32),
                             batch_size=70)
    bad = s["xb"].copy()
    bad[150, 3] = np.inf
    with pytest.raises(ValueError, match="batch starting at row 140"):
        transform_in_batches(index.correction, bad, np.empty((300, 16), np.float32), batch_size=70)


def test_read_npy_batches(tmp_path, small_data):
    from invgc_faiss.streaming import read_npy_batches

    path = tmp_path / "g.npy"
    np.save(path, small_data["xb"])
    batches = list(read_npy_batches(str(path), 128))
    assert [b.shape for b in batches] == [(128, 16), (128, 16), (44, 16)]
    assert_array_equal(np.concatenate(batches), small_data["xb"])
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated at row"):
        list(read_npy_batches(str(path), 128))


class DroppingBankIndex:
    """A bank search that loses some of the k neighbours (-1), as a narrow IVF probe does."""

    def __init__(self, bank, keep):
        self.exact = faiss.IndexFlatIP(bank.shape[1])
        self.exact.add(bank)
        self.keep = keep

    def search(self, x, k):
        sims, nbrs = self.exact.search(x, k)
        nbrs = np.where(self.keep[:x.shape[0], :k], nbrs, -1)
        return np.where(nbrs >= 0, sims, -np.inf).astype(np.float32), nbrs


@pytest.mark.parametrize("form", ["paper", "projection"])
def test_offsets_are_means_over_the_neighbours_found(small_data, form):
    s = small_data
    rates = {"r_g": 0.8, "r_q": 1.4} if form == "paper" else {"rho_g": 0.9, "rho_q": 1.1}
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       pool_rate=0.1, max_bank_size=None, **rates)
    correction = index.correction
    keeps = []
    for off in correction.offsets_:
        keep = np.random.default_rng(off.k).random((300, off.k)) < 0.6
        keep[:5] = False  # rows with no neighbour found at all: offset 0, row unchanged
        keeps.append(keep)
        off.bank_index = DroppingBankIndex(off.bank, keep)
    with pytest.warns(RuntimeWarning, match="raise nprobe"):
        offsets, _ = correction.offsets(s["xb"])
    for b, bank in enumerate((s["bank_g"], s["bank_q"])):
        assert_allclose(offsets[b], ref.localadj_offset(s["xb"], bank, 0.1, keeps[b]), atol=1e-6)
    stored = correction.transform(s["xb"])
    if form == "projection":
        expected = ref.projection_invgc(s["xb"], [s["bank_g"], s["bank_q"]], [0.9, 1.1], 0.1, keeps)
    else:
        parts = [ref.normalize(s["xb"] - r * ref.localadj_offset(s["xb"], bank, 0.1, keep))
                 for bank, r, keep in zip((s["bank_g"], s["bank_q"]), (0.8, 1.4), keeps)]
        expected = ref.normalize(parts[0] + parts[1])
    assert_allclose(stored, expected, atol=1e-5)
    assert_allclose(stored[:5], s["xb"][:5], atol=1e-6)


def test_a_narrow_ivf_bank_search_warns_once_and_names_the_knob(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), query_bank=s["bank_q"], query_bank_index="IVF8,Flat",
                       bank_search_params="nprobe=1", pool_rate=0.5, max_bank_size=None)
    with pytest.warns(RuntimeWarning, match=r"fewer than k = 75 neighbours for .*% of a batch"):
        index.add(s["xb"][:100])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index.add(s["xb"][100:])  # once per index, not per batch


def test_exact_bank_search_does_not_warn(small_data):
    import warnings
    s = small_data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                           pool_rate=1.0)
        index.add(s["xb"])
    assert index.correction.bank_search_params_ is None


def test_auto_calibrates_approximate_banks_and_the_file_keeps_it(tmp_path, monkeypatch):
    from invgc_faiss import bank_search
    monkeypatch.setattr(bank_search, "AUTO_MAX_TIME_RATIO", np.inf)  # keep ANN at any speed
    rng = np.random.default_rng(2)
    d = 32
    from conftest import cone
    bank_g, bank_q = cone(rng, 3000, d, 0.3), cone(rng, 2000, d, 0.3)
    xb = cone(rng, 400, d, 0.3)
    common = {"gallery_bank": bank_g, "query_bank": bank_q, "pool_rate": 0.05,
              "max_bank_size": None, "rho_g": 1.0, "rho_q": 1.0}
    exact = InvGCIndex(faiss.IndexFlatIP(d), **common)
    auto = InvGCIndex(faiss.IndexFlatIP(d), gallery_bank_index="IVF64,Flat",
                      query_bank_index="HNSW16", **common)
    settings = auto.correction.bank_search_params_
    assert set(settings) == {"gallery", "query"}
    assert settings["gallery"].startswith("nprobe=") and settings["query"].startswith("efSearch=")
    for report in auto.correction.calibration_.values():
        assert report["cosine"] >= 0.99995 and report["norm_error"] <= 0.002
    from invgc_faiss.bank_search import offset_agreement
    for b in range(2):
        cosine, ratio = offset_agreement(auto.correction.offsets(xb)[0][b],
                                         exact.correction.offsets(xb)[0][b])
        assert cosine.mean() > 0.998 and abs(ratio.mean() - 1) < 0.02
    explicit = InvGCIndex(faiss.IndexFlatIP(d), gallery_bank_index="IVF64,Flat",
                          query_bank_index="IVF64,Flat", bank_search_params="nprobe=2", **common)
    assert explicit.correction.bank_search_params_ == "nprobe=2"
    assert explicit.correction.calibration_ == {}
    auto.add(xb)
    invgc_faiss.write_index(auto, tmp_path / "auto.invgc")
    loaded = invgc_faiss.read_index(tmp_path / "auto.invgc")
    assert loaded.correction.bank_search_params_ == settings
    assert loaded.correction.calibration_ == {}  # applied from the file, not calibrated again
    loaded.add(xb[:50])
    auto.add(xb[:50])
    assert_array_equal(loaded.index.reconstruct_n(0, 450), auto.index.reconstruct_n(0, 450))


def test_a_small_bank_sample_is_checked_against_the_whole_bank():
    from conftest import cone
    rng = np.random.default_rng(4)
    bank = cone(rng, 4000, 32, 0.3)
    with pytest.warns(RuntimeWarning, match=r"raise max_bank_size \(rows kept: query bank 40 of "
                                            r"4000\), or measure .*check_knobs"):
        small = InvGC(rho_q=1.0, pool_rate=0.2, max_bank_size=40).fit(query_bank=bank)
    assert small.agreement_["query"]["cosine"] < 0.995
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        large = InvGC(rho_q=1.0, pool_rate=0.2, max_bank_size=2000).fit(query_bank=bank)
    assert large.agreement_["query"]["cosine"] >= 0.995
    assert InvGC(rho_q=1.0, max_bank_size=None).fit(query_bank=bank).agreement_ == {}


def test_auto_falls_back_to_exact_search_where_approximate_does_not_pay(tmp_path, monkeypatch,
                                                                        small_data):
    from invgc_faiss import bank_search
    monkeypatch.setattr(bank_search, "AUTO_MAX_TIME_RATIO", 0.0)  # approximate never pays
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       gallery_bank_index="IVF4,Flat", query_bank_index="HNSW8", rho_g=1.0,
                       rho_q=1.0, pool_rate=0.1, bank_search_params="auto")
    assert index.correction.bank_search_params_ == {"gallery": "exact", "query": "exact"}
    assert all(type(faiss.downcast_index(off.bank_index)) is faiss.IndexFlatIP
               for off in index.correction.offsets_)
    exact = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       rho_g=1.0, rho_q=1.0, pool_rate=0.1)
    index.add(s["xb"])
    exact.add(s["xb"])
    assert_array_equal(index.index.reconstruct_n(0, 300), exact.index.reconstruct_n(0, 300))
    invgc_faiss.write_index(index, tmp_path / "e.invgc")
    loaded = invgc_faiss.read_index(tmp_path / "e.invgc")
    assert loaded.correction.bank_search_params_ == {"gallery": "exact", "query": "exact"}


def test_only_the_banks_in_use_are_calibrated(small_data, monkeypatch):
    from invgc_faiss import bank_search
    monkeypatch.setattr(bank_search, "AUTO_MAX_TIME_RATIO", np.inf)
    s = small_data
    common = {"gallery_bank": s["bank_g"], "query_bank": s["bank_q"], "pool_rate": 0.1,
              "gallery_bank_index": "IVF4,Flat", "query_bank_index": "IVF4,Flat"}
    baked = InvGCIndex(faiss.IndexFlatIP(16), **common)  # defaults: query bank only
    assert set(baked.correction.calibration_) == {"query"}
    rerank = invgc_faiss.InvGCRerankIndex(faiss.IndexFlatIP(16), **common)  # rates may change
    assert set(rerank.correction.calibration_) == {"gallery", "query"}


def test_auto_times_its_choice_on_a_batch_of_add_size(monkeypatch):
    from conftest import cone
    from invgc_faiss import bank_search
    timed = []
    search_seconds = bank_search._search_seconds

    def spy(index, rows, k):
        timed.append(rows.shape)
        return search_seconds(index, rows, k)
    monkeypatch.setattr(bank_search, "_search_seconds", spy)
    bank = cone(np.random.default_rng(5), 3000, 32, 0.3)
    InvGC(rho_q=1.0, pool_rate=0.02, query_bank_index="IVF16,Flat").fit(query_bank=bank)
    assert timed == [(bank_search.AUTO_TIMING_ROWS, 32)] * 2  # approximate, then exact


def _ranking_check_draw(bank_g, bank_q, seed=0):
    """The rows and queries InvGC's ranking check draws (see ``InvGC._top1_change``)."""
    from invgc_faiss.correction import RANKING_QUERIES, RANKING_ROWS
    order = np.random.default_rng(seed).permutation(bank_g.shape[0])
    n_rows = min(RANKING_ROWS, bank_g.shape[0] // 2)
    return (bank_g[np.sort(order[:n_rows])],
            bank_q[np.sort(order[n_rows:n_rows + RANKING_QUERIES])])


def test_the_ranking_check_is_the_share_of_queries_whose_top1_the_knobs_change():
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=6000, d=32, seed=0)
    fitted = InvGC(rho_q=1.0, pool_rate=0.01, max_bank_size=4000, bank_seed=3).fit(
        s.bank_gallery, s.bank_queries)
    rows, queries = _ranking_check_draw(s.bank_gallery, s.bank_queries, seed=3)
    kept = np.sort(np.random.default_rng(3).choice(6000, 4000, replace=False))
    as_fitted = ref.projection_invgc(rows, [s.bank_gallery[kept], s.bank_queries[kept]],
                                     [0.0, 1.0], 0.01)
    exact = ref.projection_invgc(rows, [s.bank_gallery, s.bank_queries], [0.0, 1.0], 0.01)
    changed = np.mean(np.argmax(queries @ as_fitted.T, 1) != np.argmax(queries @ exact.T, 1))
    assert 0.2 < changed  # a knob that matters here
    assert fitted.top1_change_ == pytest.approx(changed, abs=2 / len(queries))


def test_the_ranking_check_warns_where_the_offsets_look_close():
    """Offsets at cosine 0.999 to exact search pass the offset check, yet move the top-1 of a
    fifth of the reference queries on this crowded cone: the ranking check names the knob."""
    from invgc_faiss.correction import WARN_MAX_TOP1_CHANGE, WARN_MIN_COSINE
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=8000, d=32, seed=0)
    with pytest.warns(RuntimeWarning, match=r"top-1 corrected bank row of \d+% of reference "
                                            r"queries .* raise max_bank_size \(rows kept: "
                                            r"query bank 7000 of 8000\)"):
        sampled = InvGC(rho_q=1.0, pool_rate=0.01, max_bank_size=7000).fit(
            s.bank_gallery, s.bank_queries)
    assert sampled.agreement_["query"]["cosine"] > WARN_MIN_COSINE
    assert sampled.top1_change_ > WARN_MAX_TOP1_CHANGE


def test_the_ranking_check_runs_only_where_offsets_leave_room_for_it(small_data):
    import warnings
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=3000, d=32, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        every_list = InvGC(rho_q=1.0, pool_rate=0.01, query_bank_index="IVF8,Flat",
                           bank_search_params="nprobe=8").fit(s.bank_gallery, s.bank_queries)
    assert every_list.agreement_["query"]["cosine"] == pytest.approx(1.0)
    assert every_list.top1_change_ is None  # offsets as close as "auto" asks: nothing to rank
    sampled = dict(rho_q=1.0, pool_rate=0.01, max_bank_size=2000)
    with pytest.warns(RuntimeWarning, match="top-1 corrected bank row"):
        ranked = InvGC(**sampled).fit(s.bank_gallery, s.bank_queries)
    assert ranked.top1_change_ > 0
    with pytest.warns(RuntimeWarning, match="offsets drift"):  # the offset check still runs
        unranked = InvGC(**sampled).fit(s.bank_gallery, s.bank_queries, ranking_check=False)
    assert unranked.top1_change_ is None
    exact = InvGC(rho_q=1.0, max_bank_size=None).fit(s.bank_gallery, s.bank_queries)
    assert exact.top1_change_ is None  # nothing to check
    tiny = small_data  # 200 rows: too few for the ranking check, which is then skipped
    with pytest.warns(RuntimeWarning, match="offsets drift"):
        small = InvGC(rho_q=1.0, max_bank_size=100).fit(tiny["bank_g"], tiny["bank_q"])
    assert small.top1_change_ is None


def test_the_ranking_check_leaves_the_short_search_warning_to_add():
    """The ranking check corrects bank rows through a narrow IVF search at fit time; the rows it
    finds short must neither warn from inside fit nor use up the warning that ``add`` gives."""
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=200, n_bank=3000, d=32, seed=0)
    with pytest.warns(RuntimeWarning) as fit_warnings:
        narrow = InvGC(rho_q=1.0, pool_rate=0.02, query_bank_index="IVF64,Flat",
                       bank_search_params="nprobe=1").fit(s.bank_gallery, s.bank_queries)
    assert narrow.top1_change_ is not None  # the check ran, through the narrow search
    assert not [w for w in fit_warnings if "fewer than k" in str(w.message)]
    with pytest.warns(RuntimeWarning, match="fewer than k = 60 neighbours") as add_warnings:
        narrow.correct(s.gallery)
    assert add_warnings[0].filename == __file__


def test_rerank_fits_check_the_banks_their_rates_do_not_use_yet(small_data):
    """Rerank mode searches every bank (its rates change at search time): a drifting sample of
    the gallery bank warns although the default rates leave that bank out."""
    s = small_data
    with pytest.warns(RuntimeWarning, match=r"the gallery bank's offsets drift .* raise "
                                            r"max_bank_size \(rows kept: gallery bank 50 of 200\)"):
        InvGC(rho_q=1.0, max_bank_size=50).fit(s["bank_g"], s["bank_q"][:40], all_banks=True)
