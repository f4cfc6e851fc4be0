"""Each peer matches a dense numpy implementation of its formula (docs/science.md §6)."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from invgc_faiss.lab import baselines
from invgc_faiss.lab.methods import METHODS


def dense_topk_mean(x, bank, k):
    s = x.astype(np.float64) @ bank.T.astype(np.float64)
    return np.sort(s, axis=1)[:, ::-1][:, :k].mean(axis=1)


def dense_logsumexp(x, bank, beta):
    s = beta * (x.astype(np.float64) @ bank.T.astype(np.float64))
    return np.log(np.exp(s).sum(axis=1))


def assert_ranks_like(index, scores):
    """The index's full ranking equals argsort of the dense score matrix (scores distinct)."""
    nq, n = scores.shape
    D, I = index.search(QUERIES, n)
    assert_array_equal(I, np.argsort(-scores, axis=1, kind="stable"))


RNG = np.random.default_rng(3)


def _unit(n, d):
    x = RNG.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


D_ = 12
GALLERY, QUERIES, QBANK, GBANK = _unit(60, D_), _unit(25, D_), _unit(80, D_), _unit(70, D_)
S = QUERIES.astype(np.float64) @ GALLERY.T.astype(np.float64)


@pytest.mark.parametrize("alpha, k", [(0.75, 5), (1.0, 1), (0.25, 80)])
def test_nnn_scores(alpha, k):
    build = METHODS["nnn"][1]({"alpha": alpha, "k": k}, QBANK, GBANK)
    index = build(D_)
    index.add(GALLERY)
    expected = S - alpha * dense_topk_mean(GALLERY, QBANK, k)[None, :]
    D, I = index.search(QUERIES, 60)
    assert_allclose(D, np.take_along_axis(expected, I, axis=1), atol=1e-5)
    assert_ranks_like(index, expected)


def test_csls_ranks_like_its_formula():
    k = 7
    index = METHODS["csls"][1]({"k": k}, QBANK, GBANK)(D_)
    index.add(GALLERY)
    r_x = dense_topk_mean(GALLERY, QBANK, k)
    r_q = dense_topk_mean(QUERIES, GBANK, k)  # query-side term: constant within a row
    csls = 2 * S - r_q[:, None] - r_x[None, :]
    assert_ranks_like(index, csls)


@pytest.mark.parametrize("beta1, beta2", [(1.0, 5.0), (20.0, 20.0)])
def test_dbnorm_ranks_like_its_formula(beta1, beta2):
    index = METHODS["dbnorm"][1]({"beta1": beta1, "beta2": beta2}, QBANK, GBANK)(D_)
    index.add(GALLERY)
    log_scores = ((beta1 + beta2) * S - dense_logsumexp(GALLERY, QBANK, beta1)[None, :]
                  - dense_logsumexp(GALLERY, GBANK, beta2)[None, :])
    assert_ranks_like(index, log_scores)
    D, I = index.search(QUERIES, 60)
    assert_allclose(D, np.take_along_axis(log_scores / (beta1 + beta2), I, axis=1), atol=1e-5)


def test_log_sum_exp_is_stable_for_large_beta():
    got = baselines.log_sum_exp_similarity(GALLERY, QBANK, 500.0)
    s = 500.0 * (GALLERY.astype(np.float64) @ QBANK.T.astype(np.float64))
    top = s.max(axis=1)
    assert_allclose(got, top + np.log(np.exp(s - top[:, None]).sum(axis=1)), rtol=1e-6)
    assert np.isfinite(got).all()


def dense_qb_norm(scores, bank_scores, beta):
    """Dynamic inverted softmax (Bogolin et al.): normalize a query's row when its top-1 item is
    the top-1 of some bank query."""
    active = np.zeros(scores.shape[1], dtype=bool)
    active[bank_scores.argmax(axis=1)] = True
    log_z = np.log(np.exp(beta * bank_scores).sum(axis=0))
    out = scores.copy()
    rows = active[scores.argmax(axis=1)]
    out[rows] = beta * scores[rows] - log_z[None, :]
    return out, rows


@pytest.mark.parametrize("beta", [5.0, 20.0])
def test_qb_norm_reranks_like_dense_formula(beta):
    index = METHODS["qb_norm"][1]({"beta": beta, "k_factor": 100}, QBANK, GBANK)(D_)
    index.add(GALLERY)
    bank_scores = QBANK.astype(np.float64) @ GALLERY.T.astype(np.float64)
    expected, rows = dense_qb_norm(S, bank_scores, beta)
    assert 0 < rows.sum() < len(rows)  # both kinds of query occur
    assert_ranks_like(index, expected)


def test_qb_norm_pads_like_faiss_and_recomputes_activation_after_add():
    index = baselines.QueryBankNormIndex(D_, QBANK, beta=20.0, k_factor=2)
    index.add(GALLERY[:3])
    D, I = index.search(QUERIES[:2], 5)
    assert (I[:, 3:] == -1).all() and (I[:, :3] >= 0).all()
    index.add(GALLERY[3:])
    assert index.activation_set().shape == (60,)


def test_plain_is_flat_inner_product():
    index = METHODS["plain"][1]({}, QBANK, GBANK)(D_)
    index.add(GALLERY)
    assert_ranks_like(index, S)
