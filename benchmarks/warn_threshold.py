"""What the fit-time knob checks see, against what each knob setting costs in R@1.

    python benchmarks/warn_threshold.py real          # data; about 4 minutes on 2 cores
    python benchmarks/warn_threshold.py 0.001 0.01    # generated 200k bank; about 15 minutes

For every bank sample size, IVF ``nprobe`` and HNSW ``efSearch`` (and Proj32 on the 200k bank),
given explicitly as a user would: the offset check's mean cosine and norm error
(``correction.report_.agreement``), the ranking check's top-1 change (``correction.report_.top1_change``),
whether fitting warned, and the test-split R@1 change against exact search over the whole banks.
Data: real eng->deu (20k banks; paper form tuned label-free, projection form at its defaults) and
the generated 200k-row bank of ``bench_scale.py bigbank`` (projection form, pools 0.001 and 0.01).
It chose ``checks.WARN_MAX_TOP1_CHANGE``: the largest top-1 change with every setting at or
below it within 1 R@1 of exact on all four, where the offset cosine has no such threshold.
"""
import argparse
import json
import os
import sys
import warnings

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss import InvGC, InvGCIndex  # noqa: E402
from invgc_faiss.bank_search import build_bank_index  # noqa: E402


def recall_at_1(correction, split):
    index = InvGCIndex(faiss.IndexFlatIP(split.gallery.shape[1]), correction=correction)
    index.add(split.gallery)
    _, ids = index.search(split.queries, 1)
    return 100.0 * float(np.mean(ids[:, 0] == np.arange(len(split.queries))))


def measure(label, split, params, settings, log):
    """One row per setting: what the checks saw and the R@1 change."""
    banks = {"query_bank": split.bank_queries, "gallery_bank": split.bank_gallery}
    exact = InvGC(**{**params, "max_bank_size": None}).fit(**banks)
    base = recall_at_1(exact, split)
    rows = []
    for name, extra in settings:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            correction = InvGC(**{"max_bank_size": None, **params, **extra}).fit(**banks)
        agreement = next(iter(correction.report_.agreement.values()), {})
        rows.append({"data": label, "setting": name, "cosine": agreement.get("cosine"),
                     "norm_error": agreement.get("norm_error"),
                     "top1_change": correction.report_.top1_change,
                     "warned": any(issubclass(w.category, RuntimeWarning) for w in caught),
                     "dR@1": recall_at_1(correction, split) - base})
        log(rows[-1])
    return rows


def real_rows(log):
    from invgc_faiss.lab.datasets import load_bible_split
    from invgc_faiss.lab.grid_search import tune_method

    split = load_bible_split("eng", "deu", bank_size=20000, tune_size=2000)
    paper, _ = tune_method("invgc_localadj", split.tune_queries, split.tune_gallery,
                           split.tune_bank_queries, split.tune_bank_gallery)
    nlist = int(4 * np.sqrt(split.bank_gallery.shape[0]))
    both = lambda spec: {"gallery_bank_index": spec, "query_bank_index": spec}  # noqa: E731
    settings = [(f"sample {s}", {"max_bank_size": s}) for s in (8192, 4096, 2048, 1024, 512,
                                                                256, 128)]
    settings += [(f"IVF{nlist} nprobe={p}", {**both(f"IVF{nlist},Flat"),
                                             "bank_search_params": f"nprobe={p}"})
                 for p in (4, 8, 16, 32, 64, 128)]
    settings += [(f"HNSW32 efSearch={e}", {**both("HNSW32"), "bank_search_params": f"efSearch={e}"})
                 for e in (16, 32, 64, 128, 256)]
    rows = []
    for label, params in (("real paper", paper),
                          ("real projection", {"rho_q": 1.0, "pool_rate": 0.2})):
        rows += measure(label, split, params, settings, log)
    return rows


def generated_rows(pool_rate, log):
    from invgc_faiss.lab.synthetic import make_cone_pairs

    split = make_cone_pairs(n_test=5000, n_bank=200000, d=384, seed=0)
    bank = split.bank_queries
    nlist = int(4 * np.sqrt(bank.shape[0]))
    ivf, hnsw = build_bank_index(bank, f"IVF{nlist},Flat"), build_bank_index(bank, "HNSW32")
    settings = [(f"sample {s}", {"max_bank_size": s}) for s in (65536, 32768, 16384, 4096)]
    settings += [(f"IVF{nlist} nprobe={p}", {"query_bank_index": ivf,
                                             "bank_search_params": f"nprobe={p}"})
                 for p in (16, 32, 64, 128, 256)]
    settings += [(f"HNSW32 efSearch={e}", {"query_bank_index": hnsw,
                                           "bank_search_params": f"efSearch={e}"})
                 for e in (32, 64, 128, 256, 512)]
    settings += [("Proj32 k_factor_rf=1", {"query_bank_index": "Proj32",
                                           "bank_search_params": "k_factor_rf=1"})]
    return measure(f"gen 200k pool {pool_rate}", split, {"rho_q": 1.0, "pool_rate": pool_rate},
                   settings, log)


def print_rows(rows):
    print(f"{'data':<22}{'setting':<24}{'off cos':>9}{'norm err':>9}{'top-1 chg':>10}"
          f"{'warn':>6}{'dR@1':>8}")
    for r in rows:
        cos = "" if r["cosine"] is None else f"{r['cosine']:.5f}"
        err = "" if r["norm_error"] is None else f"{r['norm_error']:.4f}"
        top1 = "" if r["top1_change"] is None else f"{r['top1_change']:.3f}"
        print(f"{r['data']:<22}{r['setting']:<24}{cos:>9}{err:>9}{top1:>10}"
              f"{'yes' if r['warned'] else 'no':>6}{r['dR@1']:>8.2f}")
    accepted = [r for r in rows if not r["warned"]]
    if accepted:
        worst = min(accepted, key=lambda r: r["dR@1"])
        print(f"\nsettings accepted without a warning: {len(accepted)} of {len(rows)}; the "
              f"largest loss among them: {worst['dR@1']:.2f} R@1 ({worst['data']}, "
              f"{worst['setting']})")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="'real' and/or generated pool rates (0.001 0.01)")
    parser.add_argument("--json", help="save the rows as JSON")
    args = parser.parse_args()
    rows = []
    for data in args.data:
        log = lambda r: print(r, file=sys.stderr, flush=True)  # noqa: E731
        rows += real_rows(log) if data == "real" else generated_rows(float(data), log)
    print_rows(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
