"""Add throughput before and after a change of the library, side by side in one run.

    git worktree add /tmp/before <commit>              # the library as it was
    python benchmarks/bench_blocks.py --before /tmp/before [--rounds 3] [--quick]

Written for issue 33 (row blocks on a fixed grid, one BLAS thread per block): the code tree of
``--before`` and this one alternate, round after round, each job in its own fresh subprocess on
the same generated cone data (scale data, no quality claim):

  default_add   ``InvGCIndex(IndexFlatIP(d), query_bank=<M-row bank>)`` with every other
                parameter at its default, ``add`` of N rows (the fit is not timed)
  one_row_add   the same index, the median of 200 one-row adds (after 20 untimed)
  localadj_add  bench_add.py's LocalAdj row: two 50,000-row banks (prebuilt IndexFlatIP bank
                indexes), pool 0.01 (k = 500), r_g 0.3, r_q 0.6, max_bank_size None, 20,000 rows
  floor         bench_add.py's floor: faiss IndexFlatIP top-k of the same rows in both banks

The table gives the best of the rounds per tree and the ratio after / before of throughput;
the head names the machine, the BLAS kernel and the versions (benchmarks/machine.py).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
JOBS = ("default_add", "one_row_add", "localadj_add", "floor")


def make_data(folder, cfg):
    sys.path.insert(0, ROOT)
    from invgc_faiss.lab.synthetic import cone_vectors

    rng = np.random.default_rng(0)
    d = cfg["d"]
    axis = cone_vectors(1, d, rng=rng, spread=1.0)[0]
    for name, n in (("gallery", cfg["n"]), ("bank", cfg["m"]), ("small", cfg["small_n"]),
                    ("bank_g", cfg["small_m"]), ("bank_q", cfg["small_m"])):
        np.save(os.path.join(folder, f"{name}.npy"), cone_vectors(n, d, rng=rng, axis=axis))


def run_job(name, tree, folder, cfg):
    """One job in this process, importing the library from ``tree``; returns seconds."""
    sys.path.insert(0, tree)
    import faiss
    from invgc_faiss import InvGCIndex

    def load(what):
        return np.load(os.path.join(folder, f"{what}.npy"))

    d = cfg["d"]
    if name in ("default_add", "one_row_add"):
        x = load("gallery")
        index = InvGCIndex(faiss.IndexFlatIP(d), query_bank=load("bank"))
        if name == "default_add":
            index.add(x[:64])  # Numba kernels loaded from their cache outside the timing
            index.reset()
            start = time.perf_counter()
            index.add(x)
            return time.perf_counter() - start
        times = []
        for i in range(220):
            start = time.perf_counter()
            index.add(x[i:i + 1])
            times.append(time.perf_counter() - start)
        return float(np.median(times[20:]))
    x, banks = load("small"), [load("bank_g"), load("bank_q")]
    k = int(np.floor(cfg["pool_rate"] * banks[0].shape[0]))
    flat = [faiss.IndexFlatIP(d) for _ in banks]
    for index, bank in zip(flat, banks):
        index.add(bank)
    if name == "floor":
        start = time.perf_counter()
        for index in flat:
            index.search(x, k)
        return time.perf_counter() - start
    index = InvGCIndex(faiss.IndexFlatIP(d), gallery_bank=banks[0], query_bank=banks[1],
                       gallery_bank_index=flat[0], query_bank_index=flat[1], r_g=0.3, r_q=0.6,
                       pool_rate=cfg["pool_rate"], max_bank_size=None)
    index.add(x[:64])
    index.reset()
    start = time.perf_counter()
    index.add(x)
    return time.perf_counter() - start


def in_subprocess(name, tree, folder, cfg):
    proc = subprocess.run([sys.executable, __file__, "--job", name, "--tree", tree, "--folder",
                           folder, "--cfg", json.dumps(cfg)],
                          capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--before", help="code tree of the library before the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--job")
    parser.add_argument("--tree")
    parser.add_argument("--folder")
    parser.add_argument("--cfg")
    args = parser.parse_args()
    if args.job:
        print(run_job(args.job, args.tree, args.folder, json.loads(args.cfg)))
        return
    cfg = {"d": 384, "n": 100_000, "m": 100_000, "small_n": 20_000, "small_m": 50_000,
           "pool_rate": 0.01}
    if args.quick:
        cfg.update(n=5000, m=5000, small_n=2000, small_m=5000)
    sys.path.insert(0, HERE)
    from machine import describe

    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(ROOT)}
    best = {(job, t): np.inf for job in JOBS for t in trees}
    with tempfile.TemporaryDirectory() as folder:
        make_data(folder, cfg)
        for r in range(args.rounds):
            for job in JOBS:
                for tree in (trees if r % 2 == 0 else list(trees)[::-1]):  # alternate the order
                    seconds = in_subprocess(job, trees[tree], folder, cfg)
                    best[job, tree] = min(best[job, tree], seconds)
                    print(f"  round {r} {job} {tree}: {seconds:.4f} s", file=sys.stderr)
    print(describe())
    print(f"# config: {cfg}; best of {args.rounds} rounds, trees alternated")
    rows = {"default_add": cfg["n"], "one_row_add": 1, "localadj_add": cfg["small_n"],
            "floor": cfg["small_n"]}
    print(f"{'job':<14}{'before s':>11}{'after s':>11}{'before rows/s':>15}{'after rows/s':>14}"
          f"{'after/before':>14}")
    for job in JOBS:
        b, a = best[job, "before"], best[job, "after"]
        print(f"{job:<14}{b:>11.4f}{a:>11.4f}{rows[job] / b:>15.0f}{rows[job] / a:>14.0f}"
              f"{b / a:>14.3f}")
    for tree in trees:
        print(f"LocalAdj add throughput / floor, {tree}: "
              f"{best['floor', tree] / best['localadj_add', tree]:.3f}")


if __name__ == "__main__":
    main()
