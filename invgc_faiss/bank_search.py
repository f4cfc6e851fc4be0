"""Top-k neighbour search of gallery vectors into a reference bank: exact, or by a faiss index.

Exact search (the default, an ``IndexFlatIP`` bank index) is :func:`exact_top_k`: the
similarities by one BLAS product per row block (:mod:`invgc_faiss.row_blocks`), then each row's k
largest by an O(M) selection, no k-heap (1.6-3.3x faster than ``IndexFlatIP.search`` with the
same gather after it, on banks of 2k-100k rows at pools 0.001-0.2:
``benchmarks/dense_crossover.py``; measured before the row blocks). Any faiss index with
``METRIC_INNER_PRODUCT`` over the bank rows may replace it (IVF, HNSW, PQ: an approximate search
trades bank-top-k recall for speed; ``sims, nbrs = bank_index.search(x, k)``, ``nbrs == -1``
where it finds fewer than ``k``; its accuracy knobs -- ``nprobe``, ``efSearch`` -- are set on
that index as usual in faiss). The spec ``"Proj{m}"`` builds a projected bank index
(:mod:`invgc_faiss.projected_bank`: top k from an m-dimensional projection, reranked exactly;
knob ``k_factor_rf``).
"""
import time

import faiss
import numpy as np

from . import kernels, projected_bank, row_blocks


def exact_top_k(x, bank, k, start=0):
    """Each row's exact top-k bank rows by BLAS similarities and an O(M) selection.

    Exactly ``k`` neighbours per row; ties at rank k go to the lowest bank rows
    (:func:`invgc_faiss.kernels.top_k_of_rows`). The similarities come from one BLAS product per
    row block on the grid of :mod:`invgc_faiss.row_blocks`, so a row's result depends on its grid
    position ``start + i``, never on the rest of its batch.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    bank : ndarray of shape (M, d), float32
    k : int, 1 <= k <= M
    start : int, the grid position of ``x[0]``

    Returns
    -------
    sims : ndarray of shape (n, k), float32
    nbrs : ndarray of shape (n, k), int64, bank rows in ascending order
    """
    n = x.shape[0]
    rows = row_blocks.block_rows(bank.shape[0])

    def work(block):
        sims = np.empty((rows, k), dtype=np.float32)
        nbrs = np.empty((rows, k), dtype=np.int64)
        kernels.top_k_of_rows(block @ bank.T, k, sims, nbrs)
        return sims, nbrs

    outputs = np.empty((n, k), dtype=np.float32), np.empty((n, k), dtype=np.int64)
    row_blocks.map_blocks(x, start, rows, work, outputs)
    return outputs


def is_exact(bank_index):
    """Whether a bank index is exact search (an ``IndexFlatIP``), answered by
    :func:`exact_top_k`."""
    return (isinstance(bank_index, faiss.Index)
            and type(faiss.downcast_index(bank_index)) is faiss.IndexFlatIP)


def build_bank_index(bank, spec=None):
    """Return a faiss index holding the rows of ``bank`` in order.

    Parameters
    ----------
    bank : ndarray of shape (M, d), float32, unit rows
    spec : None, str or faiss.Index
        ``None``: exact ``IndexFlatIP``. ``"Proj{m}"``: a projected bank index
        (:func:`invgc_faiss.projected_bank.projected_bank_index`). Another ``str``: a faiss
        factory string, built with ``METRIC_INNER_PRODUCT``, trained on the bank and filled with
        it (mind that faiss's ``PCA`` centres queries too, which changes an inner-product
        ranking: use ``"Proj{m}"`` for a projection). ``faiss.Index``: an
        inner-product index of dimension ``d``, either empty (it is trained if needed and filled with
        the bank) or already holding exactly the ``M`` bank rows in order.

    Returns
    -------
    faiss.Index
    """
    m, d = bank.shape
    projected = projected_bank.projected_dimension(spec)
    if spec is None:
        index = faiss.IndexFlatIP(d)
    elif projected is not None:
        return projected_bank.projected_bank_index(bank, projected)
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
    ``"efSearch=128"`` (HNSW), ``"k_factor_rf=2"`` (a refined index such as ``"Proj{m}"``),
    comma-separated. More probes / a wider beam / more candidates give a higher bank-top-k recall
    for more time. Each knob is set on every index that has it; a knob that no
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



#: Accuracy knob of each approximate bank index family and the values "auto" tries, cheapest first
KNOB_LADDERS = {"nprobe": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
                "efSearch": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
                projected_bank.KNOB: (1, 2, 4, 8, 16)}
#: "auto" accepts a setting when the sample's offsets agree with exact search this well (a
#: relative offset error of about 1 %). Chosen on a 200k generated bank (benchmarks/results/
#: auto_thresholds.txt): at cosine 0.9992-0.9994 "auto" lost 2.4-2.9 R@1 there, settings at
#: >= 0.99995 lost at most 0.4 held out; on the real eng->deu banks exact search then wins anyway.
AUTO_MIN_COSINE = 0.99995
AUTO_MAX_NORM_ERROR = 0.002
AUTO_SAMPLE = 256
#: ... and times it against exact search on this many rows: on a batch of 256, exact search's
#: BLAS blocks are too small, and a setting "faster" there was slower than exact at add time
AUTO_TIMING_ROWS = 2048
#: ... and when at most this share of them comes back with fewer than k neighbours
AUTO_MAX_SHORT_ROWS = 0.005
#: "auto" keeps an approximate search only if it takes less than this share of exact search's time
AUTO_MAX_TIME_RATIO = 0.8
#: The setting "auto" (or a per-bank dict) gives a bank whose approximate search does not pay
EXACT = "exact"


