"""invgc_faiss.tune: held-out tuning on paired banks, the do-no-harm rule, the CLI on files."""
import json

import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import invgc_faiss
from tests.helpers.data import random_unit
from invgc_faiss import InvGCIndex
from invgc_faiss.renormalization import Renormalization
from invgc_faiss.lab.synthetic import make_cone_pairs

SMALL_GRID = {"projection": {"rho_g": (0.0, 1.0), "rho_q": (0.0, 1.0), "pool_rate": (0.1, 0.2)},
              "paper": {"r_g": (0.0, 1.0), "r_q": (0.0, 1.5), "pool_rate": (0.05,)}}


@pytest.fixture(scope="module")
def hubby():
    """Paired cone data on which InvGC helps a lot."""
    return make_cone_pairs(n_test=300, n_bank=1500, d=32, seed=4)


def test_do_no_harm_picks_the_identity_where_correction_cannot_help():
    # the gallery bank is the query bank's own rows, spread evenly: plain is already perfect
    bank = random_unit(np.random.default_rng(0), 800, 32)
    result = invgc_faiss.tune(bank, bank, grid=SMALL_GRID, holdout=200)
    assert result.rows[0]["R@1"] == 100.0
    assert result.gain_interval[0] <= 0
    assert "do-no-harm" in result.decision
    assert all(result.params[name] == 0.0 for name in ("rho_g", "rho_q", "r_g", "r_q")
               if name in result.params)
    index = result.index()
    x = random_unit(np.random.default_rng(1), 50, 32)
    index.add(x)
    assert_array_equal(index.index.reconstruct_n(0, 50), x)  # the plain index, bit for bit


def test_tune_finds_the_gain_on_hubby_data_and_builds_that_index(hubby):
    s = hubby
    result = invgc_faiss.tune(s.bank_queries, s.bank_gallery, grid=SMALL_GRID, holdout=300)
    assert result.gain_interval[0] > 0 and result.gain > 5
    assert "helps" in result.decision
    by_method = {row["method"]: row for row in result.rows}
    assert set(by_method) == {"plain", "projection", "paper", "query-side", "renormalization",
                              "renormalized"}
    assert by_method["projection"]["sum"] > by_method["plain"]["sum"]
    assert result.params["form"] == "renormalized"  # on cone pairs: InvGC on renormalized rows
    params = dict(result.params)
    built = result.index()
    renorm = Renormalization(params.pop("kind"), "both").fit(s.bank_queries, s.bank_gallery)
    by_hand = InvGCIndex(faiss.IndexFlatIP(32), query_bank=s.bank_queries,
                         gallery_bank=s.bank_gallery, alignment=renorm,
                         **{**params, "form": "projection"})
    built.add(s.gallery)
    by_hand.add(s.gallery)
    assert_array_equal(built.index.reconstruct_n(0, built.ntotal),
                       by_hand.index.reconstruct_n(0, by_hand.ntotal))
    text = str(result)
    assert "gain over plain" in text and "chosen:" in text
    assert json.loads(json.dumps(result.to_dict()))["params"] == result.params


@pytest.mark.parametrize("d", [32, 96])
def test_held_out_score_of_the_chosen_form_matches_building_it(hubby, d):
    """The no-rebuild scoring inside tune equals searching a built index on the same split; at
    d = 96 both take the default reduced path (64 of 96 directions)."""
    s = hubby if d == 32 else make_cone_pairs(n_test=10, n_bank=1500, d=d, seed=4)
    grid = {"projection": {"rho_g": (0.0,), "rho_q": (1.0,), "pool_rate": (0.2,)}}
    result = invgc_faiss.tune(s.bank_queries, s.bank_gallery, forms=("projection",), grid=grid,
                              holdout=300, seed=3)
    order = np.random.default_rng(3).permutation(s.bank_queries.shape[0])
    held, rest = np.sort(order[:300]), np.sort(order[300:])
    index = InvGCIndex(faiss.IndexFlatIP(d), query_bank=s.bank_queries[rest],
                       gallery_bank=s.bank_gallery[rest], rho_g=0.0, rho_q=1.0, pool_rate=0.2)
    assert (index.correction.offsets_[1].basis is not None) == (d > 64)
    index.add(s.bank_gallery[held])
    _, I = index.search(s.bank_queries[held], 1)
    row = next(r for r in result.rows if r["method"] == "projection")
    assert row["R@1"] == pytest.approx(100 * np.mean(I[:, 0] == np.arange(300)))


def test_the_result_builds_its_index_around_any_inner_index(hubby):
    s = hubby
    result = invgc_faiss.tune(s.bank_queries, s.bank_gallery, grid=SMALL_GRID, holdout=200,
                              forms=("projection",))
    index = result.index(faiss.IndexFlatIP(32))
    assert index.correction.rates_.form == "projection"
    from_factory = result.index("HNSW16")
    assert isinstance(from_factory.index, faiss.IndexHNSWFlat)
    assert from_factory.correction.get_params()["pool_rate"] == result.params["pool_rate"]
    assert result.heldout.paired and result.heldout.queries.shape == (200, 32)


