"""Projected bank index: bank top-k from a low-dimensional projection, reranked exactly.

The bank spec ``"Proj{m}"`` (e.g. ``query_bank_index="Proj64"``) builds a plain faiss index:

    P = the top-m eigenvectors of the bank's *uncentred* second moment  B^T B / M,  (m, d)
    candidates(x) = the top k * k_factor bank rows by  (P x) . (P b_j)   (IndexFlatIP in m dims)
    result(x)     = the top k candidates by the exact  x . b_j            (IndexRefineFlat)

so the similarities that weight the offsets are exact; only which rows make the top k is
approximate, and ``k_factor_rf`` (faiss ``ParameterSpace`` name; ``bank_search_params="auto"``
calibrates it) trades that recall for time. The flat search in m dims is one BLAS product, m/d of
the exact one; the rerank reads k * k_factor bank rows per gallery row, so the index pays when the
bank is large, k small and the bank's spectrum decays fast (little energy beyond m dims).

Why not faiss's ``"PCA64,Flat,RFlat"``: faiss's PCA centres both sides, and for inner products
``(x - mu) . (b - mu)`` ranks the bank by ``x . b - mu . b``, not by ``x . b``: with the cone that
dual-encoder embeddings sit in (large ``mu``), the candidates miss most of the true top k. The
uncentred projection keeps the ranking of ``x . b`` (exactly when m = d: P is then a rotation).
"""
import re

import faiss
import numpy as np

PROJECTED_SPEC = re.compile(r"Proj(\d+)")
#: The accuracy knob of a projected bank index (faiss ParameterSpace name of IndexRefine.k_factor)
KNOB = "k_factor_rf"


def projected_dimension(spec):
    """m for a ``"Proj{m}"`` spec, None for any other spec."""
    match = PROJECTED_SPEC.fullmatch(spec) if isinstance(spec, str) else None
    return int(match.group(1)) if match else None


def uncentred_projection(bank, m):
    """The top-``m`` eigenvectors of ``B^T B`` (accumulated in float64) as rows, float32 (m, d),
    and the share of the bank's energy ``sum_j |b_j|^2`` they keep."""
    bank64 = bank.astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(bank64.T @ bank64)  # ascending
    top = eigenvectors[:, ::-1][:, :m].T
    kept = float(eigenvalues[::-1][:m].sum() / eigenvalues.sum())
    return np.ascontiguousarray(top, dtype=np.float32), kept


def projected_bank_index(bank, m, k_factor=1):
    """A faiss index over ``bank`` (M, d) float32 for the spec ``"Proj{m}"`` (module docstring).

    Returns
    -------
    faiss.IndexRefineFlat over an ``IndexPreTransform(LinearTransform(d -> m), IndexFlatIP(m))``,
    holding the bank rows in order; ``faiss.write_index``/``serialize_index`` store it as any
    faiss index.
    """
    d = bank.shape[1]
    if not 1 <= m <= d:
        raise ValueError(f"bank index 'Proj{m}': the projection needs 1 <= m <= d = {d}")
    top, _ = uncentred_projection(bank, m)
    transform = faiss.LinearTransform(d, m, False)
    faiss.copy_array_to_vector(top.ravel(), transform.A)
    transform.is_trained = True
    flat = faiss.IndexFlatIP(m)
    projected = faiss.IndexPreTransform(transform, flat)
    index = faiss.IndexRefineFlat(projected)
    # the C++ objects own their parts, so no Python wrapper has to outlive them
    for part in (transform, flat, projected):
        part.this.disown()
    projected.own_fields = index.own_fields = True
    index.k_factor = k_factor
    index.add(bank)
    return index
