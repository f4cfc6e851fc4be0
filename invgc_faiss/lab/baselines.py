"""Peers that the benchmarks compare InvGC against (docs/science.md §6), in faiss's shape.

Two kinds, by what they need at search time:

* **Per-item score biases**, computed once per gallery item at add time, so search stays one
  faiss call: the bias is folded into one extra dimension, ``[x, -b(x)] . [q, 1] = q.x - b(x)``
  (:class:`ScoreBiasIndex`; queries gain the constant column, nothing else).

  - NNN (Chowdhury et al. 2024): ``b(x) = alpha * mean of x's top-k similarities to the query bank``.
  - CSLS (Conneau et al. 2018): ``2 cos(q, x) - r_q(q) - r_x(x)`` with ``r_x(x)`` the mean of x's
    top-k similarities to the query bank. ``r_q(q)`` is constant within one query's ranking, so
    CSLS ranks exactly as ``q.x - r_x(x) / 2``: NNN with ``alpha = 1/2``.
  - Inverted softmax over a query bank (the non-dynamic QB-Norm, Bogolin et al. 2022):
    ``exp(beta q.x) / sum_b exp(beta b.x)`` ranks as ``q.x - logsumexp_b(beta b.x) / beta``.
  - DBNorm (Wang et al. 2023, dual banks): the product of the query-bank and the gallery-bank
    inverted softmax, ``exp((beta1 + beta2) q.x) / (Z_q(x) Z_g(x))`` with
    ``Z_q(x) = sum_{b in B_q} exp(beta1 b.x)`` and ``Z_g(x) = sum_{b in B_g} exp(beta2 b.x)``:
    ranks as ``q.x - (log Z_q(x) + log Z_g(x)) / (beta1 + beta2)``.

* **Rerankers** that need a query's whole candidate row: QB-Norm with the dynamic inverted softmax
  (:class:`QueryBankNormIndex`). A query is normalized only when its raw top-1 item lies in the
  activation set (items that are the raw top-1 of some bank query); it fetches ``k * k_factor``
  raw candidates, rescales them and cuts to ``k`` (the faiss ``IndexRefine`` pattern), and the
  activation set costs a pass of the bank over the gallery whenever the gallery changed.
"""
import faiss
import numpy as np

SIMILARITY_BATCH = 4096


def topk_mean_similarity(x, bank, k):
    """Mean of each row's ``k`` largest inner products with ``bank``; float64 (n,)."""
    index = faiss.IndexFlatIP(bank.shape[1])
    index.add(bank)
    sims, _ = index.search(x, k)
    return sims.astype(np.float64).mean(axis=1)


def log_sum_exp_similarity(x, bank, beta):
    """``log sum_b exp(beta * x . b)`` for each row of ``x``, stable, batched; float64 (n,)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], SIMILARITY_BATCH):
        scores = beta * (x[start:start + SIMILARITY_BATCH] @ bank.T).astype(np.float64)
        top = scores.max(axis=1)
        out[start:start + SIMILARITY_BATCH] = top + np.log(np.exp(scores - top[:, None]).sum(axis=1))
    return out


def nnn_bias(query_bank, alpha, k):
    """NNN / CSLS bias function ``x -> alpha * mean top-k similarity to the query bank``."""
    return lambda x: alpha * topk_mean_similarity(x, query_bank, k)


def inverted_softmax_bias(query_bank, beta):
    """Inverted-softmax bias function ``x -> logsumexp_b(beta b.x) / beta``."""
    return lambda x: log_sum_exp_similarity(x, query_bank, beta) / beta


def dbnorm_bias(query_bank, gallery_bank, beta1, beta2):
    """DBNorm bias function ``x -> (log Z_q(x) + log Z_g(x)) / (beta1 + beta2)``."""
    return lambda x: (log_sum_exp_similarity(x, query_bank, beta1)
                      + log_sum_exp_similarity(x, gallery_bank, beta2)) / (beta1 + beta2)


class ScoreBiasIndex:
    """Flat inner-product index scoring ``q.x - b(x)``, the bias folded into one extra dimension.

    Parameters
    ----------
    d : int
    bias : callable ndarray (n, d) float32 -> ndarray (n,), computed at add time
    """

    def __init__(self, d, bias):
        self.d = d
        self.bias = bias
        self.index = faiss.IndexFlatIP(d + 1)
        self.is_trained = True

    @property
    def ntotal(self):
        return self.index.ntotal

    def add(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.index.add(np.hstack([x, -self.bias(x)[:, None].astype(np.float32)]))

    def search(self, q, k):
        q = np.ascontiguousarray(q, dtype=np.float32)
        return self.index.search(np.hstack([q, np.ones((q.shape[0], 1), np.float32)]), k)


class QueryBankNormIndex:
    """QB-Norm with the dynamic inverted softmax, as a reranker over a flat index.

    Parameters
    ----------
    d : int
    query_bank : ndarray of shape (M, d), float32
    beta : float
    k_factor : int
        Raw candidates fetched per requested result.
    """

    def __init__(self, d, query_bank, beta=20.0, k_factor=8):
        self.d = d
        self.query_bank = query_bank
        self.beta = float(beta)
        self.k_factor = int(k_factor)
        self.index = faiss.IndexFlatIP(d)
        self.is_trained = True
        self.log_z = np.zeros(0)
        self.active = np.zeros(0, dtype=bool)
        self.active_for_ntotal = -1

    @property
    def ntotal(self):
        return self.index.ntotal

    def add(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.log_z = np.concatenate([self.log_z, log_sum_exp_similarity(x, self.query_bank, self.beta)])
        self.index.add(x)

    def activation_set(self):
        """Items that are the raw top-1 of some bank query (recomputed when the gallery changed)."""
        if self.active_for_ntotal != self.ntotal:
            _, top1 = self.index.search(self.query_bank, 1)
            self.active = np.zeros(self.ntotal, dtype=bool)
            self.active[top1[top1 >= 0]] = True
            self.active_for_ntotal = self.ntotal
        return self.active

    def search(self, q, k):
        q = np.ascontiguousarray(q, dtype=np.float32)
        n_candidates = min(self.ntotal, k * self.k_factor)
        D, I = self.index.search(q, n_candidates)
        normalize = self.activation_set()[I[:, 0]]
        scores = D.astype(np.float64)
        scores[normalize] = self.beta * scores[normalize] - self.log_z[I[normalize]]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        D_out = np.take_along_axis(scores, order, axis=1).astype(np.float32)
        I_out = np.take_along_axis(I, order, axis=1)
        if k > n_candidates:  # pad like faiss
            pad = k - n_candidates
            D_out = np.hstack([D_out, np.full((q.shape[0], pad), -np.inf, np.float32)])
            I_out = np.hstack([I_out, np.full((q.shape[0], pad), -1, np.int64)])
        return D_out, I_out
