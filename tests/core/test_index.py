"""The faiss surface of InvGCIndex around many inner index types.

Each result is checked against a plain faiss index of the same type holding the vectors the
correction produces (the correction itself is checked against the dense reference elsewhere).
"""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from invgc_faiss import InvGCIndex

IP, L2 = faiss.METRIC_INNER_PRODUCT, faiss.METRIC_L2

INNER = {
    "FlatIP": lambda d: faiss.IndexFlatIP(d),
    "FlatL2": lambda d: faiss.IndexFlatL2(d),
    "IDMap": lambda d: faiss.IndexIDMap(faiss.IndexFlatIP(d)),
    "IDMap2": lambda d: faiss.IndexIDMap2(faiss.IndexFlatIP(d)),
    "IVFFlat": lambda d: faiss.index_factory(d, "IVF8,Flat", IP),
    "IVFPQ": lambda d: faiss.index_factory(d, "IVF4,PQ4x4", IP),
    "HNSW": lambda d: faiss.index_factory(d, "HNSW16", IP),
    "factory": lambda d: faiss.index_factory(d, "L2norm,IVF4,Flat", IP),
}


def make(kind, s, **params):
    params = {"gallery_bank": s["bank_g"], "query_bank": s["bank_q"], "r_g": 0.5, "r_q": 0.8,
              "pool_rate": 0.05, **params}
    return InvGCIndex(INNER[kind](s["d"]), **params)


def plain_twin(kind, index, s):
    """A plain faiss index of the same kind, trained and filled with the corrected vectors."""
    plain = faiss.IndexFlatIP(s["d"]) if kind.startswith("IDMap") else INNER[kind](s["d"])
    corrected = index.correction.transform(s["xb"])
    plain.train(corrected)
    plain.add(corrected)
    return plain


def set_probe(index):
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = ivf.nlist


@pytest.mark.parametrize("kind", list(INNER))
def test_search_equals_plain_index_on_corrected_vectors(kind, small_data):
    s = small_data
    index = make(kind, s)
    index.train(s["xb"])
    index.add(s["xb"])
    plain = plain_twin(kind, index, s)
    set_probe(index.index)
    set_probe(plain)
    assert index.ntotal == 300 and index.d == s["d"] and index.is_trained
    assert index.metric_type == plain.metric_type
    D, I = index.search(s["xq"], 10)
    D0, I0 = plain.search(s["xq"], 10)
    assert_array_equal(I, I0)
    assert_allclose(D, D0, rtol=1e-6, atol=1e-6)


def test_queries_are_untouched(small_data):
    """score(q, x) = q . x' with the raw query."""
    s = small_data
    index = make("FlatIP", s)
    index.add(s["xb"])
    D, I = index.search(s["xq"], 5)
    corrected = index.correction.transform(s["xb"])
    assert_allclose(D, np.take_along_axis(s["xq"] @ corrected.T, I, axis=1), atol=1e-6)


def test_k_larger_than_ntotal_pads_with_minus_one(small_data):
    s = small_data
    index = make("FlatIP", s)
    index.add(s["xb"][:3])
    D, I = index.search(s["xq"][:2], 5)
    assert_array_equal(I[:, 3:], -1)
    assert (I[:, :3] >= 0).all()


def test_search_params_are_passed_to_inner(small_data):
    s = small_data
    index = make("IVFFlat", s)
    index.train(s["xb"])
    index.add(s["xb"])
    _, I_one = index.search(s["xq"], 10, params=faiss.SearchParametersIVF(nprobe=1))
    _, I_all = index.search(s["xq"], 10, params=faiss.SearchParametersIVF(nprobe=8))
    plain = plain_twin("IVFFlat", index, s)
    assert_array_equal(I_all, plain.search(s["xq"], 10, params=faiss.SearchParametersIVF(nprobe=8))[1])
    assert_array_equal(I_one, plain.search(s["xq"], 10, params=faiss.SearchParametersIVF(nprobe=1))[1])
    assert not np.array_equal(I_one, I_all)


def test_search_params_id_selector_uses_external_ids(small_data):
    s = small_data
    index = make("FlatIP", s)
    index.add_with_ids(s["xb"], np.arange(300) + 1000)
    sel = faiss.IDSelectorRange(1000, 1050)
    _, I = index.search(s["xq"], 5, params=faiss.SearchParameters(sel=sel))
    assert ((I >= 1000) & (I < 1050)).all()


