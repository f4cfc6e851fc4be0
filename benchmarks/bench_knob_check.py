"""Does check_knobs predict what a scale knob costs? Held-out dR@1 against test dR@1, one run.

    python benchmarks/bench_knob_check.py                 # about 10 minutes on 2 cores (data extra)
    python benchmarks/bench_knob_check.py choose          # about 15 minutes: choose, then verify

For each data set and correction, every knob setting is scored twice:
  held-out   invgc_faiss.check_knobs on the reference pairs alone (what a user can run): dR@1
             against exact InvGC on 2,000 held-out pairs, with its 95 % interval
  test       the benchmark's own measurement (bench_scale.measure_knobs): the setting fitted on
             the whole banks, R@1 on the test split against exact bank search
Data: real English->German verses (20,175 bank pairs; projection form at the defaults, paper form at
r_q 1.5, pool 0.05) and generated cone pairs with a 200,000-row bank (projection form, pools 0.001
and 0.01) -- the settings of bench_scale.py banks/bigbank where offset agreement, the check behind
"auto", did and did not track R@1.

``choose``: on the generated 200k bank, ``check_knobs`` over nprobe, efSearch and k_factor_rf
(projected banks "Proj32", "Proj64") ladders picks
``report.cheapest(max_loss=0.5)`` from the reference pairs alone; that setting is then fitted on
the whole bank and measured on the test split against exact bank search (R@1 change, speed-up of
correcting the 5,000 test gallery rows).
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from bench_scale import measure_knobs  # noqa: E402


def real_cases():
    from invgc_faiss.lab.datasets import load_bible_split

    split = load_bible_split("eng", "deu", bank_size=20000, tune_size=2000)
    nlist = int(4 * np.sqrt(split.bank_queries.shape[0]))
    knobs = {f"IVF{nlist} nprobe={p}": {"query_bank_index": f"IVF{nlist},Flat",
                                        "bank_search_params": f"nprobe={p}"} for p in (16, 64)}
    knobs[f"IVF{nlist} auto"] = {"query_bank_index": f"IVF{nlist},Flat"}
    knobs["HNSW32 efSearch=64"] = {"query_bank_index": "HNSW32", "bank_search_params": "efSearch=64"}
    knobs["Proj128 auto"] = {"query_bank_index": "Proj128"}
    knobs.update({f"sample {s}": {"max_bank_size": s} for s in (4096, 1024, 256)})
    return [("real eng-deu, projection", split, {"rho_q": 1.0, "pool_rate": 0.2}, knobs),
            ("real eng-deu, paper", split, {"r_g": 0.0, "r_q": 1.5, "pool_rate": 0.05}, knobs)]


def synthetic_cases():
    from invgc_faiss.lab.synthetic import make_cone_pairs

    split = make_cone_pairs(n_test=5000, n_bank=200000, d=384, seed=0)
    nlist = int(4 * np.sqrt(split.bank_queries.shape[0]))
    knobs = {f"IVF{nlist} auto": {"query_bank_index": f"IVF{nlist},Flat"},
             "HNSW32 auto": {"query_bank_index": "HNSW32"},
             "Proj32 auto": {"query_bank_index": "Proj32"},
             "Proj64 auto": {"query_bank_index": "Proj64"},
             "sample 16384": {"max_bank_size": 16384}}
    return [(f"generated 200k bank, pool {pool}", split, {"rho_q": 1.0, "pool_rate": pool}, knobs)
            for pool in (0.001, 0.01)]


def choose_and_verify(args):
    import invgc_faiss
    from invgc_faiss.knob_check import ladder

    out = []
    for label, split, params, _ in synthetic_cases():
        nlist = int(4 * np.sqrt(split.bank_queries.shape[0]))
        knobs = {**ladder(f"IVF{nlist},Flat", values=(16, 32, 64, 128, 256)),
                 **ladder("HNSW32", values=(32, 64, 128, 256, 512)),
                 **ladder("Proj32", values=(1, 2, 4)), **ladder("Proj64", values=(1, 2, 4))}
        report = invgc_faiss.check_knobs(split.bank_queries, split.bank_gallery, knobs,
                                         params=params)
        print(label, flush=True)
        print(report, flush=True)
        choice = report.cheapest(max_loss=0.5)
        chosen = next(row for row in report.rows if row["knob"] == choice)
        test = measure_knobs(label, {**params, "max_bank_size": None}, split,
                             [("exact", {}), (chosen["name"], choice)], split.gallery, lambda r: None)
        row = {"case": label, "chosen": chosen["name"], "heldout_dR@1": chosen["dR@1"],
               "heldout_speed_up": chosen["speed_up"], "test_dR@1": test[1]["dR@1"],
               "test_speed_up": test[1]["speed_up"], "report": report.to_dict()}
        out.append(row)
        print(f"chosen {chosen['name']}: held-out dR@1 {chosen['dR@1']:+.2f} at "
              f"{chosen['speed_up']:.2f}x; test dR@1 {row['test_dR@1']:+.2f} at "
              f"{row['test_speed_up']:.2f}x less correction time", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("compare", "choose"), default="compare")
    parser.add_argument("--json", default=None)
    parser.add_argument("--only", choices=("real", "synthetic"), default=None)
    args = parser.parse_args()
    if args.mode == "choose":
        return choose_and_verify(args)

    import invgc_faiss

    cases = ([] if args.only == "synthetic" else real_cases()) + \
            ([] if args.only == "real" else synthetic_cases())
    out = []
    print(f"{'case':<34} {'setting':<22} {'held-out dR@1 [95%]':>24} {'test dR@1':>9}")
    for label, split, params, knobs in cases:
        report = invgc_faiss.check_knobs(split.bank_queries, split.bank_gallery, knobs,
                                         params=params)
        test = measure_knobs(label, {**params, "max_bank_size": None}, split,
                             [("exact", {})] + list(knobs.items()), split.gallery, lambda r: None)
        for held, tested in zip(report.rows[1:], test[1:]):
            low, high = held["dR@1_interval"]
            row = {"case": label, "setting": held["name"], "heldout_dR@1": held["dR@1"],
                   "heldout_interval": [low, high], "test_dR@1": tested["dR@1"],
                   "heldout_warned": bool(held["warned"])}
            out.append(row)
            print(f"{label:<34} {held['name']:<22} {held['dR@1']:+7.2f} [{low:+6.2f}, {high:+6.2f}]"
                  f" {tested['dR@1']:+9.2f}", flush=True)
    inside = np.mean([r["heldout_interval"][0] <= r["test_dR@1"] <= r["heldout_interval"][1]
                      for r in out])
    gap = [abs(r["heldout_dR@1"] - r["test_dR@1"]) for r in out]
    print(f"{len(out)} settings: test dR@1 inside the held-out 95% interval for {100 * inside:.0f}%; "
          f"|held-out - test| mean {np.mean(gap):.2f}, largest {np.max(gap):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
