"""Fit-time checks of the scale knobs (offsets, ranking) and the add-time short-search warning."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose

from invgc_faiss import InvGC, InvGCIndex
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
    assert index.correction.report_.bank_search_params is None


def test_a_small_bank_sample_is_checked_against_the_whole_bank():
    from tests.helpers.data import cone
    rng = np.random.default_rng(4)
    bank = cone(rng, 4000, 32, 0.3)
    with pytest.warns(RuntimeWarning, match=r"raise max_bank_size \(rows kept: query bank 40 of "
                                            r"4000\), or measure .*check_knobs"):
        small = InvGC(rho_q=1.0, pool_rate=0.2, max_bank_size=40).fit(query_bank=bank)
    assert small.report_.agreement["query"]["cosine"] < 0.995
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        large = InvGC(rho_q=1.0, pool_rate=0.2, max_bank_size=2000).fit(query_bank=bank)
    assert large.report_.agreement["query"]["cosine"] >= 0.995
    assert InvGC(rho_q=1.0, max_bank_size=None).fit(query_bank=bank).report_.agreement == {}


def _ranking_check_draw(bank_g, bank_q, seed=0):
    """The rows and queries InvGC's ranking check draws (see ``InvGC._top1_change``)."""
    from invgc_faiss.checks import RANKING_QUERIES, RANKING_ROWS
    order = np.random.default_rng(seed).permutation(bank_g.shape[0])
    n_rows = min(RANKING_ROWS, bank_g.shape[0] // 2)
    return (bank_g[np.sort(order[:n_rows])],
            bank_q[np.sort(order[n_rows:n_rows + RANKING_QUERIES])])


def test_the_ranking_check_is_the_share_of_queries_whose_top1_the_knobs_change():
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=6000, d=32, seed=0)
    fitted = InvGC(rho_q=1.0, pool_rate=0.01, max_bank_size=4000, bank_seed=3).fit(
        query_bank=s.bank_queries, gallery_bank=s.bank_gallery)
    rows, queries = _ranking_check_draw(s.bank_gallery, s.bank_queries, seed=3)
    kept = np.sort(np.random.default_rng(3).choice(6000, 4000, replace=False))
    as_fitted = ref.projection_invgc(rows, [s.bank_gallery[kept], s.bank_queries[kept]],
                                     [0.0, 1.0], 0.01)
    exact = ref.projection_invgc(rows, [s.bank_gallery, s.bank_queries], [0.0, 1.0], 0.01)
    changed = np.mean(np.argmax(queries @ as_fitted.T, 1) != np.argmax(queries @ exact.T, 1))
    assert 0.2 < changed  # a knob that matters here
    assert fitted.report_.top1_change == pytest.approx(changed, abs=2 / len(queries))


def test_the_ranking_check_warns_where_the_offsets_look_close():
    """Offsets at cosine 0.999 to exact search pass the offset check, yet move the top-1 of a
    fifth of the reference queries on this crowded cone: the ranking check names the knob."""
    from invgc_faiss.checks import WARN_MAX_TOP1_CHANGE, WARN_MIN_COSINE
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=8000, d=32, seed=0)
    with pytest.warns(RuntimeWarning, match=r"top-1 corrected bank row of \d+% of reference "
                                            r"queries .* raise max_bank_size \(rows kept: "
                                            r"query bank 7000 of 8000\)"):
        sampled = InvGC(rho_q=1.0, pool_rate=0.01, max_bank_size=7000).fit(
            query_bank=s.bank_queries, gallery_bank=s.bank_gallery)
    assert sampled.report_.agreement["query"]["cosine"] > WARN_MIN_COSINE
    assert sampled.report_.top1_change > WARN_MAX_TOP1_CHANGE


def test_the_ranking_check_runs_only_where_offsets_leave_room_for_it(small_data):
    import warnings

    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=10, n_bank=3000, d=32, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        every_list = InvGC(rho_q=1.0, pool_rate=0.01, query_bank_index="IVF8,Flat",
                           bank_search_params="nprobe=8").fit(query_bank=s.bank_queries,
                                                              gallery_bank=s.bank_gallery)
    assert every_list.report_.agreement["query"]["cosine"] == pytest.approx(1.0)
    assert every_list.report_.top1_change is None  # as close as "auto" asks: nothing to rank
    sampled = dict(rho_q=1.0, pool_rate=0.01, max_bank_size=2000)
    with pytest.warns(RuntimeWarning, match="top-1 corrected bank row"):
        ranked = InvGC(**sampled).fit(query_bank=s.bank_queries, gallery_bank=s.bank_gallery)
    assert ranked.report_.top1_change > 0
    exact = InvGC(rho_q=1.0, max_bank_size=None).fit(query_bank=s.bank_queries,
                                                     gallery_bank=s.bank_gallery)
    assert exact.report_.top1_change is None  # nothing to check
    tiny = small_data  # 200 rows: too few for the ranking check, which is then skipped
    with pytest.warns(RuntimeWarning, match="offsets drift"):
        small = InvGC(rho_q=1.0, max_bank_size=100).fit(query_bank=tiny["bank_q"],
                                                        gallery_bank=tiny["bank_g"])
    assert small.report_.top1_change is None


def test_the_ranking_check_leaves_the_short_search_warning_to_add():
    """The ranking check corrects bank rows through a narrow IVF search at fit time; the rows it
    finds short must neither warn from inside fit nor use up the warning that ``add`` gives."""
    from invgc_faiss.lab.synthetic import make_cone_pairs
    s = make_cone_pairs(n_test=200, n_bank=3000, d=32, seed=0)
    with pytest.warns(RuntimeWarning) as fit_warnings:
        narrow = InvGC(rho_q=1.0, pool_rate=0.02, query_bank_index="IVF64,Flat",
                       bank_search_params="nprobe=1").fit(query_bank=s.bank_queries,
                                                          gallery_bank=s.bank_gallery)
    assert narrow.report_.top1_change is not None  # the check ran, through the narrow search
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
        InvGC(rho_q=1.0, max_bank_size=50, fixed_rates=False).fit(query_bank=s["bank_q"][:40],
                                                                   gallery_bank=s["bank_g"])
