"""Rerank mode's candidates (raw, projected, union) against a dense float64 reference, on hubby data
where the raw candidates miss the corrected top-1."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from invgc_faiss import InvGCRerankIndex
from invgc_faiss.rerank import MIN_CANDIDATES
from tests.helpers import dense_reference as ref
from tests.helpers.data import unit_rows

K, K_FACTOR = 5, 2
N_CANDIDATES = max(K, MIN_CANDIDATES) * K_FACTOR  # per list; raw ones: K * K_FACTOR (IndexRefine)


def paired(rng, n, d, a, g):
    """Query/gallery pairs in two cones (axes ``a`` and ``g``), gallery rows leaning toward the
    query axis by a random amount: those are hubs that crowd the raw ranking."""
    z = rng.standard_normal((n, d)) / np.sqrt(d)
    lean = 0.3 * rng.standard_normal((n, 1)) ** 2
    x = unit_rows(1.2 * g + z + lean * a + 0.3 * rng.standard_normal((n, d)) / np.sqrt(d))
    q = unit_rows(1.2 * a + z + 0.3 * rng.standard_normal((n, d)) / np.sqrt(d))
    return q, x


@pytest.fixture
def hubby():
    rng = np.random.default_rng(0)
    d = 16
    a, g = unit_rows(rng.standard_normal((2, d)))
    xq, xb = paired(rng, 300, d, a, g)
    bank_q, bank_g = paired(rng, 200, d, a, g)
    return {"d": d, "xq": xq[:40], "xb": xb, "bank_q": bank_q, "bank_g": bank_g}


def top_n(scores, n):
    return np.argsort(-scores, axis=1, kind="stable")[:, :n]


def expected_results(s, corrected, candidates, n):
    """Top K of the corrected scores over each query's candidates, from dense float64."""
    q, x = s["xq"].astype(np.float64), s["xb"].astype(np.float64)
    m = s["bank_q"].astype(np.float64).mean(axis=0)
    m /= np.linalg.norm(m)
    pools = {"raw": [top_n(q @ x.T, n)], "projected": [top_n((q - np.outer(q @ m, m)) @ x.T, n)]}
    pools["union"] = pools["raw"] + pools["projected"]
    S = q @ corrected.T
    I = np.array([sorted(set(np.concatenate([p[i] for p in pools[candidates]]).tolist()),
                         key=lambda j: -S[i, j])[:K] for i in range(len(q))])
    return np.take_along_axis(S, I, axis=1), I, S


FORMS = {"projection": ({"rho_q": 1.0}, lambda s: ref.projection_invgc(s["xb"], [s["bank_q"]],
                                                                      [1.0], 0.2)),
         "paper": ({"r_q": 1.5}, lambda s: ref.invgc(s["xb"], [s["bank_q"]], [1.5], "localadj",
                                                     0.2))}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("candidates", ["raw", "projected", "union"])