def test_range_search(small_data):
    s = small_data
    index = make("FlatIP", s)
    index.add(s["xb"])
    lims, D, I = index.range_search(s["xq"], 0.5)
    scores = s["xq"] @ index.correction.transform(s["xb"]).T
    for q in range(len(s["xq"])):
        assert set(I[lims[q]:lims[q + 1]]) == set(np.flatnonzero(scores[q] > 0.5))


@pytest.mark.parametrize("kind", ["FlatIP", "IDMap2", "IVFFlat", "HNSW"])
def test_reconstruct_gives_corrected_vectors(kind, small_data):
    s = small_data
    index = make(kind, s)
    index.train(s["xb"])
    index.add_with_ids(s["xb"], np.arange(300) * 2 + 7)
    ivf = faiss.try_extract_index_ivf(index.index)
    if ivf is not None:
        ivf.make_direct_map()
    corrected = index.correction.transform(s["xb"])
    assert_allclose(index.reconstruct(7 + 2 * 5), corrected[5], atol=1e-7)
    assert_allclose(index.reconstruct_batch(np.array([7, 9, 11])), corrected[:3], atol=1e-7)


def test_reconstruct_n_with_sequential_ids(small_data):
    s = small_data
    index = make("FlatIP", s)
    index.add(s["xb"])
    assert_allclose(index.reconstruct_n(10, 5), index.correction.transform(s["xb"])[10:15], atol=1e-7)


def test_originals_only_when_kept(small_data):
    s = small_data
    kept = make("FlatIP", s, keep_originals=True)
    kept.add(s["xb"])
    assert_array_equal(kept.get_originals([4, 2]), s["xb"][[4, 2]])
    plain = make("FlatIP", s)
    plain.add(s["xb"])
    with pytest.raises(ValueError, match="keep_originals=True"):
        plain.get_originals([0])
    with pytest.raises(KeyError, match="not stored"):
        kept.get_originals([10_000])


@pytest.mark.parametrize("kind", ["FlatIP", "IDMap", "IVFFlat", "IVFPQ", "factory"])
def test_remove_ids_user_ids_stay_stable(kind, small_data):
    """Same add/remove/add sequence on a plain twin that handles ids natively: same results."""
    s = small_data
    index = make(kind, s)
    index.train(s["xb"])
    flat = kind in ("FlatIP", "IDMap")
    twin = faiss.IndexIDMap2(faiss.IndexFlatIP(s["d"])) if flat else INNER[kind](s["d"])
    corrected = index.correction.transform(s["xb"])
    twin.train(corrected)
    for target, vectors in ((index, s["xb"]), (twin, corrected)):
        target.add_with_ids(vectors, np.arange(300) + 5000)
        assert target.remove_ids(np.arange(5000, 5150)) == 150
        target.add_with_ids(vectors[:100], np.arange(100) + 9000)
        set_probe(faiss.downcast_index(target.index) if flat else target)
    set_probe(index.index)
    D, I = index.search(s["xq"], 10)
    D0, I0 = twin.search(s["xq"], 10)
    assert_array_equal(I, I0)
    assert index.ntotal == 250
    assert set(index.stored_ids()) == set(range(5150, 5300)) | set(range(9000, 9100))
    assert_allclose(index.get_degrees([5299]), index.correction.correct(s["xb"][[299]])[1], atol=1e-6)


@pytest.mark.parametrize("kind", ["FlatIP", "IVFFlat"])
def test_remove_ids_sequential_renumbers_like_indexflat(kind, small_data):
    s = small_data
    index = make(kind, s)
    index.train(s["xb"])
    index.add(s["xb"])
    plain = faiss.IndexFlatIP(s["d"])
    plain.add(index.correction.transform(s["xb"]))
    removed = np.array([0, 5, 6, 100, 299])
    assert index.remove_ids(removed) == plain.remove_ids(removed) == 5
    set_probe(index.index)
    assert_array_equal(index.search(s["xq"], 10)[1], plain.search(s["xq"], 10)[1])
    index.add(s["xb"][:2])
    assert_array_equal(index.stored_ids(), np.arange(297))


def test_remove_ids_with_id_selector_then_ivf_direct_map(small_data):
    s = small_data
    index = make("IVFFlat", s)
    index.train(s["xb"])
    index.add_with_ids(s["xb"], np.arange(300) + 10)
    assert index.remove_ids(faiss.IDSelectorRange(10, 20)) == 10
    faiss.extract_index_ivf(index.index).make_direct_map()
    corrected = index.correction.transform(s["xb"])
    assert_allclose(index.reconstruct(25), corrected[15], atol=1e-7)
    assert_allclose(index.reconstruct(309), corrected[299], atol=1e-7)
    with pytest.raises(RuntimeError):
        index.reconstruct(12)


