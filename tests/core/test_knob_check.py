"""check_knobs: held-out R@1 of InvGC under scale-knob settings against exact InvGC, on pairs."""
import faiss
import numpy as np
import pytest

from tests.helpers import dense_reference as ref
import invgc_faiss
from invgc_faiss import heldout
from invgc_faiss.measures import diagonal_ranks
from invgc_faiss.knob_check import ladder
from invgc_faiss.lab.synthetic import make_cone_pairs

PARAMS = {"rho_q": 1.0, "pool_rate": 0.2}


@pytest.fixture(scope="module")
def pairs():
    split = make_cone_pairs(n_test=10, n_bank=1500, d=32, seed=3)
    return split.bank_queries, split.bank_gallery


def test_reference_row_is_exact_invgc_by_hand_and_a_null_knob_costs_nothing(pairs):
    qb, gb = pairs
    report = invgc_faiss.check_knobs(qb, gb, {"same": {}}, params=PARAMS, holdout=300)
    exact, same = report.rows
    held, rest = heldout.holdout_rows(qb.shape[0], 300, 2000, np.random.default_rng(0),
                                      minimum=50, what="")
    corrected = ref.projection_invgc(gb[held], [qb[rest]], [1.0], 0.2)
    by_hand = 100 * np.mean(np.argmax(qb[held] @ corrected.T, axis=1) == np.arange(300))
    assert report.n_holdout == 300
    assert exact["name"] == "exact" and exact["R@1"] == pytest.approx(by_hand)
    assert same["dR@1"] == 0 and same["dR@1_interval"] == [0, 0]
    assert same["warned"] == [] and "exact" in str(report) and "same" in str(report)


def test_a_knob_that_hurts_is_measured_with_its_interval_and_warnings(pairs):
    qb, gb = pairs
    report = invgc_faiss.check_knobs(
        qb, gb, {"off": {"rho_q": 0.0}, "sample 32": {"max_bank_size": 32},
                 "IVF nprobe 1": {"query_bank_index": "IVF16,Flat", "bank_search_params": "nprobe=1"}},
        params=PARAMS, holdout=300)
    exact, off, sample, ivf = report.rows
    held = heldout.holdout_rows(1500, 300, 2000, np.random.default_rng(0), minimum=50, what="")[0]
    plain = 100 * np.mean(diagonal_ranks(qb[held] @ gb[held].T) == 1)
    assert off["R@1"] == pytest.approx(plain)  # rho = 0 is the identity
    assert off["dR@1"] < 0 and off["dR@1_interval"][1] < 0  # InvGC helps on these pairs
    assert off["dR@1_interval"][0] <= off["dR@1"] <= off["dR@1_interval"][1]
    assert sample["warned"] and "max_bank_size" in sample["warned"][0]
    assert ivf["warned"] and ivf["bank_search_params"] == "nprobe=1"
    assert report.to_dict()["rows"][0]["name"] == "exact"


def test_bad_arguments(pairs):
    qb, gb = pairs
    with pytest.raises(ValueError, match="paired banks"):
        invgc_faiss.check_knobs(qb, gb[:-1], {"x": {}})
    with pytest.raises(TypeError, match="non-empty dict"):
        invgc_faiss.check_knobs(qb, gb, {})
    with pytest.raises(ValueError, match="at least 50 held-out rows"):
        invgc_faiss.check_knobs(qb, gb, {"x": {}}, holdout=10)


def test_a_ladder_shares_one_bank_index_and_cheapest_picks_within_the_loss(pairs, monkeypatch):
    import invgc_faiss.knob_check as knob_check

    qb, gb = pairs
    builds = []
    real_build = knob_check.build_bank_index
    monkeypatch.setattr(knob_check, "build_bank_index",
                        lambda bank, spec: builds.append(spec) or real_build(bank, spec))
    knobs = {**ladder("IVF16,Flat", values=(1, 4, 16)), "IVF auto": {"query_bank_index": "IVF16,Flat"},
             "sample 64": {"max_bank_size": 64}}
    report = invgc_faiss.check_knobs(qb, gb, knobs, params=PARAMS, holdout=300)
    assert builds == ["IVF16,Flat"]  # built once for the four IVF settings
    rows = {row["name"]: row for row in report.rows}
    assert rows["IVF16,Flat nprobe=16"]["dR@1"] == 0  # every list probed: exact
    auto = rows["IVF auto"]["knob"]
    assert auto["query_bank_index"] == "IVF16,Flat" and auto["bank_search_params"]
    choice = report.cheapest(max_loss=0.5)
    chosen = next(row for row in report.rows if row["knob"] == choice)
    assert chosen["dR@1_interval"][0] >= -0.5
    assert all(row["speed_up"] <= chosen["speed_up"] for row in report.rows
               if row["dR@1_interval"][0] >= -0.5)
    index = invgc_faiss.InvGCIndex(faiss.IndexFlatIP(32), query_bank=qb, **PARAMS, **choice)
    assert index.correction.report_.bank_search_params == choice.get("bank_search_params")
    with pytest.raises(ValueError, match="max_loss"):
        report.cheapest(max_loss=-1)
    with pytest.raises(ValueError, match="no accuracy knob"):
        ladder("Flat")


def test_the_reduced_path_is_a_knob_measured_against_the_exact_reference(pairs):
    """The reference row is the exact path in all d dimensions whatever the default; a knob
    setting ``n_components`` measures the reduced path, and says so in its resolved setting."""
    qb, gb = pairs
    report = invgc_faiss.check_knobs(qb, gb, {"8 dims": {"n_components": 8}, "same": {}},
                                     params={**PARAMS, "n_components": 8}, holdout=300)
    exact, reduced, same = report.rows
    held, rest = heldout.holdout_rows(qb.shape[0], 300, 2000, np.random.default_rng(0),
                                      minimum=50, what="")
    corrected = ref.projection_invgc(gb[held], [qb[rest]], [1.0], 0.2)
    assert exact["R@1"] == pytest.approx(
        100 * np.mean(np.argmax(qb[held] @ corrected.T, axis=1) == np.arange(300)))
    assert same["dR@1"] == 0
    assert reduced["knob"]["n_components"] == 8 and same["knob"]["n_components"] is None
