"""Renormalization (R1, R2; both sides or the queries only) against its formula in float64, in an
InvGCIndex (baked gallery, queries mapped in search, saved with the index) and as a
faiss.IndexPreTransform over a filled index."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from tests.helpers.data import cone
from invgc_faiss import InvGCIndex
from invgc_faiss.renormalization import Renormalization, renormalized_queries


@pytest.fixture
def data(rng):
    d = 16
    axis = np.ones(d) / 4
    return {"d": d, "xb": cone(rng, 200, d, 0.4, axis), "xq": cone(rng, 30, d, 0.4, axis),
            "bank_q": cone(rng, 150, d, 0.5, axis), "bank_g": cone(rng, 120, d, 0.3, -axis)}


def reference(x, bank, kind):
    """The formula in float64: normalize(x - mu) (R1) or normalize(x - (x.u) u) (R2)."""
    x, mu = x.astype(np.float64), bank.astype(np.float64).mean(axis=0)
    y = x - mu if kind == "R1" else x - np.outer(x @ (mu / np.linalg.norm(mu)),
                                                 mu / np.linalg.norm(mu))
    return y / np.linalg.norm(y, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["R1", "R2"])
def test_both_sides_follow_the_formula_and_the_index_ranks_by_them(data, kind):
    s = data
    renorm = Renormalization(kind).fit(s["bank_q"], s["bank_g"])
    assert_allclose(renorm.transform_query(s["xq"]), reference(s["xq"], s["bank_q"], kind),
                    atol=1e-6)
    assert_allclose(renorm.transform_gallery(s["xb"]), reference(s["xb"], s["bank_g"], kind),
                    atol=1e-6)
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"], gallery_bank=s["bank_g"],
                       alignment=renorm, rho_g=0.0, rho_q=0.0)
    index.add(s["xb"])
    scores = reference(s["xq"], s["bank_q"], kind) @ reference(s["xb"], s["bank_g"], kind).T
    D, I = index.search(s["xq"], 5)
    assert_array_equal(I, np.argsort(-scores, axis=1, kind="stable")[:, :5])
    assert_allclose(D, np.take_along_axis(scores, I, axis=1), atol=1e-5)


@pytest.mark.parametrize("kind", ["R1", "R2"])
def test_query_only_wraps_a_filled_index_and_later_adds_rank_as_untouched(data, kind):
    """R2: rows added through the wrapper rank as the rows already there; R1: rows go to the
    inner index itself (through the wrapper they would lose q~ . mu each)."""
    s = data
    renorm = Renormalization(kind, "query").fit(s["bank_q"])
    inner = faiss.IndexFlatIP(s["d"])
    inner.add(s["xb"][:150])
    wrapped = renormalized_queries(inner, renorm)
    (wrapped if kind == "R2" else inner).add(s["xb"][150:])
    mu = s["bank_q"].astype(np.float64).mean(axis=0)
    q = s["xq"] - mu if kind == "R1" else reference(s["xq"], s["bank_q"], "R2")
    scores = q @ s["xb"].T.astype(np.float64)
    _, I = wrapped.search(s["xq"], 5)
    assert_array_equal(I, np.argsort(-scores, axis=1, kind="stable")[:, :5])


def test_saved_with_the_index(data, tmp_path):
    s = data
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"], gallery_bank=s["bank_g"],
                       alignment=Renormalization("R1").fit(s["bank_q"], s["bank_g"]), rho_q=1.0)
    index.add(s["xb"][:100])
    invgc_faiss.write_index(index, tmp_path / "r.invgc")
    loaded = invgc_faiss.read_index(tmp_path / "r.invgc")
    for i in (index, loaded):
        i.add(s["xb"][100:])
    assert_array_equal(loaded.index.reconstruct_n(0, 200), index.index.reconstruct_n(0, 200))
    assert_array_equal(loaded.search(s["xq"], 5)[1], index.search(s["xq"], 5)[1])


def test_a_side_without_a_mean_is_left_nearly_as_it_is(rng):
    """Self-limiting: banks centred on the origin give maps that change rows by rounding only."""
    d = 8
    bank = np.vstack([np.eye(d), -np.eye(d)]).astype(np.float32)
    x = cone(rng, 20, d, 0.5, np.ones(d) / np.sqrt(d))
    for kind in ("R1", "R2"):
        renorm = Renormalization(kind).fit(bank, bank)
        assert_allclose(renorm.transform_gallery(x), x, atol=1e-6)


def test_bad_arguments(data):
    s = data
    with pytest.raises(ValueError, match="kind must be one of"):
        Renormalization("R3")
    with pytest.raises(ValueError, match="sides must be one of"):
        Renormalization("R1", "gallery")
    with pytest.raises(ValueError, match="pass gallery_bank"):
        Renormalization("R1").fit(s["bank_q"])
    with pytest.raises(ValueError, match="not fitted"):
        Renormalization().transform_query(s["xq"])
    with pytest.raises(ValueError, match="query-side|gallery_bank|unit"):
        Renormalization().fit(s["bank_q"] * 2, s["bank_g"])
    both = Renormalization().fit(s["bank_q"], s["bank_g"])
    with pytest.raises(ValueError, match="moves the queries only"):
        renormalized_queries(faiss.IndexFlatIP(s["d"]), both)
    only = Renormalization(sides="query").fit(s["bank_q"])
    with pytest.raises(ValueError, match="METRIC_INNER_PRODUCT"):
        renormalized_queries(faiss.IndexFlatL2(s["d"]), only)
    with pytest.raises(ValueError, match="dimension"):
        renormalized_queries(faiss.IndexFlatIP(s["d"] + 1), only)
