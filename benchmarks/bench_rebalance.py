"""Cost of structure-aware rebalancing on the real benchmark data (needs the data extra).

    python benchmarks/bench_rebalance.py [--query-lang eng --gallery-lang deu --bank-size 20000]

Fits the adapter variants on the 20,175 reference pairs (one process, one after the other) and
reports per variant: fit seconds, epochs run (early stopping), seconds per epoch and the held-out
eng->deu R@1; then the build time (bank fit + add) of InvGCIndex (flat inside, fixed rates) over
the 1,974 test pairs without and with an alignment, and the search time of all test queries at
once on the two built indexes, medians of alternating repeats, and their ratios.
"""
import argparse
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss import InvGCIndex  # noqa: E402
from invgc_faiss.lab import metrics  # noqa: E402
from invgc_faiss.lab.datasets import load_bible_split  # noqa: E402
from invgc_faiss.rebalance import RebalancingAdapter  # noqa: E402

VARIANTS = {
    "itc linear": dict(w_kd=0.0, w_within=0.0, w_rep=0.0),
    "rebalance linear": dict(),
    "rebalance lowrank r=64": dict(kind="lowrank", rank=64),
}
INVGC = dict(r_g=0.5, r_q=1.5, pool_rate=0.05, max_bank_size=None)
REPEATS = 5
SEARCH_REPEATS = 30


def recall_at_1(q, g):
    _, I = faiss.knn(q, g, 1, metric=faiss.METRIC_INNER_PRODUCT)
    return metrics.retrieval_metrics(metrics.ground_truth_ranks(I, np.arange(q.shape[0])))["R@1"]


def build(split, alignment):
    """One InvGCIndex over the test gallery, and the seconds its construction and add took."""
    start = time.perf_counter()
    index = InvGCIndex(faiss.IndexFlatIP(split.gallery.shape[1]), gallery_bank=split.bank_gallery,
                       query_bank=split.bank_queries, alignment=alignment, **INVGC)
    index.add(split.gallery)
    return index, time.perf_counter() - start


def timed_search(index, queries):
    start = time.perf_counter()
    index.search(queries, 10)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--query-lang", default="eng")
    parser.add_argument("--gallery-lang", default="deu")
    parser.add_argument("--bank-size", type=int, default=20000)
    args = parser.parse_args()
    split = load_bible_split(args.query_lang, args.gallery_lang, bank_size=args.bank_size)
    print(f"data: {split.description}")
    print(f"{'adapter':24s} {'fit_s':>7s} {'epochs':>6s} {'s/epoch':>7s} {'R@1':>6s}")
    print(f"{'none':24s} {'':>7s} {'':>6s} {'':>7s} {recall_at_1(split.queries, split.gallery):6.1f}")
    fitted = {}
    for name, params in VARIANTS.items():
        start = time.perf_counter()
        adapter = RebalancingAdapter(**params).fit(split.bank_queries, split.bank_gallery)
        seconds = time.perf_counter() - start
        fitted[name] = adapter
        r1 = recall_at_1(adapter.transform_query(split.queries),
                         adapter.transform_gallery(split.gallery))
        epochs = len(adapter.history_)
        print(f"{name:24s} {seconds:7.1f} {epochs:6d} {seconds / epochs:7.2f} {r1:6.1f}", flush=True)
    alignment = fitted["rebalance linear"]
    builds = {"without": [], "with": []}
    for _ in range(REPEATS):  # alternate, so drift hits both alike
        for key, given in (("without", None), ("with", alignment)):
            builds[key].append(build(split, given))
    searches = {"without": [], "with": []}
    for _ in range(SEARCH_REPEATS):
        for key in searches:
            searches[key].append(timed_search(builds[key][-1][0], split.queries))
    print(f"InvGCIndex over {split.gallery.shape[0]} test pairs (medians of {REPEATS} builds, "
          f"{SEARCH_REPEATS} searches of all {split.queries.shape[0]} queries, k = 10):")
    for label, times in (("build (bank fit + add)", {k: [t for _, t in v] for k, v in builds.items()}),
                         ("search", searches)):
        a, b = np.median(times["without"]), np.median(times["with"])
        print(f"  {label:22s} without {a:7.3f} s  with alignment {b:7.3f} s  ratio {b / a:5.2f}")


if __name__ == "__main__":
    main()
