"""LanceDB routes on a temporary folder: the bake route equals InvGC applied by hand, the
no-rebuild route equals the faiss query-side wrapper and rerank mode, and a refused add leaves
the table at the version it was."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from invgc_faiss import QueryCorrection
from tests.helpers.data import cone_data
from tests.helpers.stores import assert_no_rebuild_route_matches, fitted

lancedb = pytest.importorskip("lancedb")
pa = pytest.importorskip("pyarrow")
store_module = pytest.importorskip("invgc_faiss.stores.lancedb")


@pytest.fixture
def db(tmp_path):
    return lancedb.connect(str(tmp_path / "lance"))


@pytest.fixture(scope="module")
def data():
    return cone_data(7, 16, 200, 30, 150, 150)


def raw_table(db, rows, name="raw"):
    return db.create_table(name, pa.table({
        "id": pa.array(np.arange(len(rows)), pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), rows.shape[1])}))


def test_bake_route_equals_invgc_index_and_reopens(db, data):
    s = data
    correction = fitted(s)
    store = store_module.LanceStore.create(db, "gallery", correction)
    store.add(s["xb"][:120])
    store.add(s["xb"][120:], np.arange(120, 200))
    assert len(store) == 200
    index = invgc_faiss.InvGCIndex(faiss.IndexFlatIP(16), correction=correction)
    index.add(s["xb"])
    D_ref, I_ref = index.search(s["xq"], 5)
    D, I = store.search(s["xq"], 5)
    assert_array_equal(I, I_ref)
    assert_allclose(D, D_ref, atol=1e-5)
    reopened = store_module.LanceStore.open(db, "gallery")
    assert_allclose(reopened.correction.transform(s["xq"]), correction.transform(s["xq"]),
                    atol=1e-6)


def test_a_refused_add_leaves_the_table_at_its_version(db, data):
    s = data
    store = store_module.LanceStore.create(db, "gallery", fitted(s))
    store.add(s["xb"][:50])
    version = store.table.version
    with pytest.raises(ValueError, match="already stored"):
        store.add(s["xb"][50:60], np.arange(45, 55))
    bad = s["xb"][50:60].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="vectors"):
        store.add(bad)
    assert store.table.version == version and len(store) == 50


def test_clear_errors(db, data):
    s = data
    with pytest.raises(ValueError, match="does not exist"):
        store_module.LanceStore.open(db, "gallery")
    raw_table(db, s["xb"][:, :8])
    with pytest.raises(ValueError, match="no correction is saved"):
        store_module.LanceStore.open(db, "raw")
    with pytest.raises(ValueError, match="dimension 16.*has 8"):
        store_module.LanceQuerySide(db, "raw", QueryCorrection().fit(s["bank_q"]))
    store_module.LanceStore.create(db, "gallery", fitted(s))
    with pytest.raises(ValueError, match="already exists"):
        store_module.LanceStore.create(db, "gallery", fitted(s))
    with pytest.raises(TypeError, match="lancedb connection"):
        store_module.LanceStore.create("/nowhere", "other", fitted(s))


@pytest.mark.parametrize("rescore", [False, True])
def test_no_rebuild_route_equals_query_corrected_and_rerank_mode(db, data, rescore):
    raw_table(db, data["xb"])
    assert_no_rebuild_route_matches(lambda side, rescoring: store_module.LanceQuerySide(
        db, "raw", side, k_factor=1, rescore=rescoring), data, rescore)
