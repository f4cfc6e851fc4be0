"""How fast faiss's HNSW32 inserts corrected rows against the raw rows, the correction not timed.

    python benchmarks/hnsw_insert.py [--rounds 2]

Written for issue 35 (HNSW32 at 200,000 rows at 0.9x plain): the rows are corrected once,
beforehand, by the defaults (``InvGC().fit(query_bank=...)``); then ``IndexHNSWFlat`` (factory
``"HNSW32"``, inner product) adds the raw rows and the corrected rows in batches of 65,536, each
build in a fresh process, alternating, ``--rounds`` times. Two sets:

  generated  200,000 x 384 generated cone rows (bench_build.py's), 100,000-row query bank
  real       every E5 verse embedding in the local cache (4 translations, about 90,000 rows,
             shuffled), a 20,000-row query bank drawn from them

The ratio raw / corrected is the most an InvGC build into HNSW32 can reach against plain faiss
on that data, whatever the correction costs.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
BATCH = 65536


def insert(path):
    """Seconds for HNSW32 to add the rows of ``path``, in batches."""
    import faiss
    rows = np.load(path)
    index = faiss.index_factory(rows.shape[1], "HNSW32", faiss.METRIC_INNER_PRODUCT)
    start = time.perf_counter()
    for first in range(0, rows.shape[0], BATCH):
        index.add(rows[first:first + BATCH])
    return time.perf_counter() - start


def datasets(folder):
    sys.path.insert(0, ROOT)
    from invgc_faiss import InvGC
    from invgc_faiss.lab.datasets import default_cache_dir
    from invgc_faiss.lab.synthetic import cone_vectors

    rng = np.random.default_rng(0)
    axis = cone_vectors(1, 384, rng=rng, spread=1.0)[0]
    rows = cone_vectors(200_000, 384, rng=rng, axis=axis)
    yield "generated", rows, cone_vectors(100_000, 384, rng=rng, axis=axis)
    files = sorted(glob.glob(os.path.join(default_cache_dir(), "*.npy")))
    if files:
        rows = np.concatenate([np.load(f) for f in files]).astype(np.float32)
        rows = rows[rng.permutation(rows.shape[0])]
        yield "real", rows, rows[rng.choice(rows.shape[0], 20_000, replace=False)]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--insert", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.insert:
        print(insert(args.insert))
        return
    sys.path.insert(0, HERE)
    from machine import describe
    sys.path.insert(0, ROOT)
    from invgc_faiss import InvGC

    print("# python benchmarks/hnsw_insert.py --rounds", args.rounds)
    print(describe())
    print(f"{'data':<10} {'rows':>8} {'shared':>7} {'raw s':>7} {'corrected s':>12} "
          f"{'raw / corrected':>16}")
    with tempfile.TemporaryDirectory() as folder:
        for name, rows, bank in datasets(folder):
            correction = InvGC().fit(query_bank=bank)
            paths = {"raw": os.path.join(folder, f"{name}-raw.npy"),
                     "corrected": os.path.join(folder, f"{name}-corrected.npy")}
            np.save(paths["raw"], rows)
            np.save(paths["corrected"], correction.transform(rows))
            best = {}
            for round_ in range(args.rounds):
                for kind in (("raw", "corrected") if round_ % 2 == 0 else ("corrected", "raw")):
                    out = subprocess.run([sys.executable, __file__, "--insert", paths[kind]],
                                         capture_output=True, text=True, check=True)
                    seconds = float(out.stdout.strip().splitlines()[-1])
                    print(f"# {name} round {round_ + 1} {kind}: {seconds:.2f} s", flush=True)
                    best[kind] = min(best.get(kind, seconds), seconds)
            shared = correction.report_.crowding["shared_direction"]
            print(f"{name:<10} {rows.shape[0]:>8} {shared:>7.3f} {best['raw']:>7.2f} "
                  f"{best['corrected']:>12.2f} {best['raw'] / best['corrected']:>16.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
