"""What every store route shares: the engine's client modules, rows corrected in batches,
candidates rescored, progress."""
import importlib

import numpy as np

from ..persistence import correction_from_bytes
from ..rerank import MIN_CANDIDATES
from ..streaming import transform_in_batches
from ..validation import as_float_matrix, as_ids, check_positive_int


def required(extra, *modules):
    """``modules`` imported, or an ``ImportError`` naming the extra that installs them."""
    try:
        return [importlib.import_module(name) for name in modules]
    except ImportError as exc:
        raise ImportError(f"this store needs {', '.join(modules)}: pip install "
                          f"'invgc-faiss[{extra}]'") from exc


def saved_correction(data, d, where, device="cpu"):
    """The correction a store saved (the bytes of ``persistence.correction_bytes``), checked
    against the store's dimension ``d``; ``where`` names the table or collection."""
    correction = correction_from_bytes(data, device=device, what=f"the correction saved {where}")
    if correction.d_ != d:
        raise ValueError(f"the saved correction has dimension {correction.d_}, {where} has {d}")
    return correction


class _Named:
    """``correction`` whose ``transform`` names its input ``vectors`` in errors (validated once)."""

    def __init__(self, correction):
        self.correction = correction

    def transform(self, batch, start=0):
        return self.correction.correct(self.correction.check_input(batch, name="vectors"),
                                       start)[0]


def corrected_rows(correction, vectors, ids, next_id, *, batch_size, progress):
    """``(corrected rows float32 (n, d), ids int64 (n,))`` of ``vectors`` (any array slicing into
    batches; :func:`invgc_faiss.streaming.transform_in_batches`), every row checked before
    anything is written; ``ids`` None: ``next_id ...``."""
    n = len(vectors)
    ids = as_ids(np.arange(next_id, next_id + n, dtype=np.int64) if ids is None else ids, n)
    corrected = np.empty((n, correction.d_), dtype=np.float32)
    transform_in_batches(_Named(correction), vectors, corrected,
                         batch_size=check_positive_int(batch_size, "batch_size"),
                         progress=_progress(progress, n))
    return corrected, ids


def candidates_per_list(k, k_factor):
    """Candidates of each list (raw, projected) that rescoring reads: as rerank mode."""
    return max(k, MIN_CANDIDATES) * k_factor


def rescored(queries, candidates, ids, vectors, correction, k):
    """The top ``k`` of ``q . x'`` over each query's candidate ids (-1: none), ``x'`` the
    corrected ``vectors`` of ``ids`` (read back from the store): ``(D, I)`` like faiss."""
    corrected = correction.transform(vectors) if len(ids) else vectors
    order = np.argsort(ids)
    D = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    I = np.full((queries.shape[0], k), -1, dtype=np.int64)
    for i, q in enumerate(queries):
        mine = np.unique(candidates[i][candidates[i] >= 0])
        rows = order[np.searchsorted(ids, mine, sorter=order)]
        scores = corrected[rows] @ q
        best = np.argsort(-scores, kind="stable")[:k]
        D[i, :best.size], I[i, :best.size] = scores[best], mine[best]
    return D, I


def _progress(progress, total):
    """``progress`` itself (callable(n_done_increment, total)), a tqdm bar for ``True``, or
    None."""
    if progress is not True:
        return progress or None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, desc="correcting", unit="row")
    return lambda n, _total: bar.update(n)


class QuerySideSearch:
    """The no-rebuild route of every store: rows searched with ``q~ = q - rho (q . m) m``, or,
    with ``rescore`` (a fitted :class:`invgc_faiss.InvGC`), the raw and the projected query's
    ``k_factor * max(k, 10)`` candidates read back and scored exactly as ``q . x'``.

    An engine's subclass resolves its table in ``__init__``, calls :meth:`_setup`, and supplies
    ``_top(queries, k) -> (D, I)`` and ``_vectors(ids) -> (ids, vectors)``."""

    def _setup(self, d, where, query_correction, rescore, k_factor):
        query_correction._check_fitted()
        for what, fitted in (("query correction", query_correction),
                             ("rescoring correction", rescore)):
            if fitted is not None and fitted.d_ != d:
                raise ValueError(f"the {what} has dimension {fitted.d_}, {where} has {d}")
        self.query_correction, self.rescore, self.d = query_correction, rescore, d
        self.k_factor = check_positive_int(k_factor, "k_factor")

    def search(self, queries, k):
        """``D, I`` like faiss: ranked by ``q~ . x``, or with ``rescore`` by ``q . x'`` over
        the candidates."""
        queries = as_float_matrix(queries, self.d, name="queries", allow_empty=True)
        k = check_positive_int(k, "k")
        projected = self.query_correction.transform(queries)
        if self.rescore is None:
            return self._top(projected, k)
        n = candidates_per_list(k, self.k_factor)
        candidates = np.hstack([self._top(queries, n)[1], self._top(projected, n)[1]])
        wanted = np.unique(candidates[candidates >= 0])
        ids, vectors = (self._vectors(wanted) if wanted.size
                        else (np.empty(0, np.int64), np.empty((0, self.d), np.float32)))
        return rescored(queries, candidates, ids, vectors.reshape(-1, self.d), self.rescore, k)