def accuracy_knob(index):
    """``"nprobe"`` (IVF), ``"efSearch"`` (HNSW), ``"k_factor_rf"`` (a refined index without
    either, such as ``"Proj{m}"``) or None (exact or no knob) for a bank index."""
    index = faiss.downcast_index(index)
    if faiss.try_extract_index_ivf(index) is not None:
        return "nprobe"
    if isinstance(index, (faiss.IndexHNSW, faiss.IndexBinaryHNSW)) or hasattr(index, "hnsw"):
        return "efSearch"
    if isinstance(index, faiss.IndexRefine):
        return projected_bank.KNOB
    return None


def offset_agreement(approx, exact):
    """How well approximate offsets match exact ones, per row: cosine and norm ratio.

    Parameters
    ----------
    approx, exact : ndarray of shape (n, d)

    Returns
    -------
    cosine, norm_ratio : ndarray of shape (n,), float64 (1 where both offsets are 0)
    """
    approx = approx.astype(np.float64)
    exact = exact.astype(np.float64)
    na, ne = np.linalg.norm(approx, axis=1), np.linalg.norm(exact, axis=1)
    both = (na > 0) & (ne > 0)
    cosine = np.where(both, np.einsum("ij,ij->i", approx, exact) / np.where(both, na * ne, 1), 1.0)
    ratio = np.where(ne > 0, na / np.where(ne > 0, ne, 1), np.where(na > 0, np.inf, 1.0))
    return cosine, ratio


def calibrate(bank_index, bank, k, probes, offsets_of, timing_rows=None):
    """The cheapest accuracy knob setting whose offsets match exact search on ``probes``.

    Tries the knob's ladder (:data:`KNOB_LADDERS`) upward and returns the first value where the
    probes' offsets have mean cosine >= :data:`AUTO_MIN_COSINE` to the exact offsets, mean
    ``|norm ratio - 1|`` <= :data:`AUTO_MAX_NORM_ERROR`, and at most :data:`AUTO_MAX_SHORT_ROWS`
    of the probes got fewer than ``k`` neighbours; the largest value tried if none passes
    (for IVF the ladder ends at ``nlist``: exhaustive). If the passing setting does not search
    ``timing_rows`` in under :data:`AUTO_MAX_TIME_RATIO` of the time of exact search
    (:func:`exact_top_k`, the path an exact bank takes), approximate search does not pay at this
    bank size and the setting is ``"exact"``: the caller then uses an exact bank instead.

    Parameters
    ----------
    bank_index : faiss.Index, approximate, holding ``bank``
    bank : ndarray of shape (M, d), float32
    k : int
    probes : ndarray of shape (n, d), float32, rows like the gallery's
    offsets_of : callable(sims, nbrs) -> offsets (n, d)
    timing_rows : ndarray of shape (t, d), float32, or None (the probes)
        Rows on which the chosen setting is timed against exact search (a batch of the size
        ``add`` sees: :data:`AUTO_TIMING_ROWS`).

    Returns
    -------
    setting : str, e.g. ``"nprobe=16"`` (ParameterSpace syntax), ``"exact"``, or None for an index
        without an accuracy knob
    report : dict with the knob value, cosine, norm error and time ratio of the chosen setting
    """
    knob = accuracy_knob(bank_index)
    if knob is None:
        return None, {}
    reference = offsets_of(*exact_top_k(probes, bank, k))
    ladder = list(KNOB_LADDERS[knob])
    if knob == "nprobe":
        nlist = faiss.extract_index_ivf(bank_index).nlist
        ladder = [v for v in ladder if v < nlist] + [nlist]
    space = faiss.ParameterSpace()
    report = {}
    for value in ladder:
        space.set_index_parameter(bank_index, knob, value)
        sims, nbrs = bank_index.search(probes, k)
        cosine, ratio = offset_agreement(offsets_of(sims, nbrs), reference)
        report = {knob: value, "cosine": float(cosine.mean()),
                  "norm_error": float(np.abs(ratio - 1).mean()),
                  "short_rows": float(np.mean((nbrs < 0).any(axis=1)))}
        if (report["cosine"] >= AUTO_MIN_COSINE and report["norm_error"] <= AUTO_MAX_NORM_ERROR
                and report["short_rows"] <= AUTO_MAX_SHORT_ROWS):
            break
    timing_rows = probes if timing_rows is None else timing_rows
    report["time_ratio"] = (_search_seconds(bank_index.search, timing_rows, k)
                            / _search_seconds(lambda rows, k: exact_top_k(rows, bank, k),
                                              timing_rows, k))
    if report["time_ratio"] >= AUTO_MAX_TIME_RATIO:
        return EXACT, report
    return f"{knob}={report[knob]}", report


def best_seconds(call, repeats=2):
    """The best of ``repeats`` wall times of ``call()``, and the last call's result."""
    seconds = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        seconds = min(seconds, time.perf_counter() - start)
    return seconds, result


def _search_seconds(search, rows, k):
    """Best of two wall times of one ``search(rows, k)``."""
    return best_seconds(lambda: search(rows, k))[0]
