"""InvGC in Qdrant: corrected points in a collection, or a collection searched as it is.

Needs the extra ``qdrant`` (``qdrant-client``); the same code runs against a Qdrant server or
the client's local mode (``QdrantClient(path=...)``, used by the tests). Collections use the
``Dot`` distance, so scores are inner products ``q . x`` (store unit vectors, as InvGC's are).

* :class:`QdrantStore` (bake): ``create`` makes a collection whose metadata holds the fitted
  correction (key ``invgc_correction``: the bytes of
  :func:`invgc_faiss.persistence.correction_bytes`, base64), so ``open`` corrects later points
  the same way. ``add`` corrects every row and checks that no id is stored before it writes;
  Qdrant has no transactions, so if a write fails midway the points written by this call are
  deleted again: the collection keeps exactly the points it held.
* :class:`QdrantQuerySide` (no rebuild): an existing collection of raw vectors searched with
  ``q~ = q - rho (q . m) m``; with ``rescore=`` the raw and the projected query's candidates are
  read back (``with_vectors``) and scored exactly as ``q . x'``.
"""
import base64

import numpy as np

from ..persistence import correction_bytes
from ..rerank import DEFAULT_K_FACTOR
from ..validation import as_float_matrix, check_positive_int
from .common import QuerySideSearch, corrected_rows, required, saved_correction

METADATA_KEY = "invgc_correction"


def _models():
    """``QdrantClient`` and ``qdrant_client.models`` (an ``ImportError`` names the extra)."""
    (client_module,) = required("qdrant", "qdrant_client")
    return client_module.QdrantClient, client_module.models


def _checked_client(client):
    QdrantClient, _ = _models()
    if not isinstance(client, QdrantClient):
        raise TypeError(f"client must be a qdrant_client.QdrantClient, got "
                        f"{type(client).__name__}")
    return client


def collection_dimension(client, collection):
    """The vector size of ``collection`` (one unnamed vector, ``Dot`` or ``Cosine``);
    ``ValueError`` for a missing collection or another layout."""
    _, models = _models()
    if not client.collection_exists(collection):
        raise ValueError(f"collection {collection!r} does not exist")
    params = client.get_collection(collection).config.params.vectors
    if not isinstance(params, models.VectorParams):
        raise ValueError(f"collection {collection!r} has named vectors; one unnamed vector is "
                         "supported")
    if params.distance not in (models.Distance.DOT, models.Distance.COSINE):
        raise ValueError(f"collection {collection!r} uses {params.distance} distance; InvGC "
                         "ranks by inner product (Dot, or Cosine for unit vectors)")
    return int(params.size)


def _search(client, collection, queries, k):
    """Top ``k`` points by score for each query: ``(D, I)`` like faiss (-inf / -1 padding)."""
    _, models = _models()
    D = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    I = np.full((queries.shape[0], k), -1, dtype=np.int64)
    if not queries.shape[0]:
        return D, I
    requests = [models.QueryRequest(query=q.tolist(), limit=k) for q in queries]
    for i, response in enumerate(client.query_batch_points(collection, requests=requests)):
        points = response.points
        I[i, :len(points)] = [p.id for p in points]
        D[i, :len(points)] = [p.score for p in points]
    return D, I


class QdrantStore:
    """A Qdrant collection whose points InvGC corrects as they are added (module docstring).

    Build it with :meth:`create` (a new collection) or :meth:`open` (one ``create`` made).
    """

    def __init__(self, client, collection, correction):
        self.client, self.collection, self.correction = client, collection, correction

    @classmethod
    def create(cls, client, collection, correction):
        """A new ``Dot`` collection with ``correction`` (a fitted :class:`InvGC`) in its
        metadata; refuses a collection that exists."""
        _, models = _models()
        client = _checked_client(client)
        if getattr(correction, "offsets_", None) is None:
            raise ValueError("correction must be a fitted InvGC (call fit first)")
        if client.collection_exists(collection):
            raise ValueError(f"collection {collection!r} already exists: open it with "
                             "QdrantStore.open")
        saved = base64.b64encode(correction_bytes(correction)).decode("ascii")
        client.create_collection(collection, vectors_config=models.VectorParams(
            size=correction.d_, distance=models.Distance.DOT), metadata={METADATA_KEY: saved})
        return cls(client, collection, correction)

    @classmethod
    def open(cls, client, collection, device="cpu"):
        """The store of a collection :meth:`create` made, its correction read back."""
        client = _checked_client(client)
        d = collection_dimension(client, collection)
        metadata = client.get_collection(collection).config.metadata or {}
        if METADATA_KEY not in metadata:
            raise ValueError(f"no correction is saved in collection {collection!r}: it was not "
                             "made by QdrantStore.create (search it with QdrantQuerySide)")
        return cls(client, collection, saved_correction(
            base64.b64decode(metadata[METADATA_KEY]), d, f"in collection {collection!r}", device))

    def __len__(self):
        return self.client.count(self.collection, exact=True).count

    def add(self, vectors, ids=None, *, batch_size=4096, progress=None):
        """Correct ``vectors`` (n, d) and write them as points ``ids`` (n,), default
        ``len(self) ...``. An id already stored raises ``ValueError`` before anything is
        written; a write that fails midway is undone (module docstring)."""
        _, models = _models()
        corrected, ids = corrected_rows(self.correction, vectors, ids, len(self),
                                        batch_size=batch_size, progress=progress)
        taken = self.client.retrieve(self.collection, ids=ids.tolist(), with_payload=False)
        if taken:
            raise ValueError(f"{len(taken)} id(s) already stored in {self.collection!r}, e.g. "
                             f"{taken[0].id}; nothing was added")
        written = []
        try:
            for lo in range(0, len(ids), batch_size):
                batch = ids[lo:lo + batch_size].tolist()
                self.client.upsert(self.collection, points=models.Batch(
                    ids=batch, vectors=corrected[lo:lo + batch_size].tolist()), wait=True)
                written += batch
        except Exception:
            if written:
                self.client.delete(self.collection, wait=True,
                                   points_selector=models.PointIdsList(points=written))
            raise

    def search(self, queries, k):
        """``D, I``: the top ``k`` corrected points by ``q . x'`` for each query, like faiss."""
        queries = as_float_matrix(queries, self.correction.d_, name="queries", allow_empty=True)
        return _search(self.client, self.collection, queries, check_positive_int(k, "k"))


class QdrantQuerySide(QuerySideSearch):
    """An existing Qdrant collection of raw vectors searched with the query-side correction
    (:class:`invgc_faiss.stores.common.QuerySideSearch`).

    Parameters
    ----------
    client : qdrant_client.QdrantClient
    collection : str
    query_correction : fitted :class:`invgc_faiss.QueryCorrection`
    rescore : fitted :class:`invgc_faiss.InvGC`, optional
    k_factor : int
    """

    def __init__(self, client, collection, query_correction, *, rescore=None,
                 k_factor=DEFAULT_K_FACTOR):
        self.client, self.collection = _checked_client(client), collection
        self._setup(collection_dimension(self.client, collection),
                    f"collection {collection!r}", query_correction, rescore, k_factor)

    def _top(self, queries, k):
        return _search(self.client, self.collection, queries, k)

    def _vectors(self, ids):
        points = self.client.retrieve(self.collection, ids=ids.tolist(), with_vectors=True,
                                      with_payload=False)
        return (np.array([p.id for p in points], dtype=np.int64),
                np.array([p.vector for p in points], dtype=np.float32))
