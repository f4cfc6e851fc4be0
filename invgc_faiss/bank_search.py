"""Top-k neighbour search of gallery vectors into a reference bank, by faiss.

The bank index answers ``sims, nbrs = bank_index.search(x, k)`` with inner-product
similarities (``nbrs == -1`` where an approximate index finds fewer than ``k``). By default it is an exact ``IndexFlatIP`` (BLAS blocks + heap selection inside faiss);
any faiss index with ``METRIC_INNER_PRODUCT`` over the bank rows may replace it (IVF, HNSW, PQ:
an approximate search trades bank-top-k recall for speed; its accuracy knobs -- ``nprobe``,
``efSearch`` -- are set on that index as usual in faiss).
"""
import faiss


def build_bank_index(bank, spec=None):
    """Return a faiss index holding the rows of ``bank`` in order.

    Parameters
    ----------
    bank : ndarray of shape (M, d), float32, unit rows
    spec : None, str or faiss.Index
        ``None``: exact ``IndexFlatIP``. ``str``: a faiss factory string, built with
        ``METRIC_INNER_PRODUCT``, trained on the bank and filled with it. ``faiss.Index``: an
        inner-product index of dimension ``d``, either empty (it is trained if needed and filled with
        the bank) or already holding exactly the ``M`` bank rows in order.

    Returns
    -------
    faiss.Index
    """
    m, d = bank.shape
    if spec is None:
        index = faiss.IndexFlatIP(d)
    elif isinstance(spec, str):
        try:
            index = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(f"bad bank index factory string {spec!r}: {exc}") from None
    elif isinstance(spec, faiss.Index):
        index = spec
    else:
        raise TypeError(
            f"bank index must be None, a factory string or a faiss.Index, got {type(spec).__name__}"
        )
    if index.d != d:
        raise ValueError(f"bank index has dimension {index.d}, bank has d = {d}")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(
            f"bank index must use METRIC_INNER_PRODUCT, got metric_type = {index.metric_type}"
        )
    if index.ntotal == 0:
        if not index.is_trained:
            index.train(bank)
        index.add(bank)
    elif index.ntotal != m:
        raise ValueError(
            f"bank index already holds {index.ntotal} vectors, expected 0 or the bank's {m}"
        )
    return index

