"""ROUGE-L (Lin, 2004) between short texts: the graded relevance of single-side retrieval.

SCIENCE.md section 2 judges single-modal retrieval by NDCG with relevance = ROUGE-L between the
items' captions; for verses, the captions are their English (KJV) texts. Texts are tokenized as
lower-cased runs of letters and digits; ROUGE-L is the F1 of the longest common subsequence
(``beta = 1``, no stemming, no stop words)::

    P = LCS / len(candidate),  R = LCS / len(reference),  F = 2PR / (P + R) = 2 LCS / (len_c + len_r)

The pairwise matrix is computed by a Numba kernel (:func:`invgc_faiss.kernels.pairwise_rouge_l`),
O(n^2 L^2) for n texts of L tokens: about 2 s for 2,000 verses on 2 cores.
"""
import re

import numpy as np

from .kernels import pairwise_rouge_l

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text):
    """Lower-cased runs of letters and digits: ``"Let there be light!" -> ["let", ...]``."""
    return _TOKEN.findall(text.lower())


def rouge_l_matrix(texts):
    """ROUGE-L F1 between every pair of ``texts``.

    Parameters
    ----------
    texts : sequence of str, length n

    Returns
    -------
    ndarray of shape (n, n), float32, symmetric, 1 on the diagonal (0 for an empty text)
    """
    vocabulary = {}
    sequences = [[vocabulary.setdefault(t, len(vocabulary)) for t in tokenize(text)]
                 for text in texts]
    starts = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sequences], out=starts[1:])
    tokens = np.fromiter((t for s in sequences for t in s), dtype=np.int32, count=int(starts[-1]))
    out = np.zeros((len(sequences), len(sequences)), dtype=np.float32)
    pairwise_rouge_l(tokens, starts, out)
    return out


def rouge_l(candidate, reference):
    """ROUGE-L F1 of two texts (see the module docstring)."""
    return float(rouge_l_matrix([candidate, reference])[0, 1])
