"""The imbalance stress test: alignments +- InvGC while one side is made weaker, per seed.

Every alignment (docs/science.md §4) is judged on cross-side recall and single-side structure
while one side is made weaker. Protocol, per setting (a paired split whose weak side is degraded,
or a low-resource language) and seed:

1. Each variant (:data:`VARIANTS`: an alignment and the teachers it is fitted with) is fitted on
   all reference pairs. Teachers, per side (:func:`invgc_faiss.lab.teachers` builds them):
   ``"independent"`` -- the caller's independent teacher rows where a side has one (English:
   wordllama, another encoder family; a degraded side: its clean embeddings before degradation,
   the same encoder family as the student), else the side's input; ``"input"`` -- the student's
   own inputs on both sides (the baseline the method is not).
2. InvGC on top (variants named ``+invgc``): an :class:`invgc_faiss.InvGCIndex` with the
   library's defaults (no tuning) over the same fitted alignment, all reference pairs as banks;
   without, the same index with ``r_g = r_q = 0``.
3. Cross-side: R@1/5/10 in both directions over the test pairs; RSUM adds the six.
4. Single-side: each side retrieves among its own test items with the vectors as its index stores
   them; NDCG@10/20/50 with graded relevance = ROUGE-L between the verses' English texts, and
   overlap@10 with the top-10 lists of the side's clean frozen embeddings.
5. Degeneration of the stored gallery side: mean pairwise and mean nearest-neighbour cosine.

Each row keeps its per-verse values (``row["per_query"]``: RSUM of both directions, NDCG@10 of
each side) so that :mod:`invgc_faiss.lab.intervals` can pool seeds and bound the means.

Degradation: ``x -> normalize(x + sigma e)`` with ``e ~ N(0, I/d)`` (noise of norm ~sigma on unit
rows), applied to every array of the weak side (test, reference, tuning), seeded.
"""
import dataclasses
import functools
import logging
import time

import faiss
import numpy as np

from ..index import InvGCIndex
from ..measures import hits, recalls, rsum
from ..rebalance import (IdentityAlignment, LeastSquaresAlignment, ProcrustesAlignment,
                         RebalancingAdapter)
from . import metrics
from .datasets import directions

logger = logging.getLogger(__name__)

