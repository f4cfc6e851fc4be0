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

from .datasets import EmbeddingCache, default_cache_dir

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
