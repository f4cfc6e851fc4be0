"""Bad input raises a clear ValueError/TypeError and leaves the index exactly as it was."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from invgc_faiss import InvGC, InvGCIndex


@pytest.fixture
def loaded(small_data):
    """An index holding 50 vectors, and a function that asserts it is still in that state."""
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"])
    index.add(s["xb"][:50])
    vectors = index.index.reconstruct_n(0, 50)
    degrees = index.items.columns["degrees"].copy()

    def unchanged():
        assert index.ntotal == 50 and index.index.ntotal == 50
        assert_array_equal(index.stored_ids(), np.arange(50))
        assert_array_equal(index.index.reconstruct_n(0, 50), vectors)
        assert_array_equal(index.items.columns["degrees"], degrees)
        assert index.sequential_ids is True

    return index, unchanged


def test_wrong_dimension(loaded, small_data):
    index, unchanged = loaded
    with pytest.raises(ValueError, match="dimension 15, expected d = 16"):
        index.add(small_data["xb"][:5, :15])
    unchanged()


def test_not_2d(loaded, small_data):
    index, unchanged = loaded
    with pytest.raises(ValueError, match="must be 2-D"):
        index.add(small_data["xb"][0])
    unchanged()


@pytest.mark.parametrize("bad", [np.zeros((2, 16), dtype=complex), np.full((2, 16), "a"),
                                 np.array([[object()] * 16] * 2)])
def test_dtype_that_cannot_be_converted(loaded, bad):
    index, unchanged = loaded
    with pytest.raises(TypeError, match="real numbers"):
        index.add(bad)
    unchanged()


def test_float64_input_is_converted(loaded, small_data):
    index, _ = loaded
    index.add(small_data["xb"][50:60].astype(np.float64))
    assert index.ntotal == 60


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf(loaded, small_data, value):
    index, unchanged = loaded
    x = small_data["xb"][50:60].copy()
    x[3, 2] = value
    with pytest.raises(ValueError, match="NaN or inf in 1 row.*row 3"):
        index.add(x)
    unchanged()


def test_nan_in_queries(loaded, small_data):
    index, unchanged = loaded
    q = small_data["xq"][:2].copy()
    q[1, 0] = np.nan
    with pytest.raises(ValueError, match="queries contains NaN"):
        index.search(q, 3)
    unchanged()


def test_non_unit_rows_raise_by_default(loaded, small_data):
    index, unchanged = loaded
    with pytest.raises(ValueError, match="row 0 has norm 2"):
        index.add(2 * small_data["xb"][50:55])
    unchanged()


def test_normalize_input_normalizes(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=3 * s["bank_g"],
                       query_bank=0.5 * s["bank_q"], normalize_input=True, rho_q=1.0)
    index.add(5 * s["xb"])
    unit = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                      rho_q=1.0)
    unit.add(s["xb"])
    np.testing.assert_allclose(index.index.reconstruct_n(0, 300), unit.index.reconstruct_n(0, 300),
                               atol=1e-6)
    with pytest.raises(ValueError, match="zero row"):
        index.add(np.zeros((1, s["d"]), dtype=np.float32))


def test_empty_bank(small_data):
    with pytest.raises(ValueError, match="gallery_bank is empty"):
        InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=np.zeros((0, 16), np.float32))


def test_no_bank():
    with pytest.raises(ValueError, match="at least one reference bank"):
        InvGCIndex(faiss.IndexFlatIP(16))


def test_bank_dimension_mismatch(small_data):
    with pytest.raises(ValueError, match="query_bank has dimension 8, expected d = 16"):
        InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=small_data["bank_g"],
                   query_bank=small_data["bank_q"][:, :8])


def test_bank_dimension_differs_from_index(small_data):
    with pytest.raises(ValueError, match="gallery_bank has dimension 16, expected d = 32"):
        InvGCIndex(faiss.IndexFlatIP(32), gallery_bank=small_data["bank_g"])


def test_bank_with_nan(small_data):
    bank = small_data["bank_g"].copy()
    bank[7, 0] = np.nan
    with pytest.raises(ValueError, match="gallery_bank contains NaN"):
        InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=bank)


@pytest.mark.parametrize("pool_rate", [0.0, -0.1, 1.5])
def test_pool_rate_outside_unit_interval(small_data, pool_rate):
    with pytest.raises(ValueError, match=r"pool_rate must be in \(0, 1\]"):
        InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=small_data["bank_g"], pool_rate=pool_rate)


@pytest.mark.parametrize("name", ["r_g", "r_q"])
def test_negative_rate(small_data, name):
    with pytest.raises(ValueError, match=f"{name} must be finite and >= 0, got -0.5"):
        InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=small_data["bank_g"], **{name: -0.5})


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant must be one of"):
        InvGC(variant="sparse")


def test_bank_index_of_wrong_metric(small_data):
    with pytest.raises(ValueError, match="METRIC_INNER_PRODUCT"):
        InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=small_data["bank_g"],
                   gallery_bank_index=faiss.IndexFlatL2(16))


def test_ids_of_wrong_length(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"])
    index.add_with_ids(s["xb"][:5], np.arange(5))
    with pytest.raises(ValueError, match=r"ids must have shape \(3,\)"):
        index.add_with_ids(s["xb"][5:8], np.arange(4) + 10)
    assert index.ntotal == 5


def test_ids_of_wrong_dtype(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"])
    with pytest.raises(TypeError, match="ids must be integers, got dtype float64"):
        index.add_with_ids(s["xb"][:3], np.array([1.0, 2.0, 3.0]))
    assert index.ntotal == 0 and index.sequential_ids is None


@pytest.mark.parametrize("ids, message", [([1, 1, 2], "duplicates"), ([0, -1, 2], ">= 0"),
                                          ([7, 8, 9], "already stored")])
def test_ids_duplicate_negative_or_taken(small_data, ids, message):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"])
    index.add_with_ids(s["xb"][:5], np.arange(5) + 5)
    with pytest.raises(ValueError, match=message):
        index.add_with_ids(s["xb"][5:8], np.array(ids))
    assert_array_equal(index.stored_ids(), np.arange(5) + 5)


def test_add_on_untrained_inner_index(small_data):
    s = small_data
    index = InvGCIndex(faiss.index_factory(16, "IVF4,Flat"), gallery_bank=s["bank_g"])
    with pytest.raises(ValueError, match="IndexIVFFlat is not trained: call train"):
        index.add(s["xb"])
    assert index.ntotal == 0 and index.index.ntotal == 0


def test_non_empty_inner_index(small_data):
    inner = faiss.IndexFlatIP(16)
    inner.add(small_data["xb"][:3])
    with pytest.raises(ValueError, match="already holds 3 uncorrected vectors"):
        InvGCIndex(inner, gallery_bank=small_data["bank_g"])


def test_inner_not_a_faiss_index(small_data):
    with pytest.raises(TypeError, match="must be a faiss.Index"):
        InvGCIndex(np.zeros((3, 16)), gallery_bank=small_data["bank_g"])


@pytest.mark.parametrize("k", [0, -3])
def test_bad_k(loaded, small_data, k):
    index, unchanged = loaded
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(small_data["xq"], k)
    unchanged()


def test_remove_ids_with_floats(loaded):
    index, unchanged = loaded
    with pytest.raises(TypeError, match="remove_ids takes a 1-D integer array"):
        index.remove_ids(np.array([1.0, 2.0]))
    unchanged()


def test_empty_batch_is_a_no_op(loaded):
    index, unchanged = loaded
    index.add(np.zeros((0, 16), dtype=np.float32))
    unchanged()
