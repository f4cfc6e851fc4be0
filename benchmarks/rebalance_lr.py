"""Which Adam learning rate should the rebalancing adapter default to? (needs the data extra)

    python benchmarks/rebalance_lr.py [--bank-size 6000] [--lrs 1e-3 3e-4 1e-4] [--noise 0 0.5 1 2]

eng->deu verses, German degraded by Gaussian noise (seed 0), the stress study's 6,122 reference
pairs; per learning rate, the ITC-only adapter and the structure-aware one (independent teachers:
wordllama for English, the clean German rows for German), at most 100 epochs with early stopping on
held-out RSUM. Prints the epoch kept, the test RSUM (1,974 test pairs, both directions) and the fit
seconds (one process, fits one after the other).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss.lab.datasets import load_bible_split  # noqa: E402
from invgc_faiss.lab.stress import degraded_split  # noqa: E402
from invgc_faiss.lab.teachers import independent_teachers  # noqa: E402
from invgc_faiss.measures import diagonal_ranks, hits  # noqa: E402
from invgc_faiss.rebalance import RebalancingAdapter  # noqa: E402


def test_rsum(adapter, split):
    scores = adapter.transform_query(split.queries) @ adapter.transform_gallery(split.gallery).T
    return float(hits(diagonal_ranks(scores)).mean() + hits(diagonal_ranks(scores.T)).mean())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bank-size", type=int, default=6000)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-4, 1e-4])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    args = parser.parse_args()
    clean = load_bible_split("eng", "deu", bank_size=args.bank_size)
    print(f"data: {clean.description}")
    print(f"{'noise':>5s} {'lr':>7s} {'adapter':>9s} {'epoch':>5s} {'RSUM':>6s} {'fit_s':>6s}")
    for sigma in args.noise:
        teachers, _ = independent_teachers(clean, ("k", "s"), "gallery" if sigma else None)
        split = degraded_split(clean, sigma, "gallery", seed=0)
        for lr in args.lrs:
            for name, weights, given in (("itc", dict(w_kd=0, w_within=0, w_rep=0), (None, None)),
                                         ("rebalance", {}, teachers)):
                start = time.perf_counter()
                adapter = RebalancingAdapter(lr=lr, **weights).fit(
                    split.bank_queries, split.bank_gallery, query_teacher=given[0],
                    gallery_teacher=given[1])
                seconds = time.perf_counter() - start
                print(f"{sigma:5g} {lr:7.0e} {name:>9s} {adapter.best_epoch_:5d} "
                      f"{test_rsum(adapter, split):6.1f} {seconds:6.1f}", flush=True)


if __name__ == "__main__":
    main()
