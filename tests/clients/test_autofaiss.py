"""autofaiss-built indexes: rerank mode attached to the index autofaiss returns (and its
memory-mapped vectors), and the baked route (corrected vectors written to a .npy that autofaiss
indexes). Both are checked against InvGC applied by hand (dense reference) on sample queries.

autofaiss pins numpy<2: extra `autofaiss`, run in its own environment (README, .ci/run).
"""
import importlib.util
import logging

import numpy as np
import pytest

from tests.helpers import dense_reference as ref
import invgc_faiss
from tests.helpers.data import cone, unit_rows

pytestmark = pytest.mark.skipif(importlib.util.find_spec("autofaiss") is None,
                                reason="needs the autofaiss extra (numpy<2 environment)")

N, DIM, M = 20000, 32, 2000
RHO_Q, POOL = 1.0, 0.2  # the defaults: projection form on the query bank


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(8)
    axis = unit_rows(rng.standard_normal((1, DIM)))[0]
    folder = tmp_path_factory.mktemp("embeddings")
    np.save(folder / "part0.npy", cone(rng, N, DIM, 0.3, axis))
    return {"folder": folder, "gallery": np.load(folder / "part0.npy", mmap_mode="r"),
            "bank_q": cone(rng, M, DIM, 0.3, axis), "xq": cone(rng, 40, DIM, 0.3, axis),
            "tmp": tmp_path_factory.mktemp("indexes")}


def autofaiss_index(folder, tmp, name):
    from autofaiss import build_index

    index, _ = build_index(embeddings=str(folder), index_path=str(tmp / f"{name}.index"),
                           index_infos_path=str(tmp / f"{name}.json"), metric_type="ip",
                           max_index_memory_usage="1G", current_memory_available="2G",
                           verbose=logging.ERROR)
    return index


def exact_top(s, k):
    """Top-k ids of exact InvGC search over the whole gallery (dense reference), (nq, k)."""
    corrected = ref.projection_invgc(np.asarray(s["gallery"]), [s["bank_q"]], [RHO_Q], POOL)
    return np.argsort(-(s["xq"].astype(np.float64) @ corrected.T), axis=1)[:, :k]


def check_against_by_hand(s, D, I):
    """Scores equal q . x' with x' by hand for the returned rows; most of the exact top-10 found."""
    rows = np.asarray(s["gallery"])[I.ravel()]
    by_hand = ref.projection_invgc(rows, [s["bank_q"]], [RHO_Q], POOL).reshape(I.shape + (DIM,))
    np.testing.assert_allclose(D, np.einsum("qd,qkd->qk", s["xq"].astype(np.float64), by_hand),
                               atol=1e-5)
    assert np.all(np.diff(D, axis=1) <= 1e-6)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, exact_top(s, 10))])
    assert recall >= 0.9, recall


def test_rerank_mode_on_the_index_autofaiss_built(data):
    s = data
    built = autofaiss_index(s["folder"], s["tmp"], "plain")
    assert built.ntotal == N
    index = invgc_faiss.InvGCRerankIndex.from_existing(
        built, vectors=s["gallery"], query_bank=s["bank_q"], offset_dtype="float32")
    D, I = index.search(s["xq"], 10)
    check_against_by_hand(s, D, I)


def test_baked_vectors_indexed_by_autofaiss(data):
    s = data
    correction = invgc_faiss.InvGC().fit(query_bank=s["bank_q"])
    folder = s["tmp"] / "corrected"
    folder.mkdir()
    out = np.lib.format.open_memmap(folder / "part0.npy", "w+", np.float32, (N, DIM))
    invgc_faiss.transform_in_batches(correction, s["gallery"], out, batch_size=4096)
    out.flush()
    sample = np.arange(0, N, 97)
    np.testing.assert_allclose(
        out[sample], ref.projection_invgc(np.asarray(s["gallery"])[sample], [s["bank_q"]],
                                          [RHO_Q], POOL), atol=1e-5)
    del out
    built = autofaiss_index(folder, s["tmp"], "baked")
    D, I = built.search(s["xq"], 10)
    check_against_by_hand(s, D, I)
