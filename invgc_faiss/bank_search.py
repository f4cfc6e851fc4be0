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


def apply_search_params(indexes, search_params):
    """Set accuracy knobs on bank indexes, faiss ``ParameterSpace`` syntax: ``"nprobe=16"`` (IVF),
    ``"efSearch=128"`` (HNSW), comma-separated. More probes / a wider beam give a higher
    bank-top-k recall for more time. Each knob is set on every index that has it; a knob that no
    index has raises ``ValueError``."""
    space = faiss.ParameterSpace()
    for item in search_params.split(","):
        name, _, value = item.partition("=")
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"bad bank search parameter {item!r}: expected name=number") from None
        applied = 0
        for index in indexes:
            try:
                space.set_index_parameter(index, name.strip(), value)
                applied += 1
            except RuntimeError:
                continue
        if not applied:
            raise ValueError(f"bank search parameter {name.strip()!r} applies to none of the "
                             f"bank indexes {[type(faiss.downcast_index(i)).__name__ for i in indexes]}")

