"""The harness that measures one method: retrieval, hubness, the gallery's cone and time.

It builds an index on the test gallery, searches the test queries and measures.

A *method* is a callable ``build(d) -> faiss.Index`` returning an empty index (plain faiss, or an
``InvGCIndex`` with its banks). Row ``i`` of the gallery is the ground truth of query ``i``.
"""
import time

import numpy as np

from . import metrics
from ..index import InvGCIndex

HUBNESS_K = 10


def evaluate_method(build, queries, gallery, truth=None):
    """Metrics of one method on test data.

    Parameters
    ----------
    build : callable d -> faiss.Index (empty)
    queries : ndarray of shape (nq, d), float32
    gallery : ndarray of shape (n, d), float32
    truth : ndarray of shape (nq,), int, optional
        Gallery row of each query; default row i matches row i.

    Returns
    -------
    dict with R@1, R@5, R@10, MdR, MnR (full ranks: the search covers the whole gallery),
    k_skewness, robin_hood, hub_occurrence, antihub_rate (top-10), mean_cos (mean pairwise
    cosine) and nn_cos (mean nearest-neighbour cosine) of the stored gallery (degeneration),
    add_s, search_s, and
    ``_k_occurrence`` (n,) int64, the top-10 occurrence counts (for plots; keys with a leading
    underscore are not saved)
    """
    n, d = gallery.shape
    index = build(d)
    start = time.perf_counter()
    train = getattr(index, "train", None)
    if train is not None:  # the gallery (no labels) trains IVF, and the full variant's mean
        train(gallery)
    index.add(gallery)
    add_s = time.perf_counter() - start
    start = time.perf_counter()
    _, I = index.search(queries, n)
    search_s = time.perf_counter() - start
    truth = np.arange(queries.shape[0]) if truth is None else truth
    row = metrics.retrieval_metrics(metrics.ground_truth_ranks(I, truth))
    row.update(metrics.hubness(I[:, :HUBNESS_K], n))
    row.update(metrics.degeneration(stored_gallery(index, gallery)))
    row.update(add_s=add_s, search_s=search_s,
               _k_occurrence=metrics.k_occurrence(I[:, :HUBNESS_K], n))
    return row


def stored_gallery(index, gallery):
    """The gallery vectors an index scores against: the corrected ones of a baked InvGCIndex, the
    given ones otherwise (score biases and rerankers leave the vectors as they are)."""
    if type(index) is InvGCIndex:
        return index.index.reconstruct_n(0, index.ntotal)
    return gallery


def format_table(rows, columns):
    """Plain-text table: ``rows`` is a list of dicts, ``columns`` the keys to show in order."""
    def cell(value):
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
