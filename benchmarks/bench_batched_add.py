"""InvGCIndex.add of one gallery in many small batches against one batch (item-table growth).

    python benchmarks/bench_batched_add.py [--n 200000] [--batch 500] [--rounds 2]

Generated cone data (scale data, no quality claim), d = 384, a 100,000-row query bank sampled to
the default 4,096 rows. Per round, in one process and alternating: one add of all n rows, and n /
batch adds of `batch` rows, each into a fresh InvGCIndex(IndexFlatIP), with and without
keep_originals. Prints seconds per configuration (best of the rounds) and the batched/one ratio.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bank", type=int, default=100_000)
    args = parser.parse_args()
    import faiss
    import invgc_faiss
    from invgc_faiss.lab.synthetic import cone_vectors

    rng = np.random.default_rng(0)
    d = 384
    axis = cone_vectors(1, d, rng=rng, spread=1.0)[0]
    gallery = cone_vectors(args.n, d, rng=rng, axis=axis)
    bank = cone_vectors(args.bank, d, rng=rng, axis=axis)
    best = {}
    for _ in range(args.rounds):
        for keep in (False, True):
            for batch in (args.n, args.batch):
                index = invgc_faiss.InvGCIndex(faiss.IndexFlatIP(d), query_bank=bank,
                                               keep_originals=keep)
                start = time.perf_counter()
                for i in range(0, args.n, batch):
                    index.add(gallery[i:i + batch])
                seconds = time.perf_counter() - start
                assert index.ntotal == args.n
                key = (keep, batch)
                best[key] = min(best.get(key, np.inf), seconds)
                print(f"keep_originals={keep} batch={batch}: {seconds:.2f} s", flush=True)
                del index
    print(f"\nn = {args.n}, d = {d}, query bank {args.bank} rows (sampled to the default), "
          f"best of {args.rounds} rounds")
    print(f"{'keep_originals':<15} {'one add (s)':>12} {'batches of ' + str(args.batch) + ' (s)':>20} "
          f"{'extra (s)':>10} {'ratio':>6}")
    for keep in (False, True):
        one, many = best[(keep, args.n)], best[(keep, args.batch)]
        print(f"{str(keep):<15} {one:12.2f} {many:20.2f} {many - one:10.2f} {many / one:6.2f}")


if __name__ == "__main__":
    main()
