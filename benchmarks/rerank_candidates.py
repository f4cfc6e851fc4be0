"""Rerank mode's candidates: raw, projected, union, by k_factor, against the baked index.

    python benchmarks/rerank_candidates.py real [deu zho swh]   (data extra; ~3 min, cached)
    python benchmarks/rerank_candidates.py scale [--n 300000]   (generated; latency only)

``real``: for English <-> each language (1,974 test verse pairs; the 20,175 reference pairs as
banks), both forms at their defaults (projection: query bank, rho_q 1; paper: both banks, r_g
0.25, r_q 1.5), over four inner indexes at faiss's default search settings: Flat, IVF64,Flat
(nprobe 1), the same at nprobe 8, HNSW32 (efSearch 16). The rerank index is attached to the
filled plain index (``from_existing``), as a user with a prebuilt index does; the baked index
is built from scratch over the same factory string. Test R@1 at k = 10, as the gap to the baked
index of the same kind. Then latency per inner kind (all 1,974 queries in one call, k = 10;
median of repeats, the indexes alternated): plain, baked, and rerank with the default and the
other settings that reach the baked index.

``scale``: the same latency comparison on a generated cone gallery (default 300,000 rows, d 384,
2,000 queries; speed only: generated data is never a quality claim), Flat and HNSW32.
"""
import argparse
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss import InvGCIndex, InvGCRerankIndex  # noqa: E402

K = 10
FORMS = {"projection": {}, "paper": {"r_g": 0.25, "r_q": 1.5}}
#: (candidates, k_factor) settings of the quality table
SETTINGS = [("raw", 1), ("raw", 2), ("raw", 4), ("raw", 8), ("projected", 1), ("projected", 2),
            ("projected", 4), ("union", 1), ("union", 2)]
#: rerank settings timed: union at 1 and 2, the projected list at 2, the 0.3 default (raw, 8)
TIMED = [("union", 1), ("union", 2), ("projected", 2), ("raw", 8)]
KINDS = {"Flat": ("Flat", None), "IVF64 np1": ("IVF64,Flat", None),
         "IVF64 np8": ("IVF64,Flat", "nprobe=8"), "HNSW32": ("HNSW32", None)}


def recall_at_1(index, queries):
    found = index.search(queries, K)[1][:, 0]
    return 100.0 * float(np.mean(found == np.arange(queries.shape[0])))


def built(factory, search_params, gallery, wrap=None, **params):
    """A filled index of ``factory``: plain, or wrapped (baked ``InvGCIndex``)."""
    d = gallery.shape[1]
    inner = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    index = inner if wrap is None else wrap(inner, **params)
    index.train(gallery)
    index.add(gallery)
    if search_params:
        faiss.ParameterSpace().set_index_parameters(inner, search_params)
    return index


def configured(index, candidates, k_factor):
    index.candidates, index.k_factor = candidates, k_factor
    return index


def timed(indexes, queries, repeats):
    """Median seconds of one ``search(queries, K)`` per entry of ``indexes`` (name -> (index,
    setting or None)), the entries alternated."""
    times = {name: [] for name in indexes}
    for _ in range(repeats):
        for name, (index, setting) in indexes.items():
            if setting is not None:
                configured(index, *setting)
            start = time.perf_counter()
            index.search(queries, K)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def latency_rows(label, plain, baked, rerank, queries, repeats):
    entries = {"plain": (plain, None), "baked": (baked, None)}
    entries.update({f"{c} {kf}": (rerank, (c, kf)) for c, kf in TIMED})
    seconds = timed(entries, queries, repeats)
    return [f"{label:<22} {name:<12} {1000 * s:>9.2f} {s / seconds['plain']:>8.2f}"
            for name, s in seconds.items()]


def real(langs, repeats):
    from invgc_faiss.lab.datasets import directions, load_bible_split
    print(f"test R@1 at k = {K}: baked, then rerank minus baked per (candidates, k_factor)")
    print(f"{'direction':<9} {'form':<10} {'inner':<10} {'plain':>6} {'baked':>6} "
          + " ".join(f"{c[:4]}{kf:<2}".rjust(7) for c, kf in SETTINGS), flush=True)
    latency = []
    for lang in langs:
        split = load_bible_split("eng", lang, bank_size=20000, tune_size=2000)
        for label, queries, gallery, (query_bank, gallery_bank), _ in directions(split, "eng",
                                                                                 lang):
            for form, rates in FORMS.items():
                banks = {"query_bank": query_bank,
                         "gallery_bank": gallery_bank if form == "paper" else None, **rates}
                for kind, (factory, search_params) in KINDS.items():
                    plain = built(factory, search_params, gallery)
                    baked = built(factory, search_params, gallery, InvGCIndex, **banks)
                    rerank = InvGCRerankIndex.from_existing(plain, **banks)
                    baked_r1 = recall_at_1(baked, queries)
                    gaps = [recall_at_1(configured(rerank, c, kf), queries) - baked_r1
                            for c, kf in SETTINGS]
                    print(f"{label:<9} {form:<10} {kind:<10} {recall_at_1(plain, queries):>6.2f} "
                          f"{baked_r1:>6.2f} " + " ".join(f"{g:>+7.2f}" for g in gaps),
                          flush=True)
                    if form == "projection" and label == "eng->zho":
                        latency += latency_rows(f"{label} {kind}", plain, baked, rerank,
                                                queries, repeats)
    print_latency(latency)


def scale(n, repeats):
    from invgc_faiss.lab.synthetic import make_cone_pairs
    split = make_cone_pairs(n_test=n, n_bank=20000, d=384, seed=0, tune_fraction=0.0)
    queries = split.queries[:2000]
    print(f"{split.description}: gallery {n:,}, {queries.shape[0]:,} queries, k = {K}")
    latency = []
    for kind in ("Flat", "HNSW32"):
        factory, search_params = KINDS[kind]
        start = time.perf_counter()
        plain = built(factory, search_params, split.gallery)
        built_s = time.perf_counter() - start
        start = time.perf_counter()
        baked = built(factory, search_params, split.gallery, InvGCIndex,
                      query_bank=split.bank_queries)
        baked_s = time.perf_counter() - start
        start = time.perf_counter()
        rerank = InvGCRerankIndex.from_existing(plain, query_bank=split.bank_queries)
        attach_s = time.perf_counter() - start
        print(f"{kind}: plain build {built_s:.1f} s, baked build {baked_s:.1f} s, rerank attach "
              f"{attach_s:.1f} s", flush=True)
        latency += latency_rows(f"generated {kind}", plain, baked, rerank, queries, repeats)
    print_latency(latency)


def print_latency(rows):
    print(f"\nlatency of all queries in one call, k = {K} (median, alternated)")
    print(f"{'data / inner':<22} {'index':<12} {'ms':>9} {'/ plain':>8}")
    print("\n".join(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    real_parser = sub.add_parser("real")
    real_parser.add_argument("langs", nargs="*", default=["deu", "zho", "swh"])
    real_parser.add_argument("--repeats", type=int, default=9)
    scale_parser = sub.add_parser("scale")
    scale_parser.add_argument("--n", type=int, default=300000)
    scale_parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.command == "real":
        real(args.langs, args.repeats)
    else:
        scale(args.n, args.repeats)


if __name__ == "__main__":
    main()
