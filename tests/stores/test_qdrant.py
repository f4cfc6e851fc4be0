"""Qdrant routes in the client's local mode (the same API as a server): the bake route equals
InvGC applied by hand, the no-rebuild route equals the faiss query-side wrapper and rerank mode,
and a failed add leaves the collection exactly as it was."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from invgc_faiss import QueryCorrection
from tests.helpers.data import cone_data
from tests.helpers.stores import assert_no_rebuild_route_matches, fitted

qdrant_client = pytest.importorskip("qdrant_client")
store_module = pytest.importorskip("invgc_faiss.stores.qdrant")
models = qdrant_client.models


@pytest.fixture
def client(tmp_path):
    c = qdrant_client.QdrantClient(path=str(tmp_path / "qdrant"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def data():
    return cone_data(5, 16, 200, 30, 150, 150)


def flat_search(index, s, k=5):
    index.add(s["xb"])
    return index.search(s["xq"], k)


def test_bake_route_equals_invgc_index_and_reopens(client, data):
    s = data
    correction = fitted(s)
    store = store_module.QdrantStore.create(client, "gallery", correction)
    store.add(s["xb"][:120], batch_size=50)
    store.add(s["xb"][120:])
    assert len(store) == 200
    D_ref, I_ref = flat_search(invgc_faiss.InvGCIndex(faiss.IndexFlatIP(16),
                                                      correction=correction), s)
    D, I = store.search(s["xq"], 5)
    assert_array_equal(I, I_ref)
    assert_allclose(D, D_ref, atol=1e-5)
    reopened = store_module.QdrantStore.open(client, "gallery")
    assert_allclose(reopened.correction.transform(s["xq"]), correction.transform(s["xq"]),
                    atol=1e-6)


def points(client):
    records, _ = client.scroll("gallery", limit=1000, with_vectors=True)
    return sorted((r.id, tuple(r.vector)) for r in records)


def test_a_failed_add_leaves_the_collection_as_it_was(client, data, monkeypatch):
    s = data
    store = store_module.QdrantStore.create(client, "gallery", fitted(s))
    store.add(s["xb"][:50])
    before = points(client)
    with pytest.raises(ValueError, match="already stored"):
        store.add(s["xb"][50:60], np.arange(45, 55))
    bad = s["xb"][50:60].copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="vectors"):
        store.add(bad)
    real_upsert, calls = client.upsert, []

    def failing_upsert(*args, **kwargs):  # the second batch's write fails
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("lost the server")
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(client, "upsert", failing_upsert)
    with pytest.raises(ConnectionError):
        store.add(s["xb"][50:100], batch_size=20)
    assert points(client) == before
    assert client.get_collection("gallery").config.metadata[store_module.METADATA_KEY]


def test_clear_errors(client, data):
    s = data
    with pytest.raises(ValueError, match="does not exist"):
        store_module.QdrantStore.open(client, "gallery")
    client.create_collection("raw", vectors_config=models.VectorParams(
        size=8, distance=models.Distance.DOT))
    with pytest.raises(ValueError, match="no correction is saved"):
        store_module.QdrantStore.open(client, "raw")
    with pytest.raises(ValueError, match="dimension 16.*has 8"):
        store_module.QdrantQuerySide(client, "raw", QueryCorrection().fit(s["bank_q"]))
    client.create_collection("euclid", vectors_config=models.VectorParams(
        size=16, distance=models.Distance.EUCLID))
    with pytest.raises(ValueError, match="inner product"):
        store_module.QdrantQuerySide(client, "euclid", QueryCorrection().fit(s["bank_q"]))
    store_module.QdrantStore.create(client, "gallery", fitted(s))
    with pytest.raises(ValueError, match="already exists"):
        store_module.QdrantStore.create(client, "gallery", fitted(s))
    with pytest.raises(TypeError, match="QdrantClient"):
        store_module.QdrantStore.create("http://nowhere", "other", fitted(s))


@pytest.mark.parametrize("rescore", [False, True])
def test_no_rebuild_route_equals_query_corrected_and_rerank_mode(client, data, rescore):
    client.create_collection("raw", vectors_config=models.VectorParams(
        size=16, distance=models.Distance.DOT))
    client.upsert("raw", points=models.Batch(ids=list(range(200)), vectors=data["xb"].tolist()))
    assert_no_rebuild_route_matches(lambda side, rescoring: store_module.QdrantQuerySide(
        client, "raw", side, k_factor=1, rescore=rescoring), data, rescore)