NDCG_KS = (10, 20, 50)
OVERLAP_K = 10
SIDE_ARRAYS = {"query": ("queries", "bank_queries", "tune_queries", "tune_bank_queries"),
               "gallery": ("gallery", "bank_gallery", "tune_gallery", "tune_bank_gallery")}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row kind of the stress table: how to build the alignment, which teachers it is fitted
    with (``"independent"``, ``"input"``, or None for alignments without teachers), and whether
    InvGC (library defaults) goes on top. Variants sharing ``fit_key`` share one fitted
    alignment."""

    alignment: object
    teachers: str = None
    invgc: bool = False

    @property
    def fit_key(self):
        return (self.alignment, self.teachers)


_ITC = functools.partial(RebalancingAdapter, w_kd=0.0, w_within=0.0, w_rep=0.0)
_LEARNED = functools.partial(RebalancingAdapter, learn_mixing=True)
_NO_KD = functools.partial(RebalancingAdapter, w_kd=0.0)
_NO_WITHIN = functools.partial(RebalancingAdapter, w_within=0.0)
_NO_REP = functools.partial(RebalancingAdapter, w_rep=0.0)

#: name -> variant, in table order ("rebalance" is the structure-aware adapter as the library
#: builds it: independent teachers, lam fixed at 0.5; the "rebalance:" rows change one thing)
VARIANTS = {
    "identity": Variant(IdentityAlignment),
    "identity+invgc": Variant(IdentityAlignment, invgc=True),
    "procrustes": Variant(ProcrustesAlignment),
    "lstsq": Variant(LeastSquaresAlignment),
    "itc": Variant(_ITC),
    "itc+invgc": Variant(_ITC, invgc=True),
    "rebalance": Variant(RebalancingAdapter, "independent"),
    "rebalance+invgc": Variant(RebalancingAdapter, "independent", invgc=True),
    "rebalance:input-teachers": Variant(RebalancingAdapter, "input"),
    "rebalance:learned-lambda": Variant(_LEARNED, "independent"),
    "rebalance:no-KD": Variant(_NO_KD, "independent"),
    "rebalance:no-KDT-KDI": Variant(_NO_WITHIN, "independent"),
    "rebalance:no-IIC-TTC": Variant(_NO_REP, "independent"),
}


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


def fit_variant(variant, split, teachers, *, seed, max_epochs, progress):
    """The fitted alignment of ``variant`` on all reference pairs of ``split``, and its seconds.

    ``teachers`` : (query-side rows or None, gallery-side rows or None), one row per reference
    pair: the independent teachers; a side without one is taught by its input."""
    alignment = variant.alignment()
    start = time.perf_counter()
    if isinstance(alignment, RebalancingAdapter):
        alignment.seed, alignment.progress, alignment.max_epochs = seed, progress, max_epochs
        query_teacher, gallery_teacher = teachers if variant.teachers == "independent" else (
            None, None)
        alignment.fit(split.bank_queries, split.bank_gallery, query_teacher=query_teacher,
                      gallery_teacher=gallery_teacher)
    else:
        alignment.fit(split.bank_queries, split.bank_gallery)
    return alignment, time.perf_counter() - start


def _cross_side(alignment, queries, gallery, banks, with_invgc):
    """Ranks of the ground truth (n,) of one direction, and the index (its stored vectors are
    the gallery side)."""
    query_bank, gallery_bank = banks
    rates = {} if with_invgc else {"r_g": 0.0, "r_q": 0.0}
    index = InvGCIndex(faiss.IndexFlatIP(queries.shape[1]), gallery_bank=gallery_bank,
                       query_bank=query_bank, alignment=alignment, max_bank_size=None, **rates)
    index.add(gallery)
    _, I = index.search(queries, 10)
    return metrics.ground_truth_ranks(I, np.arange(queries.shape[0])), index


def _single_side(stored, relevance, teacher_neighbours):
    """Single-side measures of stored unit rows, and their per-row NDCG@10."""
    I = metrics.self_neighbours(stored, max(NDCG_KS))
    rows = metrics.ndcg_rows(I, relevance, NDCG_KS)
    out = metrics.mean_ndcg(rows)
    out[f"overlap@{OVERLAP_K}"] = metrics.neighbour_overlap(I, teacher_neighbours, OVERLAP_K)
    return out, rows["NDCG@10"]


def evaluate_variant(alignment, variant, split, relevance, clean_neighbours):
    """The stress-table row of one fitted alignment (without the setting's labels)."""
    row, both, per_query = {}, [], {"RSUM": 0.0}
    for (tag, stored_side, aligned), (_, queries, gallery, banks, _) in zip(
            (("qg", "g", alignment), ("gq", "q", alignment.swapped())),
            directions(split, "query", "gallery")):
        ranks, index = _cross_side(aligned, queries, gallery, banks, variant.invgc)
        both.append(recalls(ranks))
        per_query["RSUM"] = per_query["RSUM"] + hits(ranks)
        row.update({f"{tag}_{key}": value for key, value in both[-1].items()})
        stored = index.index.reconstruct_n(0, index.ntotal)
        single, per_query[f"{stored_side}_NDCG@10"] = _single_side(
            stored, relevance, clean_neighbours[stored_side])
        row.update({f"{stored_side}_{key}": value for key, value in single.items()})
        if tag == "qg":
            row.update({f"g_{k}": v for k, v in metrics.degeneration(stored).items()})
    row["RSUM"] = rsum(*both)
    row["per_query"] = per_query
    return row


def evaluate_setting(label, split, relevance, clean_queries, clean_gallery, *, variants,
                     teachers=(None, None), seed=0, max_epochs=100, progress=False):
    """Rows of the stress table for one setting and seed.

    Parameters
    ----------
    label : str, the setting's name in the table (e.g. ``"deu noise 0.5"``)
    split : PairedSplit (already degraded)
    relevance : ndarray of shape (n_test, n_test), ROUGE-L between the test verses
    clean_queries, clean_gallery : ndarray (n_test, d), undegraded test embeddings (the
        reference lists of overlap@10)
    variants : sequence of keys of :data:`VARIANTS`
    teachers : (query-side rows, gallery-side rows), each (n_bank, d_t) or None: the
        independent teachers of the reference pairs
    seed : int, seeds the adapters
    max_epochs : int, the adapters' epoch cap
    progress : bool, progress bars while adapters fit

    Returns
    -------
    list of dict, one per variant; ``fit_s`` is the seconds of the fit the row used
    """
    clean = {side: metrics.self_neighbours(x, OVERLAP_K)
             for side, x in (("q", clean_queries), ("g", clean_gallery))}
    fitted, rows = {}, []
    for name in variants:
        variant = VARIANTS[name]
        if variant.fit_key not in fitted:
            fitted[variant.fit_key] = fit_variant(variant, split, teachers, seed=seed,
                                                  max_epochs=max_epochs, progress=progress)
            logger.info("%s: fitted %s in %.1f s", label, name, fitted[variant.fit_key][1])
        alignment, seconds = fitted[variant.fit_key]
        row = {"setting": label, "method": name, "seed": seed, "fit_s": seconds,
               **evaluate_variant(alignment, variant, split, relevance, clean)}
        if isinstance(alignment, RebalancingAdapter):
            row.update({"lambda": alignment.lambda_, "epochs": alignment.best_epoch_})
        rows.append(row)
    return rows
