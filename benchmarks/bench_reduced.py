"""Correction throughput of the default path against the exact path and the previous release,
side by side in one run.

    git worktree add /tmp/v060 5e652d0                 # 0.6.0, the library before issue 35
    python benchmarks/bench_reduced.py --before /tmp/v060 [--rounds 3] [--n 100000] [--m 100000]

Written for issue 35 (the correction at 3x today's throughput). On the same generated cone rows
(scale data, no quality claim: d = 384, the bank's crowding statistic above the default
threshold, so the defaults correct), each job in its own fresh subprocess, jobs alternating
round after round:

  before     the ``--before`` tree: ``InvGC().fit(query_bank=<M rows>)``, then
             ``transform`` of N rows (0.6.0: the exact product path)
  exact      this tree, ``InvGC(n_components=None)``: the exact path, kept as an option
  default    this tree, ``InvGC()``: products in the bank's top 64 principal directions

Timed: ``transform`` of the N rows, after a warm-up of 1,000 rows (the fit is timed apart).
The table gives the best of the rounds and the throughput ratio against ``before``; the head
names the machine, the BLAS kernel and the versions (benchmarks/machine.py).
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
JOBS = ("before", "exact", "default")


def make_data(folder, n, m, d=384):
    sys.path.insert(0, ROOT)
    from invgc_faiss.lab.synthetic import cone_vectors

    rng = np.random.default_rng(0)
    axis = cone_vectors(1, d, rng=rng, spread=1.0)[0]
    np.save(os.path.join(folder, "rows.npy"), cone_vectors(n, d, rng=rng, axis=axis))
    np.save(os.path.join(folder, "bank.npy"), cone_vectors(m, d, rng=rng, axis=axis))


def run_job(name, tree, folder):
    """One job in this process, importing the library from ``tree``; returns its timings."""
    sys.path.insert(0, tree)
    from invgc_faiss import InvGC

    rows, bank = (np.load(os.path.join(folder, f"{what}.npy")) for what in ("rows", "bank"))
    start = time.perf_counter()
    correction = (InvGC(n_components=None) if name == "exact" else InvGC()).fit(query_bank=bank)
    fit_s = time.perf_counter() - start
    correction.transform(rows[:1000])
    start = time.perf_counter()
    correction.transform(rows)
    return {"fit_s": fit_s, "transform_s": time.perf_counter() - start,
            "shared_direction": correction.report_.crowding.get("shared_direction")}


def in_subprocess(name, tree, folder):
    out = subprocess.run([sys.executable, __file__, "--job", name, "--tree", tree, "--folder",
                          folder], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--before", help="code tree of the library before the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", type=int, default=100_000)
    parser.add_argument("--job")
    parser.add_argument("--tree")
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.job:
        print(json.dumps(run_job(args.job, args.tree, args.folder)))
        return
    sys.path.insert(0, HERE)
    from machine import describe

    jobs = [j for j in JOBS if j != "before" or args.before]
    trees = {"before": os.path.abspath(args.before or ROOT), "exact": ROOT, "default": ROOT}
    best = {}
    with tempfile.TemporaryDirectory() as folder:
        make_data(folder, args.n, args.m)
        for round_ in range(args.rounds):
            order = jobs if round_ % 2 == 0 else jobs[::-1]
            for name in order:
                result = in_subprocess(name, trees[name], folder)
                print(f"round {round_ + 1} {name}: transform {result['transform_s']:.3f} s, "
                      f"fit {result['fit_s']:.2f} s", file=sys.stderr, flush=True)
                if name not in best or result["transform_s"] < best[name]["transform_s"]:
                    best[name] = result
    print(f"# python benchmarks/bench_reduced.py --rounds {args.rounds} --n {args.n} "
          f"--m {args.m}" + (f" --before {args.before}" if args.before else ""))
    print(describe())
    print(f"# {args.n} x 384 generated cone rows, {args.m}-row query bank (sampled to 2,048, "
          f"k = 409), shared direction {best['default']['shared_direction']:.3f}; best of "
          f"{args.rounds} alternated rounds, each job in a fresh process")
    base = best.get("before", best["exact"])["transform_s"]
    print(f"{'job':<8} {'fit s':>6} {'transform s':>12} {'rows/s':>9} {'vs before':>10}")
    for name in jobs:
        r = best[name]
        print(f"{name:<8} {r['fit_s']:>6.2f} {r['transform_s']:>12.3f} "
              f"{args.n / r['transform_s']:>9,.0f} {base / r['transform_s']:>9.2f}x")


if __name__ == "__main__":
    main()
