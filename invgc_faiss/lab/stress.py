"""The imbalance stress test: alignments +- InvGC while one side is made weaker.

Every alignment (docs/science.md §4), with and without InvGC on top, is judged on cross-side
recall and single-side structure while one side is made weaker.

Protocol, per setting (a paired split whose weak side is degraded, or a low-resource language):

1. Each alignment (:data:`invgc_faiss.rebalance.ALIGNMENTS`) is fitted on the reference pairs
   minus the tuning pairs (``split.tune_bank_*``), so the tuning pairs stay unseen.
2. InvGC on top: LocalAdj tuned label-free (:func:`invgc_faiss.lab.grid_search.tune_method`) on the aligned
   tuning pairs over :data:`STRESS_GRID` (a coarser grid than the evaluation's, which costs ~2 min
   per tuning at 2,557 tuning pairs on 2 cores; it holds the evaluation's picks for eng-deu and
   eng-zho), then an :class:`invgc_faiss.InvGCIndex` with that alignment and all reference
   pairs as banks. Without InvGC the same index with ``r_g = r_q = 0`` (aligned vectors as they are).
3. Cross-side: R@1/5/10 in both directions (query side -> gallery side, and back with the
   alignment's sides swapped) over the test pairs; RSUM adds the six.
4. Single-side: each side retrieves among its own test items with the vectors as its index stores
   them (so InvGC's correction counts for a side where it is the gallery); NDCG@10/20/50 with
   graded relevance = ROUGE-L between the verses' English texts, and overlap@10 with the top-10
   lists of the side's clean frozen embeddings (the teacher before any degradation).

Degradation: ``x -> normalize(x + sigma e)`` with ``e ~ N(0, I/d)`` (noise of norm ~sigma on unit
rows), applied to every array of the weak side (test, reference, tuning), seeded.
"""
import dataclasses
import logging

import faiss
import numpy as np

from ..index import InvGCIndex
from ..measures import recalls, rsum
from ..rebalance import ALIGNMENTS, RebalancingAdapter
from . import metrics
from .datasets import directions
from .grid_search import tune_method

logger = logging.getLogger(__name__)

#: InvGC LocalAdj grid of the stress test: 6 x 6 rates x 4 pools (144 points, against 600)
STRESS_GRID = {"r_g": (0.0, 0.25, 0.5, 1.0, 1.5, 2.0), "r_q": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
               "pool_rate": (0.01, 0.05, 0.1, 0.2)}
NDCG_KS = (10, 20, 50)
OVERLAP_K = 10
SIDE_ARRAYS = {"query": ("queries", "bank_queries", "tune_queries", "tune_bank_queries"),
               "gallery": ("gallery", "bank_gallery", "tune_gallery", "tune_bank_gallery")}


def degrade(x, sigma, seed=0):
    """``normalize(x + sigma e)``, ``e ~ N(0, I/d)`` seeded; ``x`` (n, d) -> (n, d) float32."""
    if sigma == 0:
        return x
    rng = np.random.default_rng(seed)
    noisy = x + sigma * rng.standard_normal(x.shape) / np.sqrt(x.shape[1])
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def degraded_split(split, sigma, side="gallery", seed=0):
    """A copy of ``split`` with every array of ``side`` degraded by :func:`degrade`.

    The tuning arrays are views of the reference arrays, so they are degraded consistently: the
    same verse gets the same noise wherever it appears."""
    if side not in SIDE_ARRAYS:
        raise ValueError(f"side must be 'query' or 'gallery', got {side!r}")
    test_name, bank_name, tune_name, tune_bank_name = SIDE_ARRAYS[side]
    test = degrade(getattr(split, test_name), sigma, seed)
    bank = degrade(getattr(split, bank_name), sigma, seed + 1)
    n_tune_bank = getattr(split, tune_bank_name).shape[0]
    if n_tune_bank + getattr(split, tune_name).shape[0] != bank.shape[0]:
        raise ValueError("the split's tuning arrays must partition its reference arrays "
                         "(tuning bank rows first, then tuning rows)")
    return dataclasses.replace(split, **{test_name: test, bank_name: bank,
                                         tune_bank_name: bank[:n_tune_bank],
                                         tune_name: bank[n_tune_bank:]})


