"""Exact bank search: faiss's k-heap against the O(M) selection, and the gather against a product.

    python benchmarks/dense_crossover.py [--rows 2048] [--repeats 3]

For banks of M rows (2,048: the default sample; 4,096; 20,000: a real reference set; 100,000) and
pools k = pool * M, times three ways to the LocalAdj offsets of one bank over the exact top-k,
side by side in one process, alternated, best of ``--repeats``:

  search+gather     faiss ``IndexFlatIP.search(x, k)`` (BLAS blocks, then a k-heap per row),
                    then the Numba gather ``kernels.weighted_neighbour_mean`` (the 0.1 path)
  select+gather     ``bank_search.exact_top_k`` (one BLAS product per block of rows, then an
                    O(M) histogram selection, no heap), then the same gather
  select+product    ``offsets.product_offsets``: the same product and selection kept in place,
                    then a second BLAS product ``S B / k`` instead of the gather

Generated cone data, d = 384: scale data, no quality claim. Prints seconds per 1,000 rows, the
share of rows whose top-k set differs from faiss's (float32 near-ties at rank k decided
otherwise), and the largest offset difference of the two new ways against the 0.1 path.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

POOLS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
BANKS = (2048, 4096, 20000, 100000)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import faiss

    from invgc_faiss import kernels
    from invgc_faiss.bank_search import exact_top_k
    from invgc_faiss.lab.synthetic import cone_vectors
    from invgc_faiss.offsets import pool_size, product_offsets

    rng = np.random.default_rng(0)
    d, n = 384, args.rows
    axis = cone_vectors(1, d, rng=rng, spread=1.0)[0]
    x = cone_vectors(n, d, rng=rng, axis=axis)
    print(f"rows {n}, d = {d}, best of {args.repeats}; seconds per 1,000 rows")
    print(f"{'M':>7} {'pool':>6} {'k':>6} {'search+gather':>14} {'select+gather':>14} "
          f"{'select+product':>15} {'best':>15} {'sets differ':>12} {'max |diff|':>11}")
    for m in BANKS:
        bank = cone_vectors(m, d, rng=rng, axis=axis)
        index = faiss.IndexFlatIP(d)
        index.add(bank)
        for pool in POOLS:
            k = pool_size(pool, m)
            out = {name: np.empty((n, d), np.float32) for name in ("search", "gather", "product")}
            degrees, found = np.empty(n, np.float32), np.empty(n, np.int64)

            def search_gather():
                sims, nbrs = index.search(x, k)
                kernels.weighted_neighbour_mean(bank, sims, nbrs, out["search"], degrees, found)
                return nbrs

            def select_gather():
                sims, nbrs = exact_top_k(x, bank, k)
                kernels.weighted_neighbour_mean(bank, sims, nbrs, out["gather"], degrees, found)
                return nbrs

            def select_product():
                product_offsets(x, bank, k, out["product"], degrees)

            ways = {"search+gather": search_gather, "select+gather": select_gather,
                    "select+product": select_product}
            for way in ways.values():
                way()  # compile, warm
            times = dict.fromkeys(ways, np.inf)
            for _ in range(args.repeats):  # alternated
                for name, way in ways.items():
                    start = time.perf_counter()
                    result = way()
                    times[name] = min(times[name], time.perf_counter() - start)
                    if name == "search+gather":
                        faiss_nbrs = result
                    elif name == "select+gather":
                        ours = result
            differing = np.mean([set(a) != set(b) for a, b in zip(faiss_nbrs, ours)])
            same = np.array([set(a) == set(b) for a, b in zip(faiss_nbrs, ours)])
            diff = max(np.abs(out[name][same] - out["search"][same]).max()
                       for name in ("gather", "product"))
            per = 1000 / n
            best = min(times, key=times.get)
            print(f"{m:>7} {pool:>6} {k:>6} " + " ".join(
                f"{times[name] * per:>{len(name)}.3f}" for name in ways)
                + f" {best:>15} {differing:>12.4f} {diff:>11.1e}", flush=True)


if __name__ == "__main__":
    main()
