"""Fit-time checks of the scale knobs (offsets, ranking) and the add-time short-search warning."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose

from invgc_faiss import InvGC, InvGCIndex
from invgc_faiss.checks import (RANKING_QUERIES, RANKING_ROWS, WARN_MAX_SAMPLE_CHANGE,
                                WARN_MAX_TOP1_CHANGE, WARN_MIN_COSINE)
from tests.helpers import dense_reference as ref


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
                       bank_search_params="nprobe=1", pool_rate=0.5, max_bank_size=None,
                       rho_q=1.0)
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
                           pool_rate=1.0, rho_q=1.0)
        index.add(s["xb"])
    assert index.correction.report_.bank_search_params is None


def test_a_small_bank_sample_is_checked_against_another_sample(monkeypatch):
    """A sample so small that which rows were drawn decides the ranking warns and names
    max_bank_size, on either figure; a large one does not; whole banks are not sample-checked."""
    from tests.helpers.data import cone
    rng = np.random.default_rng(4)
    bank = cone(rng, 4000, 32, 0.3)
    with pytest.warns(RuntimeWarning, match=r"two samples of the banks change the top-1 .* raise "
                                            r"max_bank_size \(rows kept: query bank 40 of 4000\), "
                                            r"or measure .*check_knobs"):
        small = InvGC(rho_q=1.0, pool_rate=0.2, max_bank_size=40).fit(query_bank=bank)
    assert small.report_.sample_change > WARN_MAX_SAMPLE_CHANGE
    assert small.report_.kept == {"query": (40, 4000)}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        large = InvGC(rho_q=1.0, pool_rate=0.2, max_bank_size=2000).fit(query_bank=bank)
    assert large.report_.sample_change <= WARN_MAX_SAMPLE_CHANGE
    assert large.report_.sample_agreement["query"]["cosine"] > small.report_.sample_agreement[
        "query"]["cosine"]
    whole = InvGC(rho_q=1.0, max_bank_size=None).fit(query_bank=bank)
    assert whole.report_.sample_change is None and whole.report_.sample_agreement == {}
    from invgc_faiss import checks
    assert small.report_.sample_agreement["query"]["cosine"] < checks.WARN_MIN_SAMPLE_COSINE
    assert large.report_.sample_agreement["query"]["cosine"] >= checks.WARN_MIN_SAMPLE_COSINE
    monkeypatch.setattr(checks, "WARN_MAX_SAMPLE_CHANGE", 1.0)  # the cosine alone still warns
    with pytest.warns(RuntimeWarning, match=r"the query bank's offsets differ between two samples "
                                            r"\(mean cosine 0\.\d+ on 256 bank rows\)"):
        InvGC(rho_q=1.0, pool_rate=0.2, max_bank_size=40).fit(query_bank=bank)


def _ranking_check_draw(bank_g, bank_q, seed=0):
    """The rows and queries the ranking checks draw (see ``checks.ranking_rows``)."""
    order = np.random.default_rng(seed).permutation(bank_g.shape[0])
    n_rows = min(RANKING_ROWS, bank_g.shape[0] // 2)
    return (bank_g[np.sort(order[:n_rows])],
            bank_q[np.sort(order[n_rows:n_rows + RANKING_QUERIES])])


def test_the_sample_check_is_the_share_of_queries_whose_top1_two_samples_change():
    """Against the dense reference with the documented draws: the fitted sample, the other
    sample drawn apart from it (the 2,000 rows left, then 2,000 of the fitted ones), the rows."""
    from invgc_faiss import banks
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=6000, d=32, seed=0)
    fitted = InvGC(rho_q=1.0, pool_rate=0.01, max_bank_size=4000, bank_seed=3).fit(
        query_bank=s.bank_queries, gallery_bank=s.bank_gallery)
    rows, queries = _ranking_check_draw(s.bank_gallery, s.bank_queries, seed=3)
    kept = banks.sample_rows(6000, 4000, 3)
    other = banks.other_sample_rows(6000, kept, 4)
    assert np.intersect1d(other, kept).size == 2000 and np.unique(other).size == 4000
    one = ref.projection_invgc(rows, [s.bank_queries[kept]], [1.0], 0.01)
    two = ref.projection_invgc(rows, [s.bank_queries[other]], [1.0], 0.01)
    changed = np.mean(np.argmax(queries @ one.T, 1) != np.argmax(queries @ two.T, 1))
    assert 0.05 < changed  # the draw matters here
    assert fitted.report_.sample_change == pytest.approx(changed, abs=2 / len(queries))
    assert fitted.report_.top1_change is None  # exact search: no search check


def test_the_ranking_check_warns_where_the_offsets_look_close():
    """IVF nprobe 16 of 64: offsets at cosine 0.9998 to exact search pass the offset check, yet
    move the top-1 of 15 % of the reference queries on this crowded cone: the ranking check
    names the knob (and no sample is checked: the banks are whole)."""
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=8000, d=32, seed=0)
    with pytest.warns(RuntimeWarning, match=r"top-1 corrected bank row of \d+% of reference "
                                            r"queries differs from exact bank search: .* raise "
                                            r"nprobe \(bank_search_params\), or"):
        narrow = InvGC(rho_q=1.0, pool_rate=0.01, max_bank_size=None,
                       query_bank_index="IVF64,Flat", bank_search_params="nprobe=16").fit(
            query_bank=s.bank_queries, gallery_bank=s.bank_gallery)
    assert narrow.report_.agreement["query"]["cosine"] > WARN_MIN_COSINE
    assert narrow.report_.top1_change > WARN_MAX_TOP1_CHANGE
    assert narrow.report_.sample_change is None


def test_the_ranking_check_runs_only_where_offsets_leave_room_for_it(small_data):
    import warnings

    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=3000, d=32, seed=0)
    banks = {"query_bank": s.bank_queries, "gallery_bank": s.bank_gallery}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        every_list = InvGC(rho_q=1.0, pool_rate=0.01, query_bank_index="IVF8,Flat",
                           bank_search_params="nprobe=8", max_bank_size=None).fit(**banks)
    assert every_list.report_.agreement["query"]["cosine"] == pytest.approx(1.0)
    assert every_list.report_.top1_change is None  # as close as "auto" asks: nothing to rank
    narrow = dict(rho_q=1.0, pool_rate=0.01, query_bank_index="IVF64,Flat", max_bank_size=None)
    with pytest.warns(RuntimeWarning, match="top-1 corrected bank row"):
        ranked = InvGC(**narrow, bank_search_params="nprobe=4").fit(**banks)
    assert ranked.report_.top1_change > 0
    exact = InvGC(rho_q=1.0, max_bank_size=None).fit(**banks)
    assert exact.report_.top1_change is None  # nothing to check
    tiny = small_data  # 200 rows: too few for the ranking check, which is then skipped
    with pytest.warns(RuntimeWarning, match="offsets drift"):  # the offset check still runs
        small = InvGC(rho_q=1.0, query_bank_index="IVF4,Flat", bank_search_params="nprobe=1").fit(
            query_bank=tiny["bank_q"], gallery_bank=tiny["bank_g"])
    assert small.report_.top1_change is None


def test_the_ranking_check_leaves_the_short_search_warning_to_add():
    """The ranking check corrects bank rows through a narrow IVF search at fit time; the rows it
    finds short must neither warn from inside fit nor use up the warning that ``add`` gives."""
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=200, n_bank=3000, d=32, seed=0)
    with pytest.warns(RuntimeWarning) as fit_warnings:
        narrow = InvGC(rho_q=1.0, pool_rate=0.02, query_bank_index="IVF64,Flat",
                       bank_search_params="nprobe=1", max_bank_size=None).fit(query_bank=s.bank_queries,
                                                          gallery_bank=s.bank_gallery)
    assert narrow.report_.top1_change is not None  # the check ran, through the narrow search
    assert not [w for w in fit_warnings if "fewer than k" in str(w.message)]
    with pytest.warns(RuntimeWarning, match="fewer than k = 60 neighbours") as add_warnings:
        narrow.correct(s.gallery)
    assert add_warnings[0].filename == __file__


def test_rerank_fits_check_the_banks_their_rates_do_not_use_yet(small_data):
    """Rerank mode searches every bank (its rates change at search time): a gallery bank sample
    whose offsets depend on the draw warns although the default rates leave that bank out."""
    s = small_data
    with pytest.warns(RuntimeWarning, match=r"the gallery bank's offsets differ between two "
                                            r"samples .* raise max_bank_size \(rows kept: gallery "
                                            r"bank 50 of 200\)"):
        InvGC(rho_q=1.0, max_bank_size=50, fixed_rates=False).fit(query_bank=s["bank_q"][:40],
                                                                   gallery_bank=s["bank_g"])
