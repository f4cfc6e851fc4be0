"""Build throughput: plain faiss against ``InvGCIndex`` with the defaults, phase by phase.

    python benchmarks/bench_build.py        # 1,000,000 x 384, 100,000-row bank (~21 min, 2 cores)
    python benchmarks/bench_build.py --n 100000 --train 50000 --inners IVF1024,Flat --rounds 3
                                            # the configuration issue 23 is judged on (~3 min)

Generated cone-shaped rows (scale data, no quality claim): a gallery written to a ``.npy`` file slice
by slice, a query bank and training rows from the same cone. For each inner index, a plain build and
an InvGC build alternate (``--rounds`` times), each in its own fresh subprocess so that its peak
memory is its own:

  plain   ``inner.train(train rows)`` (when the inner index needs training), then the gallery
          added in batches of 65,536 read from the file
  invgc   ``InvGCIndex(inner, query_bank=bank)`` with every other parameter at its default (fit:
          the bank sample, its index and the fit-time checks), then the same train and add calls
          on the wrapper (train corrects its rows first, add corrects each batch)

Columns: seconds per phase, vectors/s (gallery rows / total), the throughput ratio plain total /
InvGC total of the same round, the peak resident set above the one before the build (VmHWM, reset
once the rows are loaded; faiss's own allocations included), and the warnings the construction
and the build raised.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench_scale import cone_scale_data, reset_peak_rss, status_mib  # noqa: E402

BATCH = 65536


def build_job(mode, inner_spec, folder):
    """One build in this process; returns its row (phases in seconds, peak MiB, warnings)."""
    import faiss
    from invgc_faiss import InvGCIndex, add_in_batches
    from invgc_faiss.streaming import read_npy_batches

    bank = np.load(os.path.join(folder, "bank.npy"))
    train = np.load(os.path.join(folder, "train.npy"))
    path = os.path.join(folder, "gallery.npy")
    reset_peak_rss()
    before = status_mib("VmRSS")
    row = {"mode": mode, "inner": inner_spec, "fit_s": 0.0, "train_s": 0.0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        index = faiss.index_factory(bank.shape[1], inner_spec, faiss.METRIC_INNER_PRODUCT)
        if mode == "invgc":
            index = InvGCIndex(index, query_bank=bank)
            row["fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        if not index.is_trained:
            index.train(train)
        row["train_s"] = time.perf_counter() - start
        start = time.perf_counter()
        add_in_batches(index, read_npy_batches(path, BATCH))
        row["add_s"] = time.perf_counter() - start
    row["total_s"] = row["fit_s"] + row["train_s"] + row["add_s"]
    row["ntotal"] = int(index.ntotal)
    row["peak_mib"] = status_mib("VmHWM") - before
    row["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    if mode == "invgc":
        offsets = index.correction.offsets_
        row["bank_rows_k"] = [(off.bank.shape[0], off.k) for off in offsets]
        row["fit_report"] = {"sample_change": index.correction.report_.sample_change,
                             "top1_change": index.correction.report_.top1_change}
    return row


def run_in_subprocess(mode, inner_spec, folder):
    out = os.path.join(folder, "row.json")
    subprocess.run([sys.executable, __file__, "--job", mode, "--inner-spec", inner_spec,
                    "--folder", folder, "--out", out], check=True)
    with open(out) as f:
        return json.load(f)


def table(rows, n):
    lines = [f"{'inner':<14} {'round':>5} {'build':<6} {'fit s':>6} {'train s':>8} {'add s':>7} "
             f"{'total s':>8} {'vectors/s':>10} {'ratio':>6} {'peak MiB':>9} {'warnings':>8}"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
        lines.append(f"{row['inner']:<14} {row['round']:>5} {row['mode']:<6} {row['fit_s']:>6.1f} "
                     f"{row['train_s']:>8.1f} {row['add_s']:>7.1f} {row['total_s']:>8.1f} "
                     f"{n / row['total_s']:>10.0f} {ratio:>6} {row['peak_mib']:>9.0f} "
                     f"{len(row['warnings']):>8}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bank", type=int, default=100_000)
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--inners", nargs="+", default=["IVF4096,Flat", "IVF4096,PQ48", "HNSW32"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--json")
    parser.add_argument("--job", choices=["plain", "invgc"], help=argparse.SUPPRESS)
    parser.add_argument("--inner-spec", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        with open(args.out, "w") as f:
            json.dump(build_job(args.job, args.inner_spec, args.folder), f)
        return
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        _, (_, bank), train = cone_scale_data(folder, args.n, args.bank, args.train)
        np.save(os.path.join(folder, "bank.npy"), bank)
        np.save(os.path.join(folder, "train.npy"), train)
        del bank, train
        for inner in args.inners:
            for round_ in range(args.rounds):
                # plain first in even rounds, InvGC first in odd ones
                order = ("plain", "invgc") if round_ % 2 == 0 else ("invgc", "plain")
                done = {}
                for mode in order:
                    done[mode] = dict(run_in_subprocess(mode, inner, folder), round=round_)
                    print(f"{inner} round {round_} {mode}: {done[mode]['total_s']:.1f} s",
                          file=sys.stderr, flush=True)
                done["invgc"]["ratio"] = done["plain"]["total_s"] / done["invgc"]["total_s"]
                rows += [done["plain"], done["invgc"]]
                if args.json:  # saved as it goes: a long run keeps what it measured
                    with open(args.json, "w") as f:
                        json.dump(rows, f, indent=1)
    invgc = next(r for r in rows if r["mode"] == "invgc")
    from machine import describe
    print(describe())
    print(f"build: generated cone rows, n = {args.n:,} x 384 added in batches of {BATCH:,}, "
          f"query bank {args.bank:,} rows (InvGC defaults: sampled to "
          f"{invgc['bank_rows_k'][0][0]:,}, k = {invgc['bank_rows_k'][0][1]}), inner training on "
          f"{args.train:,} rows; ratio = plain total / InvGC total of the same round")
    print("\n".join(table(rows, args.n)))
    for inner in args.inners:
        ratios = [r["ratio"] for r in rows if r["inner"] == inner and "ratio" in r]
        fits = [r["fit_s"] for r in rows if r["inner"] == inner and r["mode"] == "invgc"]
        print(f"{inner}: throughput ratio {' '.join(f'{x:.2f}' for x in ratios)} (median "
              f"{np.median(ratios):.2f}); fit {max(fits):.1f} s at most")
    warned = sorted({w for r in rows for w in r["warnings"]})
    print("warnings: " + ("; ".join(warned) if warned else "none"))


if __name__ == "__main__":
    main()
