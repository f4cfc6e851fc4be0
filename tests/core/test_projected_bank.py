"""Projected bank index ("Proj{m}"): top k from an uncentred projection, reranked exactly."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from tests.helpers import dense_reference as ref
import invgc_faiss
from invgc_faiss import InvGC, InvGCIndex
from invgc_faiss.bank_search import accuracy_knob, offset_agreement
from invgc_faiss.knob_check import ladder
from invgc_faiss.lab.synthetic import cone_vectors
from invgc_faiss.projected_bank import projected_bank_index, uncentred_projection


def _recall(found, exact):
    return np.mean([len(np.intersect1d(f, e)) / len(e) for f, e in zip(found, exact)])


def test_full_dimension_projection_is_exact_invgc(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       gallery_bank_index="Proj16", query_bank_index="Proj16",
                       bank_search_params="k_factor_rf=1", r_g=0.4, r_q=0.3, pool_rate=0.1)
    index.add(s["xb"])
    expected = ref.invgc(s["xb"], [s["bank_g"], s["bank_q"]], [0.4, 0.3], "localadj", 0.1)
    assert_allclose(index.index.reconstruct_n(0, 300), expected, atol=1e-5)


def test_projection_keeps_the_inner_product_ranking_that_faiss_pca_loses():
    rows = cone_vectors(4200, 64, rng=np.random.default_rng(0), spread=0.5, decay=0.8)
    bank, x = rows[:4000], rows[4000:]  # a cone whose spread decays: little energy past 16 dims
    exact = faiss.IndexFlatIP(64)
    exact.add(bank)
    truth = exact.search(x, 40)[1]
    proj = projected_bank_index(bank, 16)
    pca = faiss.index_factory(64, "PCA16,Flat,RFlat", faiss.METRIC_INNER_PRODUCT)
    pca.train(bank)
    pca.add(bank)
    assert _recall(proj.search(x, 40)[1], truth) > 0.98
    assert _recall(pca.search(x, 40)[1], truth) < 0.5  # centring ranks by x.b - mu.b
    proj.k_factor = 4  # more candidates: the exact rerank recovers the whole top k
    sims, nbrs = proj.search(x, 40)
    assert _recall(nbrs, truth) == 1.0
    assert_allclose(sims, exact.search(x, 40)[0], atol=1e-5)


def test_uncentred_projection_keeps_the_top_energy():
    bank = cone_vectors(1000, 32, rng=np.random.default_rng(1), spread=0.5, decay=0.8)
    top, kept = uncentred_projection(bank, 4)
    assert top.shape == (4, 32) and top.dtype == np.float32
    assert_allclose(top @ top.T, np.eye(4), atol=1e-5)
    energy = np.sum((bank.astype(np.float64) @ top.T.astype(np.float64)) ** 2) / np.sum(bank ** 2)
    assert kept == pytest.approx(energy, rel=1e-4)
    assert kept > 0.85  # a cone: the axis and a few directions carry most of the energy
    assert uncentred_projection(bank, 32)[1] == pytest.approx(1.0)


def test_auto_calibrates_the_candidate_factor_and_the_file_keeps_the_index(tmp_path, monkeypatch):
    from invgc_faiss import bank_search
    monkeypatch.setattr(bank_search, "AUTO_MAX_TIME_RATIO", np.inf)  # keep it at any speed
    d = 32
    rows = cone_vectors(3300, d, rng=np.random.default_rng(2), spread=0.5, decay=0.8)
    bank_q, xb = rows[:3000], rows[3000:]
    common = {"query_bank": bank_q, "pool_rate": 0.02, "max_bank_size": None, "rho_q": 1.0}
    exact = InvGCIndex(faiss.IndexFlatIP(d), **common)
    auto = InvGCIndex(faiss.IndexFlatIP(d), query_bank_index="Proj8", **common)
    bank_index = auto.correction.offsets_[0].bank_index
    assert accuracy_knob(bank_index) == "k_factor_rf"
    report = auto.correction.report_.calibration["query"]
    assert report["cosine"] >= 0.99995 and report["norm_error"] <= 0.002
    assert auto.correction.report_.bank_search_params == {"query": f"k_factor_rf={report['k_factor_rf']}"}
    assert faiss.downcast_index(bank_index).k_factor == report["k_factor_rf"]
    cosine, ratio = offset_agreement(auto.correction.offsets(xb)[0][0],
                                     exact.correction.offsets(xb)[0][0])
    assert cosine.mean() > 0.998 and abs(ratio.mean() - 1) < 0.02
    auto.add(xb)
    invgc_faiss.write_index(auto, tmp_path / "proj.invgc")
    loaded = invgc_faiss.read_index(tmp_path / "proj.invgc")
    loaded_bank = faiss.downcast_index(loaded.correction.offsets_[0].bank_index)
    assert isinstance(loaded_bank, faiss.IndexRefineFlat)
    assert loaded_bank.k_factor == report["k_factor_rf"]
    loaded.add(xb[:50])
    auto.add(xb[:50])
    assert_array_equal(loaded.index.reconstruct_n(0, 350), auto.index.reconstruct_n(0, 350))


def test_an_explicit_candidate_factor_wins_over_auto_and_is_checked(small_data):
    with pytest.warns(RuntimeWarning, match=r"drift from exact search .* raise k_factor_rf"):
        correction = InvGC(rho_q=1.0, pool_rate=0.1, query_bank_index="Proj4",
                           bank_search_params="k_factor_rf=3").fit(query_bank=small_data["bank_q"])
    assert correction.report_.calibration == {}
    assert faiss.downcast_index(correction.offsets_[0].bank_index).k_factor == 3


@pytest.mark.parametrize("spec", ["Proj0", "Proj17"])
def test_a_projection_outside_the_dimension_is_refused(small_data, spec):
    with pytest.raises(ValueError, match=rf"'{spec}': the projection needs 1 <= m <= d = 16"):
        InvGC(rho_q=1.0, query_bank_index=spec).fit(query_bank=small_data["bank_q"])


def test_ladder_over_the_candidate_factor():
    settings = ladder("Proj64", values=(1, 2))
    assert settings == {
        f"Proj64 k_factor_rf={v}": {"query_bank_index": "Proj64",
                                    "bank_search_params": f"k_factor_rf={v}"} for v in (1, 2)}
    assert list(ladder("Proj8")) == [f"Proj8 k_factor_rf={v}" for v in (1, 2, 4, 8, 16)]