def _cross_side(alignment, queries, gallery, banks, tuning, with_invgc):
    """Results (n, 10) of one direction and the index (its stored vectors are the gallery side)."""
    query_bank, gallery_bank = banks
    params = {"r_g": 0.0, "r_q": 0.0}
    if with_invgc:
        tq, tg, tbq, tbg = tuning
        params, _ = tune_method("invgc_localadj", alignment.transform_query(tq),
                                alignment.transform_gallery(tg), alignment.transform_query(tbq),
                                alignment.transform_gallery(tbg), param_grid=STRESS_GRID)
    index = InvGCIndex(faiss.IndexFlatIP(queries.shape[1]), gallery_bank=gallery_bank,
                       query_bank=query_bank, alignment=alignment, max_bank_size=None, **params)
    index.add(gallery)
    _, I = index.search(queries, 10)
    return I, index, params


def _single_side(stored, relevance, teacher_neighbours):
    I = metrics.self_neighbours(stored, max(NDCG_KS))
    out = metrics.ndcg(I, relevance, NDCG_KS)
    out[f"overlap@{OVERLAP_K}"] = metrics.neighbour_overlap(I, teacher_neighbours, OVERLAP_K)
    return out


def evaluate_setting(label, split, relevance, clean_queries, clean_gallery, *, methods,
                     invgc=(False, True), seed=0, progress=False):
    """Rows of the stress table for one setting.

    Parameters
    ----------
    label : str, the setting's name in the table (e.g. ``"noise 0.5"``)
    split : PairedSplit (already degraded)
    relevance : ndarray of shape (n_test, n_test), ROUGE-L between the test verses
    clean_queries, clean_gallery : ndarray (n_test, d), undegraded test embeddings (teachers of
        overlap@10)
    methods : sequence of keys of :data:`invgc_faiss.rebalance.ALIGNMENTS`
    invgc : which of without / with InvGC to run
    seed : int, seeds the adapters
    progress : bool, progress bars while adapters fit

    Returns
    -------
    list of dict
    """
    n = split.queries.shape[0]
    truth = np.arange(n)
    teachers = {side: metrics.self_neighbours(x, OVERLAP_K)
                for side, x in (("q", clean_queries), ("g", clean_gallery))}
    rows = []
    for name in methods:
        alignment = ALIGNMENTS[name]()
        if isinstance(alignment, RebalancingAdapter):
            alignment.seed, alignment.progress = seed, progress
        alignment.fit(split.tune_bank_queries, split.tune_bank_gallery)
        logger.info("%s: fitted %s", label, name)
        for with_invgc in invgc:
            row = {"setting": label, "method": name, "invgc": "yes" if with_invgc else "no"}
            params, both = {}, []
            for (tag, stored_side, aligned), (_, queries, gallery, banks, tuning) in zip(
                    (("qg", "g", alignment), ("gq", "q", alignment.swapped())),
                    directions(split, "query", "gallery")):
                I, index, params[tag] = _cross_side(aligned, queries, gallery, banks, tuning,
                                                    with_invgc)
                both.append(recalls(metrics.ground_truth_ranks(I, truth)))
                row.update({f"{tag}_{key}": value for key, value in both[-1].items()})
                stored = index.index.reconstruct_n(0, index.ntotal)
                single = _single_side(stored, relevance, teachers[stored_side])
                row.update({f"{stored_side}_{key}": value for key, value in single.items()})
            row["RSUM"] = rsum(*both)
            row["params"] = params if with_invgc else {}
            if hasattr(alignment, "lambda_"):
                row["lambda"] = round(alignment.lambda_, 3)
                row["epochs"] = alignment.best_epoch_
            rows.append(row)
    return rows
