"""What "auto" sees: the offset agreement of each bank-search setting on 256 bank rows.

    python benchmarks/auto_thresholds.py          # about 4 minutes on 2 cores

On the generated 200k bank of bench_knob_check.py (pools 0.001 and 0.01), every IVF nprobe, HNSW
efSearch and Proj32 k_factor_rf value's mean offset cosine (and smallest), and mean norm error
against exact bank search, on the 256 probe rows that ``bank_search_params="auto"`` calibrates on.
Read next to the held-out and test R@1 changes of the same settings (results/bench_knob_choose.txt)
it gives the thresholds ``bank_search.AUTO_MIN_COSINE`` / ``AUTO_MAX_NORM_ERROR``.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss.bank_search import AUTO_SAMPLE, apply_search_params, offset_agreement  # noqa: E402
from invgc_faiss.offsets import LocalAdjOffset  # noqa: E402
from invgc_faiss.lab.synthetic import make_cone_pairs  # noqa: E402

LADDERS = [("IVF1788,Flat", "nprobe", (16, 32, 64, 128, 256)),
           ("HNSW32", "efSearch", (32, 64, 128, 256, 512)),
           ("Proj32", "k_factor_rf", (1, 2))]


def agreement_ladder(label, bank, probe_rows, pool_rate):
    """Print one line per setting: mean and smallest offset cosine, mean norm error."""
    rng = np.random.default_rng(0)
    probes = np.ascontiguousarray(
        probe_rows[np.sort(rng.choice(len(probe_rows), AUTO_SAMPLE, replace=False))])
    exact = LocalAdjOffset(bank, pool_rate)
    reference = exact.offsets_from_search(*exact.bank_index.search(probes, exact.k))
    for spec, knob, values in LADDERS:
        offsets = LocalAdjOffset(bank, pool_rate, spec)
        for value in values:
            apply_search_params([offsets.bank_index], f"{knob}={value}")
            cosine, ratio = offset_agreement(
                offsets.offsets_from_search(*offsets.bank_index.search(probes, offsets.k)),
                reference)
            print(f"{label:<16} {spec:<13} {f'{knob}={value}':<14} cos {cosine.mean():.6f} "
                  f"min {cosine.min():.5f} norm error {np.abs(ratio - 1).mean():.5f}", flush=True)


def main():
    split = make_cone_pairs(n_test=5000, n_bank=200000, d=384, seed=0)
    print(f"data: {split.description}; probes: {AUTO_SAMPLE} bank gallery rows, query bank "
          f"{split.bank_queries.shape[0]} rows")
    for pool_rate in (0.001, 0.01):
        agreement_ladder(f"gen pool {pool_rate}", split.bank_queries, split.bank_gallery, pool_rate)


if __name__ == "__main__":
    main()
