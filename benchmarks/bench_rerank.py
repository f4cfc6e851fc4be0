"""Rerank mode vs baked InvGC vs plain faiss on the real benchmark data (needs the data extra).

    python benchmarks/bench_rerank.py [--query-lang eng --gallery-lang deu --bank-size 20000]

InvGC LocalAdj rates are tuned label-free on the held-out reference pairs, then three indexes are
built over the test gallery (IndexFlatIP inside): plain, baked ``InvGCIndex`` and
``InvGCRerankIndex`` (float16 offsets). For k_factor in 1, 2, 4, 8, 16 the table gives R@1/R@10 of
the test queries (k = 10) and the search latency of all test queries at once, median of repeated
runs alternating between the indexes in one process.
"""
import argparse
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss import InvGCIndex, InvGCRerankIndex  # noqa: E402
from invgc_faiss.lab import metrics  # noqa: E402
from invgc_faiss.lab.datasets import load_bible_split  # noqa: E402
from invgc_faiss.lab.grid_search import tune_method  # noqa: E402

K = 10
K_FACTORS = (1, 2, 4, 8, 16)


def recalls(I):
    m = metrics.retrieval_metrics(metrics.ground_truth_ranks(I, np.arange(I.shape[0])), ks=(1, 10))
    return m["R@1"], m["R@10"]


def timed_search(index, queries):
    start = time.perf_counter()
    index.search(queries, K)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--query-lang", default="eng")
    parser.add_argument("--gallery-lang", default="deu")
    parser.add_argument("--bank-size", type=int, default=20000)
    parser.add_argument("--tune-size", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    split = load_bible_split(args.query_lang, args.gallery_lang, bank_size=args.bank_size,
                             tune_size=args.tune_size)
    params, _ = tune_method("invgc_localadj", split.tune_queries, split.tune_gallery,
                            split.tune_bank_queries, split.tune_bank_gallery)
    banks = {"gallery_bank": split.bank_gallery, "query_bank": split.bank_queries,
             "max_bank_size": None, **params}
    d = split.gallery.shape[1]
    plain = faiss.IndexFlatIP(d)
    plain.add(split.gallery)
    baked = InvGCIndex(faiss.IndexFlatIP(d), **banks)
    baked.add(split.gallery)
    rerank = InvGCRerankIndex(faiss.IndexFlatIP(d), **banks)
    rerank.add(split.gallery)
    queries = split.queries
    print(f"data: {split.description}")
    print(f"InvGC LocalAdj tuned label-free: {params}; {queries.shape[0]} queries, k = {K}")
    rows = [("plain", None, plain), ("baked InvGC", None, baked)]
    rows += [("rerank", kf, rerank) for kf in K_FACTORS]
    latency = {}
    for _ in range(args.repeats):  # alternate the indexes so drift hits all alike
        for name, kf, index in rows:
            if kf is not None:
                index.k_factor = kf
            latency.setdefault((name, kf), []).append(timed_search(index, queries))
    plain_latency = float(np.median(latency[("plain", None)]))
    baked_r1 = recalls(baked.search(queries, K)[1])[0]
    print(f"{'index':<14}{'k_factor':>9}{'R@1':>8}{'R@10':>8}{'latency ms':>12}{'/ plain':>9}"
          f"{'R@1 - baked':>13}")
    for name, kf, index in rows:
        if kf is not None:
            index.k_factor = kf
        r1, r10 = recalls(index.search(queries, K)[1])
        lat = float(np.median(latency[(name, kf)]))
        print(f"{name:<14}{'' if kf is None else kf:>9}{r1:>8.2f}{r10:>8.2f}{1000 * lat:>12.2f}"
              f"{lat / plain_latency:>9.2f}{r1 - baked_r1:>13.2f}")


if __name__ == "__main__":
    main()
