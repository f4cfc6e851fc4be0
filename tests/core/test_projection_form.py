"""The projection form against the dense float64 reference: baked, rerank, one and two banks,
zero offsets, persistence (old files too), alignment composition, Dask, parameter rules."""
import importlib.util

import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from tests.helpers import dense_reference as ref
import invgc_faiss
from tests.helpers.data import cone, cone_data, random_unit, unit_rows
from invgc_faiss import InvGC, InvGCIndex, InvGCRerankIndex
from invgc_faiss.correction import InvGC as CorrectionInvGC

TOL = 1e-5
IP = faiss.METRIC_INNER_PRODUCT


@pytest.fixture
def data():
    return cone_data(21, 24, 200, 30, 160, 120)


def banks_of(s, which):
    return {"gallery_bank": s["bank_g"] if which in ("both", "gallery") else None,
            "query_bank": s["bank_q"] if which in ("both", "query") else None}


@pytest.mark.parametrize("which", ["both", "gallery", "query"])
@pytest.mark.parametrize("rhos", [(1.0, 1.0), (0.6, 1.3), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0)])
@pytest.mark.parametrize("pool_rate", [0.01, 0.2, 1.0])
def test_baked_projection_matches_dense_reference(data, which, rhos, pool_rate):
    s = data
    banks = banks_of(s, which)
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), **banks, rho_g=rhos[0], rho_q=rhos[1],
                       pool_rate=pool_rate, max_bank_size=None)
    assert index.correction.rates_.form == "projection"
    index.add(s["xb"])
    used = [(b, r) for b, r in ((banks["gallery_bank"], rhos[0]), (banks["query_bank"], rhos[1]))
            if b is not None]
    expected = ref.projection_invgc(s["xb"], [b for b, _ in used], [r for _, r in used], pool_rate)
    assert_allclose(index.index.reconstruct_n(0, 200), expected, atol=TOL)


def test_rho_one_makes_each_bank_part_orthogonal_to_its_offset(data):
    s = data
    correction = InvGC(rho_q=1.0, pool_rate=0.1, max_bank_size=None).fit(query_bank=s["bank_q"])
    corrected = correction.transform(s["xb"])
    offsets, _ = correction.offsets(s["xb"])
    assert np.abs(np.einsum("nd,nd->n", corrected, offsets[0])).max() < 1e-5


def test_zero_offset_leaves_the_row_unchanged():
    d = 8
    rng = np.random.default_rng(0)
    bank = unit_rows(np.hstack([rng.standard_normal((50, 4)), np.zeros((50, 4))]))
    x = unit_rows(np.hstack([np.zeros((5, 4)), rng.standard_normal((5, 4))]))  # x . b = 0
    index = InvGCIndex(faiss.IndexFlatIP(d), query_bank=bank, gallery_bank=bank, rho_g=1.0,
                       rho_q=0.7, pool_rate=0.1)
    index.add(x)
    assert_allclose(index.index.reconstruct_n(0, 5), x, atol=1e-7)
    rerank = InvGCRerankIndex(faiss.IndexFlatIP(d), query_bank=bank, gallery_bank=bank,
                              rho_g=1.0, rho_q=0.7, pool_rate=0.1, offset_dtype="float32")
    rerank.add(x)
    D, _ = rerank.search(x, 5)
    D0, _ = index.search(x, 5)
    assert_allclose(D, D0, atol=1e-6)


@pytest.mark.parametrize("which", ["both", "gallery", "query"])
def test_rerank_projection_scores_equal_dense_reference(data, which):
    s = data
    banks = banks_of(s, which)
    index = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), **banks, rho_g=0.8, rho_q=1.2,
                             pool_rate=0.1, max_bank_size=None, offset_dtype="float32",
                             k_factor=200)
    index.add(s["xb"])
    used = [(b, r) for b, r in ((banks["gallery_bank"], 0.8), (banks["query_bank"], 1.2))
            if b is not None]
    stored = ref.projection_invgc(s["xb"], [b for b, _ in used], [r for _, r in used], 0.1)
    D, I = index.search(s["xq"], 10)
    dense = s["xq"].astype(np.float64) @ stored.T
    assert_allclose(D, np.take_along_axis(dense, I, axis=1), atol=TOL)
    assert_allclose(np.sort(dense, axis=1)[:, ::-1][:, :10], D, atol=TOL)  # the true top 10


def test_rerank_projection_rates_change_at_search_time_like_a_rebuild(data):
    s = data
    common = {"gallery_bank": s["bank_g"], "query_bank": s["bank_q"], "pool_rate": 0.1}
    rerank = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), rho_g=0.0, rho_q=1.0,
                              offset_dtype="float32", k_factor=200, **common)
    rerank.add(s["xb"])
    rerank.set_rates(rho_g=0.5, rho_q=0.9)
    baked = InvGCIndex(faiss.IndexFlatIP(s["d"]), rho_g=0.5, rho_q=0.9, **common)
    baked.add(s["xb"])
    D, I = rerank.search(s["xq"], 10)
    D0, I0 = baked.search(s["xq"], 10)
    assert_array_equal(I, I0)
    assert_allclose(D, D0, atol=TOL)
    with pytest.raises(ValueError, match="projection form"):
        rerank.set_rates(r_q=1.0)