def test_tuning_runs_no_fit_time_check(hubby, monkeypatch):
    """The grid is scored from offsets alone: no correction is fitted, so no ranking check runs
    (it would cost seconds per pool and warn about knobs of no index)."""
    from invgc_faiss import checks

    def refuse(*args, **kwargs):
        raise AssertionError("a fit-time check ran while tuning")

    monkeypatch.setattr(checks, "run", refuse)
    monkeypatch.setattr(checks, "top1_change", refuse)
    s = hubby
    result = invgc_faiss.tune(s.bank_queries, s.bank_gallery, grid=SMALL_GRID, holdout=200,
                              max_bank_size=600)
    assert result.rows


@pytest.mark.parametrize("kwargs,match", [
    ({"gallery_bank": "short", "paired": True}, "need the same number of rows"),
    ({"forms": ("other",)}, "forms must be"),
    ({"holdout": 10}, "at least 50 held-out"),
])
def test_tune_refuses_what_it_cannot_do(hubby, kwargs, match):
    s = hubby
    args = {"query_bank": s.bank_queries, "gallery_bank": s.bank_gallery}
    if kwargs.get("gallery_bank") == "short":
        kwargs = {**kwargs, "gallery_bank": s.bank_gallery[:-5]}
    with pytest.raises(ValueError, match=match):
        invgc_faiss.tune(**{**args, **kwargs})


def test_unpaired_banks_are_tuned_label_free_by_k_skewness(hubby):
    s = hubby
    result = invgc_faiss.tune(s.bank_queries[:1200], s.bank_gallery, grid=SMALL_GRID,
                              holdout=300)  # different row counts: unpaired
    assert result.gain is None and result.gain_interval is None
    assert "label-free" in result.decision and "k-skewness" in str(result)
    by_method = {row["method"]: row for row in result.rows}
    chosen = min(by_method["projection"]["k_skewness"], by_method["paper"]["k_skewness"])
    assert chosen < by_method["plain"]["k_skewness"]
    index = result.index()
    index.add(s.gallery)
    plain = faiss.IndexFlatIP(32)
    plain.add(s.gallery)
    hits = lambda idx: np.mean(idx.search(s.queries, 1)[1][:, 0] == np.arange(300))  # noqa: E731
    assert hits(index) > hits(plain)  # on this hubby data the least-hub setting also recalls more


def test_query_side_scores_match_the_query_correction(hubby):
    """tune's no-rebuild query-side scores equal QueryCorrection's queries times the gallery."""
    from invgc_faiss.heldout import query_side_grid_scores
    s = hubby
    queries, gallery, bank = s.queries[:100], s.gallery[:100], s.bank_queries
    for params, scores in query_side_grid_scores(queries, gallery, bank, {"rho": (0.5, 1.0)}):
        corrected = invgc_faiss.QueryCorrection(params["rho"]).fit(bank).transform(queries)
        np.testing.assert_allclose(scores, corrected.astype(np.float64) @ gallery.T, atol=1e-5)


def test_tune_weighs_the_query_side_form_and_builds_it_around_a_filled_index(hubby):
    s = hubby
    result = invgc_faiss.tune(s.bank_queries, s.bank_gallery, forms=("query-side",),
                              grid={"query-side": {"rho": (0.9, 1.0)}}, holdout=300)
    assert result.params["form"] == "query-side" and result.params["rho"] in (0.9, 1.0)
    assert "helps" in result.decision and "query-side" in result.decision
    assert "max_bank_size" not in result.params
    filled = faiss.IndexFlatIP(32)
    filled.add(s.gallery)
    index = result.index(filled)  # wraps the filled index: nothing is rebuilt
    assert isinstance(index, faiss.IndexPreTransform) and index.ntotal == 300
    by_hand = invgc_faiss.QueryCorrection(result.params["rho"]).fit(s.bank_queries)
    _, I = index.search(s.queries, 5)
    _, expected = filled.search(by_hand.transform(s.queries), 5)
    assert_array_equal(I, expected)
    with pytest.raises(ValueError, match="takes no index keywords"):
        result.index(keep_originals=True)


def test_the_query_side_kind_is_not_a_gallery_form():
    from invgc_faiss.rates import Rates
    value = Rates.query_side(0.8)
    assert value.params() == {"form": "query-side", "rho": 0.8}
    assert Rates.from_dict(value.to_dict()) == value and value.active(["query"]) == []
    assert Rates.identity("query-side").params() == {"form": "query-side", "rho": 0.0}
    with pytest.raises(ValueError, match="moves the queries"):
        invgc_faiss.InvGC(form="query-side")