@pytest.mark.parametrize("inner", ["flat ip", "flat l2", "ivf ip"])
def test_candidates_match_the_dense_reference(hubby, form, candidates, inner):
    """Flat IP takes both lists from one product (rerank._flat_candidates); the others search
    the inner index with the raw and the projected queries (an IVF probing every list: exact)."""
    s = hubby
    rates, reference = FORMS[form]
    metric = inner.split()[1]
    factory = "IVF4,Flat" if inner.startswith("ivf") else "Flat"
    inner_index = faiss.index_factory(s["d"], factory, faiss.METRIC_INNER_PRODUCT
                                      if metric == "ip" else faiss.METRIC_L2)
    index = InvGCRerankIndex(inner_index, query_bank=s["bank_q"], pool_rate=0.2,
                             k_factor=K_FACTOR, candidates=candidates, offset_dtype="float32",
                             **rates)
    index.train(s["xb"])
    index.add(s["xb"])
    if factory != "Flat":
        index.index.nprobe = 4
    D, I = index.search(s["xq"], K)
    D_ref, I_ref, _ = expected_results(s, reference(s), candidates,
                                       K * K_FACTOR if candidates == "raw" else N_CANDIDATES)
    assert_array_equal(I, I_ref)
    if metric == "l2":
        D_ref = (s["xq"].astype(np.float64) ** 2).sum(axis=1, keepdims=True) + 1 - 2 * D_ref
    assert_allclose(D, D_ref, atol=2e-5)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_projected_candidates_find_the_corrected_top1_that_raw_ones_miss(hubby, form):
    s = hubby
    rates, reference = FORMS[form]
    _, _, S = expected_results(s, reference(s), "raw", N_CANDIDATES)
    top1 = S.argmax(axis=1)
    raw_pool = top_n(s["xq"].astype(np.float64) @ s["xb"].T.astype(np.float64), N_CANDIDATES)
    missed = ~(raw_pool == top1[:, None]).any(axis=1)
    assert missed.sum() >= 5  # the data does what it is for
    found = {}
    for candidates in ("raw", "projected", "union"):
        index = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"],
                                 pool_rate=0.2, k_factor=K_FACTOR, candidates=candidates, **rates)
        index.add(s["xb"])
        found[candidates] = index.search(s["xq"], K)[1][:, 0] == top1
    assert not found["raw"][missed].any()
    assert found["projected"][missed].sum() >= missed.sum() // 2
    assert found["union"].sum() >= max(found["raw"].sum(), found["projected"].sum())


def test_union_returns_each_item_once_and_plain_rates_use_raw_candidates(hubby):
    s = hubby
    index = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"], k_factor=1)
    index.add(s["xb"])
    D, I = index.search(s["xq"], 20)
    assert all(len(set(row)) == 20 for row in I.tolist()) and (np.diff(D, axis=1) <= 0).all()
    D10, I10 = index.search(s["xq"], 10)  # k <= 10 share the candidates of k = 10
    for k in (1, 3):
        D_k, I_k = index.search(s["xq"], k)
        assert_array_equal(I_k, I10[:, :k])
        assert_array_equal(D_k, D10[:, :k])
    plain = faiss.IndexFlatIP(s["d"])
    plain.add(s["xb"])
    index.set_rates(rho_q=0.0)
    assert_array_equal(index.search(s["xq"], 10)[1], plain.search(s["xq"], 10)[1])


def test_the_axis_is_the_query_bank_mean_else_the_gallery_bank_mean(hubby):
    s = hubby
    for banks, bank in (({"query_bank": s["bank_q"], "gallery_bank": s["bank_g"]}, s["bank_q"]),
                        ({"gallery_bank": s["bank_g"], "rho_g": 1.0}, s["bank_g"])):
        index = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), **banks)
        m = bank.astype(np.float64).mean(axis=0)
        assert_allclose(index.axis_, m / np.linalg.norm(m), atol=1e-6)
        index.add(s["xb"][:7])
        assert_allclose(index.items.columns["axis_dots"][:, 0], s["xb"][:7] @ index.axis_,
                        atol=1e-6)
    assert InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"],
                            candidates="raw").axis_ is None


def test_bad_candidates_and_a_raw_index_asked_for_projected_ones(hubby):
    s = hubby
    with pytest.raises(ValueError, match="candidates must be one of"):
        InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"], candidates="all")
    index = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"], candidates="raw")
    index.add(s["xb"])
    index.candidates = "union"
    with pytest.raises(ValueError, match="keep"):
        index.search(s["xq"], 5)


@pytest.mark.parametrize("candidates", ["projected", "raw"])
def test_files_keep_the_candidates_and_the_axis(tmp_path, hubby, candidates):
    s = hubby
    index = InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), query_bank=s["bank_q"], k_factor=2,
                             candidates=candidates)
    index.add(s["xb"])
    invgc_faiss.write_index(index, tmp_path / "r.invgc")
    loaded = invgc_faiss.read_index(tmp_path / "r.invgc")
    assert loaded.candidates == candidates and loaded.k_factor == 2
    if candidates == "raw":
        assert loaded.axis_ is None
    else:
        assert_array_equal(loaded.axis_, index.axis_)
    for a, b in zip(index.search(s["xq"], 5), loaded.search(s["xq"], 5)):
        assert_array_equal(a, b)