def test_defaults_are_projection_on_the_query_bank(data):
    s = data
    both = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"])
    assert both.correction.rates_.form == "projection"
    assert both.correction.rates_.of(["gallery", "query"]).tolist() == [0.0, 1.0]
    assert both.correction.pool_rate == 0.2
    with pytest.warns(UserWarning, match="gallery bank alone the defaults leave vectors unchanged"):
        alone = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"])
    assert alone.correction.rates_.of(["gallery"]).tolist() == [0.0]
    alone.add(s["xb"])
    assert_array_equal(alone.index.reconstruct_n(0, 200), s["xb"])
    paper = InvGCIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"], r_q=2.0)
    assert paper.correction.rates_.form == "paper"


@pytest.mark.parametrize("kwargs,match", [
    ({"r_g": 1.0, "rho_q": 1.0}, "not both"),
    ({"form": "paper", "rho_q": 1.0}, "projection form"),
    ({"form": "projection", "r_q": 1.0}, "paper form"),
    ({"form": "other"}, "form must be one of"),
    ({"rho_q": -1.0}, "rho_q"),
])
def test_form_and_rate_mistakes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CorrectionInvGC(**kwargs)


def test_projection_round_trip_and_old_files_still_load(tmp_path, data, monkeypatch):
    s = data
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       rho_g=0.5, rho_q=1.0, pool_rate=0.1)
    index.add(s["xb"])
    invgc_faiss.write_index(index, tmp_path / "p.invgc")
    loaded = invgc_faiss.read_index(tmp_path / "p.invgc")
    assert loaded.correction.rates_.form == "projection"
    assert_array_equal(loaded.search(s["xq"], 10)[1], index.search(s["xq"], 10)[1])
    # a file written before the projection form existed: its header has no form or rho keys
    old = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                     r_g=0.3, r_q=0.3, pool_rate=0.01, max_bank_size=None)
    old.add(s["xb"])
    old_params = {k: v for k, v in old.correction.get_params().items()
                  if k not in ("form", "rho_g", "rho_q")}
    monkeypatch.setattr(CorrectionInvGC, "get_params", lambda self: old_params)
    invgc_faiss.write_index(old, tmp_path / "old.invgc")
    monkeypatch.undo()
    reloaded = invgc_faiss.read_index(tmp_path / "old.invgc")
    assert reloaded.correction.rates_.form == "paper"
    assert reloaded.correction.rates_.of(["gallery", "query"]).tolist() == [0.3, 0.3]
    more = s["xq"]
    old.add(more)
    reloaded.add(more)
    assert_array_equal(reloaded.index.reconstruct_n(0, 230), old.index.reconstruct_n(0, 230))


def test_projection_composes_with_an_alignment(data):
    from invgc_faiss.rebalance import ProcrustesAlignment

    s = data
    rng = np.random.default_rng(3)
    pairs_q, pairs_g = s["bank_q"], cone(rng, 120, s["d"], 0.3)
    alignment = ProcrustesAlignment().fit(pairs_q, pairs_g)
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=pairs_g, query_bank=pairs_q,
                       alignment=alignment, rho_g=1.0, rho_q=1.0, pool_rate=0.1)
    index.add(s["xb"])
    by_hand = ref.projection_invgc(alignment.transform_gallery(s["xb"]),
                                   [alignment.transform_gallery(pairs_g),
                                    alignment.transform_query(pairs_q)], [1.0, 1.0], 0.1)
    assert_allclose(index.index.reconstruct_n(0, 200), by_hand, atol=TOL)
    D, I = index.search(s["xq"], 5)
    dense = alignment.transform_query(s["xq"]).astype(np.float64) @ by_hand.T
    assert_allclose(D, np.take_along_axis(dense, I, axis=1), atol=TOL)


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="needs the dask extra")
def test_projection_distributed_build_equals_single_process(data):
    from dask.distributed import Client, LocalCluster

    from invgc_faiss.distributed import build_distributed

    s = data
    xb = random_unit(np.random.default_rng(8), 600, s["d"])

    def make():
        return InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"],
                          query_bank=s["bank_q"], rho_g=0.5, rho_q=1.0, pool_rate=0.1)

    single = make()
    single.add(xb)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        built = build_distributed(client, make(), xb, chunk_size=250)
    assert_array_equal(built.index.reconstruct_n(0, 600), single.index.reconstruct_n(0, 600))
