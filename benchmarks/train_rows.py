"""What ``train()`` needs corrected rows for: an IVF trained on corrected, raw, or a corrected
subsample of the training rows, by recall and build time (issue 35, item 2).

    python benchmarks/train_rows.py [--n 100000] [--train 50000] [--inner IVF1024,Flat]

Generated cone rows (scale data, no quality claim; the fit finds a cone there: shared direction
0.91), a 100,000-row query bank, the defaults. ``InvGCIndex.train`` corrects the rows it is given
and trains the inner index on them, so that the coarse quantizer (and PQ codebooks) fit the
vectors it will store. Variants, each a fresh index, the gallery added the same way:

  corrected     ``index.train(train_rows)``: the rows corrected first (the library today)
  subsample     ``index.train(train_rows[:n // 10])``: a corrected tenth (under faiss's 39
                training rows per centroid for IVF1024)
  subsample40k  ``index.train(train_rows[:40000])``: just over 39 rows per centroid
  raw           the inner index trained on the raw rows before it is wrapped
                (``inner.train(train_rows); InvGCIndex(inner, ...)``; its train seconds include
                the fit, which the other rows do not)

Recall@10 of each index's search against exact search over the same stored (corrected) vectors,
1,000 held-out queries from the same cone, at several nprobe; seconds of train and of add.
"""
import argparse
import os
import sys
import time

import faiss
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from invgc_faiss import InvGCIndex  # noqa: E402
from invgc_faiss.lab.synthetic import cone_vectors  # noqa: E402

NPROBES = (1, 4, 16, 64)


def recall_at_10(index, exact, queries):
    _, found = index.search(queries, 10)
    _, truth = exact.search(queries, 10)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--inner", default="IVF1024,Flat")
    args = parser.parse_args()
    from machine import describe

    d = 384
    rng = np.random.default_rng(0)
    axis = cone_vectors(1, d, rng=rng, spread=1.0)[0]
    gallery, bank, train, queries = (cone_vectors(n, d, rng=rng, axis=axis)
                                     for n in (args.n, 100_000, args.train, 1000))
    print(describe())
    print(f"# {args.inner}, gallery {args.n} x {d}, training rows {args.train}, query bank "
          "100,000 (defaults); recall@10 against exact search over the stored vectors")
    print(f"{'train on':<12}{'train s':>9}{'add s':>8}" + "".join(f"{'np=' + str(p):>9}"
                                                               for p in NPROBES))
    for variant in ("corrected", "subsample", "subsample40k", "raw"):
        inner = faiss.index_factory(d, args.inner, faiss.METRIC_INNER_PRODUCT)
        start = time.perf_counter()
        if variant == "raw":  # an inner index trained before it is wrapped
            inner.train(train)
        index = InvGCIndex(inner, query_bank=bank)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        if variant != "raw":
            rows = {"corrected": args.train, "subsample": args.train // 10,
                    "subsample40k": 40_000}[variant]
            index.train(train[:rows])
        train_s = time.perf_counter() - start + (fit_s if variant == "raw" else 0.0)
        start = time.perf_counter()
        index.add(gallery)
        add_s = time.perf_counter() - start
        exact = faiss.IndexFlatIP(d)
        exact.add(index.index.reconstruct_n(0, index.ntotal) if faiss.try_extract_index_ivf(
            index.index) is None else _stored(index))
        ivf = faiss.extract_index_ivf(index.index)
        recalls = []
        for nprobe in NPROBES:
            ivf.nprobe = nprobe
            recalls.append(recall_at_10(index, exact, queries))
        print(f"{variant:<12}{train_s:9.2f}{add_s:8.2f}" + "".join(f"{r:9.3f}" for r in recalls),
              flush=True)


def _stored(index):
    """The stored vectors of an IVF inner index in id order (a direct map made for the read)."""
    ivf = faiss.extract_index_ivf(index.index)
    ivf.make_direct_map()
    rows = ivf.reconstruct_n(0, ivf.ntotal)
    ivf.set_direct_map_type(faiss.DirectMap.NoMap)
    return rows


if __name__ == "__main__":
    main()
