"""ROUGE-L (Lin, 2004) between short texts: the graded relevance of single-side retrieval.

The paper judges single-modal retrieval by NDCG with relevance = ROUGE-L between the
items' captions; for verses, the captions are their English (KJV) texts. Texts are tokenized as
lower-cased runs of letters and digits; ROUGE-L is the F1 of the longest common subsequence
(``beta = 1``, no stemming, no stop words)::

    P = LCS / len(candidate),  R = LCS / len(reference),  F = 2PR / (P + R) = 2 LCS / (len_c + len_r)

The pairwise matrix is computed by a Numba kernel (:func:`pairwise_rouge_l` below),
O(n^2 L^2) for n texts of L tokens: about 2 s for 2,000 verses on 2 cores.
"""
import re

import numpy as np
from numba import njit, prange

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


@njit(parallel=True, cache=True)
def pairwise_rouge_l(tokens, starts, out):
    """ROUGE-L F1 between every pair of token sequences.

    Sequence ``i`` is ``tokens[starts[i]:starts[i + 1]]``. With ``l = LCS(a, b)`` (longest common
    subsequence, dynamic programming over one rolling row)::

        out[i, j] = 2 l / (len(a) + len(b))        (0 when both are empty)

    which is ``2PR / (P + R)`` for ``P = l / len(a)``, ``R = l / len(b)``: symmetric, 1 on the
    diagonal of non-empty sequences.

    Parameters
    ----------
    tokens : ndarray of shape (total,), int32, token ids
    starts : ndarray of shape (n + 1,), int64, offsets into ``tokens``
    out : ndarray of shape (n, n), float32, output
    """
    n = starts.shape[0] - 1
    longest = 0
    for i in range(n):
        longest = max(longest, starts[i + 1] - starts[i])
    for i in prange(n):
        a = tokens[starts[i]:starts[i + 1]]
        row = np.zeros(longest + 1, dtype=np.int32)
        for j in range(i, n):
            b = tokens[starts[j]:starts[j + 1]]
            row[:b.shape[0] + 1] = 0
            for x in range(a.shape[0]):
                diagonal = 0
                for y in range(b.shape[0]):
                    above = row[y + 1]
                    if a[x] == b[y]:
                        row[y + 1] = diagonal + 1
                    elif row[y] > above:
                        row[y + 1] = row[y]
                    diagonal = above
            total = a.shape[0] + b.shape[0]
            score = 2.0 * row[b.shape[0]] / total if total > 0 else 0.0
            out[i, j] = score
            out[j, i] = score
