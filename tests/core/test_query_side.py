"""The query-side correction (``invgc_faiss.query_side``) against a dense float64 reference."""
import os

import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from invgc_faiss import QueryCorrection, query_corrected


def unit_cone(rng, n, d, offset=1.5):
    x = rng.standard_normal((n, d)) + offset
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def data(rng):
    return {"bank": unit_cone(rng, 400, 24), "gallery": unit_cone(rng, 300, 24),
            "queries": unit_cone(rng, 40, 24)}


def reference(queries, bank, rho):
    """q - rho (q . m) m in float64, m the normalized mean of the bank's rows."""
    m = bank.astype(np.float64).mean(axis=0)
    m /= np.linalg.norm(m)
    q = queries.astype(np.float64)
    return q - rho * np.outer(q @ m, m)


@pytest.mark.parametrize("rho", [1.0, 0.5, 0.0])
def test_transform_matches_the_dense_reference(data, rho):
    correction = QueryCorrection(rho=rho).fit(data["bank"])
    assert_allclose(correction.transform(data["queries"]),
                    reference(data["queries"], data["bank"], rho), atol=2e-6)
    if rho == 1.0:  # all of the component along m is gone
        assert_allclose(correction.transform(data["queries"]) @ correction.direction_, 0,
                        atol=2e-6)


def test_the_wrapped_index_ranks_by_the_corrected_queries(data):
    """Flat and IVF: the wrapper's results are the inner index searched with corrected queries;
    on the flat index, the exact top 10 of q~ . x (the gallery untouched)."""
    correction = QueryCorrection().fit(data["bank"])
    q_ref = reference(data["queries"], data["bank"], 1.0)
    flat = faiss.IndexFlatIP(24)
    flat.add(data["gallery"])
    scores, found = query_corrected(flat, correction).search(data["queries"], 10)
    expected = np.argsort(-(q_ref @ data["gallery"].T.astype(np.float64)), axis=1)[:, :10]
    assert_array_equal(found, expected)
    assert_allclose(scores, np.take_along_axis(q_ref @ data["gallery"].T, expected, 1), atol=2e-6)
    ivf = faiss.index_factory(24, "IVF8,Flat", faiss.METRIC_INNER_PRODUCT)
    ivf.train(data["gallery"])
    ivf.add(data["gallery"])
    ivf.nprobe = 2
    wrapped = query_corrected(ivf, correction)
    assert_array_equal(wrapped.search(data["queries"], 5)[1],
                       ivf.search(correction.transform(data["queries"]), 5)[1])


def test_rows_added_through_the_wrapper_rank_as_if_added_untouched(data):
    """add() maps rows too; q~ is orthogonal to m, so q~ . x~ = q~ . x: the same ranking."""
    correction = QueryCorrection().fit(data["bank"])
    direct, through = faiss.IndexFlatIP(24), faiss.IndexFlatIP(24)
    direct.add(data["gallery"])
    wrapped = query_corrected(through, correction)
    wrapped.add(data["gallery"])
    assert wrapped.ntotal == through.ntotal == 300
    d1, i1 = query_corrected(direct, correction).search(data["queries"], 10)
    d2, i2 = wrapped.search(data["queries"], 10)
    assert_array_equal(i1, i2)
    assert_allclose(d1, d2, atol=2e-6)


def test_below_rho_1_rows_added_through_the_wrapper_get_the_map_twice(data):
    """(A q) . (A x) = q . A^2 x with A^2 = I - (2 rho - rho^2) m m^T: the documented caveat."""
    rho = 0.8
    through = query_corrected(faiss.IndexFlatIP(24), QueryCorrection(rho).fit(data["bank"]))
    through.add(data["gallery"])
    direct = faiss.IndexFlatIP(24)
    direct.add(data["gallery"])
    twice = QueryCorrection(2 * rho - rho ** 2).fit(data["bank"])
    d1, i1 = through.search(data["queries"], 10)
    d2, i2 = direct.search(twice.transform(data["queries"]), 10)
    assert_array_equal(i1, i2)
    assert_allclose(d1, d2, atol=2e-6)


def test_the_wrapper_is_a_faiss_index_that_faiss_saves(data, tmp_path):
    correction = QueryCorrection().fit(data["bank"])
    flat = faiss.IndexFlatIP(24)
    flat.add(data["gallery"])
    wrapped = query_corrected(flat, correction)
    path = os.path.join(tmp_path, "wrapped.faiss")
    faiss.write_index(wrapped, path)
    reloaded = faiss.read_index(path)
    assert isinstance(reloaded, faiss.IndexPreTransform) and reloaded.ntotal == 300
    assert_array_equal(reloaded.search(data["queries"], 10)[1],
                       wrapped.search(data["queries"], 10)[1])


def test_bad_input_is_refused_with_the_problem_named(data):
    correction = QueryCorrection()
    with pytest.raises(ValueError, match="not fitted"):
        correction.transform(data["queries"])
    with pytest.raises(ValueError, match="query_bank"):
        correction.fit(data["bank"] * 2)  # not unit rows
    with pytest.raises(ValueError, match="rho"):
        QueryCorrection(rho=-1.0)
    correction.fit(data["bank"])
    with pytest.raises(ValueError, match="dimension"):
        correction.transform(data["queries"][:, :10])
    with pytest.raises(ValueError, match="INNER_PRODUCT"):
        query_corrected(faiss.IndexFlatL2(24), correction)
    with pytest.raises(ValueError, match="dimension 10"):
        query_corrected(faiss.IndexFlatIP(10), correction)
    with pytest.raises(TypeError, match="faiss index"):
        query_corrected(np.zeros((3, 24)), correction)
    balanced = np.concatenate([data["bank"][:50], -data["bank"][:50]])
    with pytest.raises(ValueError, match="mean is zero"):
        QueryCorrection().fit(balanced)
