"""ROUGE-L on hand-computed cases, and NDCG / overlap / self-neighbour metrics."""
import numpy as np
import pytest

from invgc_faiss.lab import metrics
from invgc_faiss.lab.rouge import rouge_l, rouge_l_matrix, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("And God said, Let there be light: and there was light.") == [
        "and", "god", "said", "let", "there", "be", "light", "and", "there", "was", "light"]


@pytest.mark.parametrize("a,b,expected", [
    # LCS "the cat on the mat" = 5 of 6 and 6 tokens: 2*5/12
    ("the cat sat on the mat", "the cat is on the mat", 10 / 12),
    # Lin (2004)'s example: LCS "the gunman" = 2 of 4 and 4; with "kill": "police the gunman" = 3
    ("police killed the gunman", "the gunman killed police", 2 * 2 / 8),
    ("police killed the gunman", "police kill the gunman", 2 * 3 / 8),
    ("a b c d", "x y", 0.0),
    ("a b", "A, B!", 1.0),
    ("a", "a a a", 2 * 1 / 4),
    ("", "", 0.0),
    ("", "word", 0.0),
])
def test_rouge_l_hand_cases(a, b, expected):
    assert rouge_l(a, b) == pytest.approx(expected, abs=1e-6)
    assert rouge_l(b, a) == pytest.approx(expected, abs=1e-6)


def test_rouge_l_matrix_is_symmetric_with_unit_diagonal():
    texts = ["in the beginning", "the beginning of wisdom", "wisdom", "x"]
    m = rouge_l_matrix(texts)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0)
    # "in the beginning" vs "the beginning of wisdom": LCS 2 of 3 and 4
    assert m[0, 1] == pytest.approx(4 / 7)
    assert m[1, 2] == pytest.approx(2 / 5)


def lcs_reference(a, b):
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    for i in range(len(a)):
        for j in range(len(b)):
            table[i + 1, j + 1] = table[i, j] + 1 if a[i] == b[j] else max(table[i, j + 1], table[i + 1, j])
    return table[-1, -1]


def test_rouge_l_matrix_matches_full_table_dp_on_random_texts():
    rng = np.random.default_rng(0)
    words = list("abcdef")
    texts = [" ".join(rng.choice(words, rng.integers(0, 12))) for _ in range(30)]
    m = rouge_l_matrix(texts)
    for i in range(30):
        for j in range(30):
            a, b = tokenize(texts[i]), tokenize(texts[j])
            total = len(a) + len(b)
            expected = 2 * lcs_reference(a, b) / total if total else 0.0
            assert m[i, j] == pytest.approx(expected, abs=1e-6)


def test_ndcg_hand_case():
    relevance = np.array([[1.0, 0.5, 0.2, 0.0],
                          [0.5, 1.0, 0.0, 0.3],
                          [0.2, 0.0, 1.0, 0.0],
                          [0.0, 0.3, 0.0, 1.0]])
    # row 0 retrieves 2 then 1 (ideal: 1 then 2); rows 1-3 retrieve ideally
    I = np.array([[2, 1], [0, 3], [0, 1], [1, 0]])
    dcg0 = 0.2 + 0.5 / np.log2(3)
    idcg0 = 0.5 + 0.2 / np.log2(3)
    expected_at_2 = 100 * (dcg0 / idcg0 + 1 + 1 + 1) / 4
    assert metrics.ndcg(I, relevance, ks=(1, 2)) == pytest.approx(
        {"NDCG@1": 100 * (0.2 / 0.5 + 3) / 4, "NDCG@2": expected_at_2})


def test_ndcg_skips_rows_with_nothing_relevant():
    relevance = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.5, 1.0]])
    I = np.array([[1, 2], [2, 0], [0, 1]])
    # row 0 has no relevant item; row 1 ideal; row 2 finds its item second
    assert metrics.ndcg(I, relevance, ks=(2,))["NDCG@2"] == pytest.approx(
        100 * (1 + 1 / np.log2(3)) / 2)


def test_ndcg_rejects_short_lists():
    with pytest.raises(ValueError, match="need relevance"):
        metrics.ndcg(np.zeros((3, 2), dtype=np.int64), np.eye(3), ks=(10,))


def test_neighbour_overlap():
    I = np.array([[1, 2, 3], [0, 2, 3]])
    J = np.array([[3, 1, 4], [4, 5, 6]])
    assert metrics.neighbour_overlap(I, J, k=3) == pytest.approx(100 * (2 / 3 + 0) / 2)
    assert metrics.neighbour_overlap(I, I, k=2) == 100.0


def test_self_neighbours_excludes_self_even_with_duplicates():
    x = np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    I = metrics.self_neighbours(x, 2)
    assert I.shape == (4, 2)
    assert all(i not in row for i, row in enumerate(I))
    assert I[0, 0] == 1 and I[1, 0] == 0 and I[3, 0] == 2
    with pytest.raises(ValueError, match="k must be"):
        metrics.self_neighbours(x, 4)
