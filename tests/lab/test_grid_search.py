"""Label-free tuning: grids and the no-rebuild InvGC path."""
import pytest

from invgc_faiss.heldout import grid
from invgc_faiss.lab import grid_search as tune
from invgc_faiss.lab.methods import METHODS
from invgc_faiss.lab.synthetic import make_cone_pairs


def test_grid_expands_all_combinations():
    assert grid({}) == [{}]
    assert grid({"a": (1, 2), "b": (3,)}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


def test_grids_reach_the_spec_minimums():
    g = METHODS["invgc_localadj"][0]
    assert max(g["r_g"]) >= 3 and max(g["r_q"]) >= 3 and max(g["pool_rate"]) >= 0.2
    assert 0.0 in g["r_g"] and 0.0 in g["r_q"]  # plain is always a candidate


def test_dense_and_faiss_recall_sums_agree():
    split = make_cone_pairs(200, 400, 16, seed=1)
    import faiss

    index = faiss.IndexFlatIP(16)
    index.add(split.gallery)
    _, I = index.search(split.queries, 10)
    assert tune.recall_sum(I, 200) == pytest.approx(
        tune.recall_sum_dense(split.queries @ split.gallery.T))


@pytest.mark.parametrize("name", ["invgc_localadj", "invgc_full"])
def test_fast_invgc_tuning_matches_building_the_index(name, monkeypatch):
    """The no-rebuild path scores a parameter set as building the InvGCIndex would."""
    split = make_cone_pairs(150, 600, 16, seed=2)
    small = {"r_g": (0.0, 1.0), "r_q": (0.5, 2.0)}
    if name == "invgc_localadj":
        small["pool_rate"] = (0.01, 0.1)
    grid_, make = METHODS[name]
    monkeypatch.setitem(METHODS, name, (small, make))
    args = (split.tune_queries, split.tune_gallery, split.tune_bank_queries, split.tune_bank_gallery)
    params, score = tune.tune_method(name, *args)
    index = make(params, split.tune_bank_queries, split.tune_bank_gallery)(16)
    index.train(split.tune_gallery)
    index.add(split.tune_gallery)
    _, I = index.search(split.tune_queries, 10)
    assert tune.recall_sum(I, len(split.tune_queries)) == pytest.approx(score, abs=1e-9)



@pytest.mark.parametrize("name,point", [
    ("invgc_localadj", {"r_g": 0.5, "r_q": 1.5, "pool_rate": 0.05}),
    ("nnn", {"alpha": 0.5, "k": 8}),
])
def test_a_given_grid_replaces_the_methods_own(name, point):
    split = make_cone_pairs(n_test=50, n_bank=300, d=16, seed=2)
    params, _ = tune.tune_method(name, split.tune_queries, split.tune_gallery,
                                 split.tune_bank_queries, split.tune_bank_gallery,
                                 param_grid={k: (v,) for k, v in point.items()})
    assert params == point


def test_peers_are_compared_on_the_split_a_tune_result_exposes():
    import invgc_faiss

    s = make_cone_pairs(n_test=10, n_bank=1500, d=32, seed=4)
    grid = {"projection": {"rho_q": (1.0,), "pool_rate": (0.2,)}}
    result = invgc_faiss.tune(s.bank_queries, s.bank_gallery, forms=("projection",), grid=grid,
                              holdout=300)
    compared = tune.compare_peers(result, ("nnn",))
    assert [row["method"] for row in compared.rows] == ["plain", "projection", "nnn"]
    assert [row["method"] for row in result.rows] == ["plain", "projection"]  # unchanged
    held = result.heldout
    params, score = tune.tune_method("nnn", held.queries, held.gallery, held.query_bank,
                                     held.gallery_bank)
    assert compared.rows[-1]["sum"] == score and compared.rows[-1]["params"] == params
    assert "nnn" in str(compared)
    unpaired = invgc_faiss.tune(s.bank_queries[:1200], s.bank_gallery, forms=("projection",),
                                grid=grid, holdout=300)
    with pytest.raises(ValueError, match="paired banks only"):
        tune.compare_peers(unpaired, ("nnn",))
    with pytest.raises(ValueError, match="unknown peers"):
        tune.compare_peers(result, ("plain",))