@pytest.mark.parametrize("map_type", ["Array", "Hashtable"])
def test_ivf_with_direct_map_refuses_remove_and_stays_unchanged(small_data, map_type):
    s = small_data
    index = make("IVFFlat", s)
    index.train(s["xb"])
    faiss.extract_index_ivf(index.index).set_direct_map_type(getattr(faiss.DirectMap, map_type))
    index.add(s["xb"])
    set_probe(index.index)
    before = index.search(s["xq"], 10)
    with pytest.raises(RuntimeError):
        index.remove_ids(np.arange(10))
    assert index.ntotal == 300 and index.index.ntotal == 300
    assert_array_equal(index.search(s["xq"], 10)[1], before[1])


def test_remove_unknown_ids_removes_nothing(small_data):
    s = small_data
    index = make("FlatIP", s)
    index.add(s["xb"])
    assert index.remove_ids(np.array([1000, 2000])) == 0
    assert index.ntotal == 300


def test_hnsw_remove_is_refused_by_faiss_and_index_unchanged(small_data):
    s = small_data
    index = make("HNSW", s)
    index.add(s["xb"])
    before = index.search(s["xq"], 5)
    with pytest.raises(RuntimeError):
        index.remove_ids(np.array([1, 2]))
    assert index.ntotal == 300
    assert_array_equal(index.search(s["xq"], 5)[1], before[1])


def test_reset_empties_and_allows_other_id_mode(small_data):
    s = small_data
    index = make("IVFFlat", s)
    index.train(s["xb"])
    index.add(s["xb"])
    index.reset()
    assert index.ntotal == 0 and index.index.ntotal == 0 and index.is_trained
    assert len(index.items) == 0
    index.add_with_ids(s["xb"][:10], np.arange(10) + 77)
    assert index.ntotal == 10


def test_id_modes_do_not_mix(small_data):
    s = small_data
    index = make("FlatIP", s)
    index.add(s["xb"][:10])
    with pytest.raises(ValueError, match="sequential ids"):
        index.add_with_ids(s["xb"][10:20], np.arange(10) + 100)
    other = make("FlatIP", s)
    other.add_with_ids(s["xb"][:10], np.arange(10) + 100)
    with pytest.raises(ValueError, match="add_with_ids"):
        other.add(s["xb"][10:20])


def test_index_factory_string(small_data):
    s = small_data
    index = invgc_faiss.index_factory(s["d"], "IVF8,Flat", IP, gallery_bank=s["bank_g"],
                                      query_bank=s["bank_q"], r_g=0.5, r_q=0.8, pool_rate=0.05)
    assert isinstance(index, InvGCIndex)
    assert isinstance(index.index, faiss.IndexIVFFlat)
    index.train(s["xb"])
    index.add(s["xb"])
    plain = plain_twin("IVFFlat", index, s)
    index.index.nprobe = plain.nprobe = 8
    assert_array_equal(index.search(s["xq"], 10)[1], plain.search(s["xq"], 10)[1])
    assert invgc_faiss.index_factory(s["d"], "Flat", gallery_bank=s["bank_g"]).metric_type == L2


def test_is_a_genuine_faiss_index(small_data):
    """faiss.clone_index and generic faiss helpers accept it; the clone holds corrected vectors."""
    s = small_data
    index = make("FlatIP", s)
    index.add(s["xb"])
    clone = faiss.clone_index(index)
    assert isinstance(clone, faiss.IndexIDMap2)
    assert_array_equal(clone.search(s["xq"], 5)[1], index.search(s["xq"], 5)[1])


def test_bank_index_may_be_ann(small_data):
    s = small_data
    exact = make("FlatIP", s)
    ann = make("FlatIP", s, gallery_bank_index="HNSW16", query_bank_index=faiss.IndexHNSWFlat(
        s["d"], 16, IP), bank_search_params="efSearch=64")  # "auto" would pick exact search here
    exact.add(s["xb"])
    ann.add(s["xb"])
    assert isinstance(ann.correction.offsets_[0].bank_index, faiss.IndexHNSWFlat)
    agree = (ann.search(s["xq"], 1)[1] == exact.search(s["xq"], 1)[1]).mean()
    assert agree > 0.9
