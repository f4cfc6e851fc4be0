"""The defaults study: which untuned setting may be the constructor default.

For each real pair (eng-deu, eng-zho, eng-swh; both directions) and generated cone data, with the
test split of :func:`invgc_faiss.lab.datasets.load_bible_split` (1,974 verse pairs, 20,175 reference
pairs as banks), it measures test R@1/R@5/R@10 of:

* plain faiss;
* every candidate default, with NO tuning (projection form: query bank only, both banks, gallery
  bank only; pools 0.05/0.1/0.2; whole banks and banks sampled to 4,096 / 1,024 rows; the paper
  form at the rates the label-free tuner picked most often, r_g 0.25, r_q 1.5, and at the old
  default r = 0.3, pool 0.01);
* ``invgc_faiss.tune`` on the 20,175 reference pairs (both forms, do-no-harm rule), with its time;
* NNN, the best peer of the earlier evaluation, tuned label-free on the split's tuning pairs;
* for unpaired banks: whether the grid point of least k-skewness (top-10 occurrences of held-out
  bank rows) tracks the point of best held-out R@1.

Rule (issue "Right by default"): pick the candidate whose worst direction loses least to plain,
then the highest mean gain. Run: ``python benchmarks/defaults_study.py [--out benchmarks/results]``
(data extra; about 15 minutes on 2 cores once the embeddings are cached).
"""
import argparse
import json
import os
import sys
import time

import faiss
import numpy as np

import invgc_faiss
from invgc_faiss import InvGCIndex
from invgc_faiss.correction import DEFAULT_MAX_BANK_SIZE
from invgc_faiss.rates import TUNING_GRIDS
from invgc_faiss.heldout import invgc_grid_scores
from invgc_faiss.measures import diagonal_ranks, top_k_skewness
from invgc_faiss.lab import metrics
from invgc_faiss.lab.datasets import directions, load_bible_split
from invgc_faiss.lab.grid_search import tune_method
from invgc_faiss.lab.methods import METHODS
from invgc_faiss.lab.synthetic import make_cone_pairs

CANDIDATES = {
    # name: (InvGCIndex keyword arguments, which banks are given)
    "proj q rho1 pool.05": ({"rho_q": 1.0, "pool_rate": 0.05, "max_bank_size": None}, "query"),
    "proj q rho1 pool.1": ({"rho_q": 1.0, "pool_rate": 0.1, "max_bank_size": None}, "query"),
    "proj q rho1 pool.2": ({"rho_q": 1.0, "pool_rate": 0.2, "max_bank_size": None}, "query"),
    "proj q rho1 pool.2 M4096": ({"rho_q": 1.0, "pool_rate": 0.2, "max_bank_size": 4096}, "query"),
    "proj q rho1 pool.2 M1024": ({"rho_q": 1.0, "pool_rate": 0.2, "max_bank_size": 1024}, "query"),
    "proj gq rho1 pool.2 M4096": ({"rho_g": 1.0, "rho_q": 1.0, "pool_rate": 0.2,
                                   "max_bank_size": 4096}, "both"),
    "proj g rho1 pool.2 M4096": ({"rho_g": 1.0, "pool_rate": 0.2, "max_bank_size": 4096},
                                 "gallery"),
    "proj g rho.5 pool.2 M4096": ({"rho_g": 0.5, "pool_rate": 0.2, "max_bank_size": 4096},
                                  "gallery"),
    "paper g r.25 pool.2 M4096": ({"r_g": 0.25, "pool_rate": 0.2, "max_bank_size": 4096},
                                  "gallery"),
    "paper g r.5 pool.2 M4096": ({"r_g": 0.5, "pool_rate": 0.2, "max_bank_size": 4096},
                                 "gallery"),
    "paper .25/1.5 pool.1": ({"r_g": 0.25, "r_q": 1.5, "pool_rate": 0.1, "max_bank_size": None},
                             "both"),
    "paper .25/1.5 pool.2 M4096": ({"r_g": 0.25, "r_q": 1.5, "pool_rate": 0.2,
                                    "max_bank_size": 4096}, "both"),
    "paper old .3/.3 pool.01": ({"r_g": 0.3, "r_q": 0.3, "pool_rate": 0.01,
                                 "max_bank_size": None}, "both"),
}


def recalls(index, queries):
    _, I = index.search(queries, 10)
    ranks = metrics.ground_truth_ranks(I, np.arange(queries.shape[0]))
    return {f"R@{k}": 100.0 * float(np.mean(ranks <= k)) for k in (1, 5, 10)}


def evaluate_direction(label, queries, gallery, banks, tuning, log):
    query_bank, gallery_bank = banks
    d = queries.shape[1]
    plain = faiss.IndexFlatIP(d)
    plain.add(gallery)
    rows = [{"direction": label, "setting": "plain", **recalls(plain, queries)}]
    for name, (params, which) in CANDIDATES.items():
        given = {"query_bank": query_bank if which in ("query", "both") else None,
                 "gallery_bank": gallery_bank if which in ("gallery", "both") else None}
        start = time.perf_counter()
        index = InvGCIndex(faiss.IndexFlatIP(d), **given, **params)
        index.add(gallery)
        rows.append({"direction": label, "setting": name, **recalls(index, queries),
                     "build_s": time.perf_counter() - start})
        log(f"{label} {name}: R@1 {rows[-1]['R@1']:.1f}")
    result = invgc_faiss.tune(query_bank, gallery_bank)
    index = result.index()
    index.add(gallery)
    rows.append({"direction": label, "setting": "tuned", **recalls(index, queries),
                 "tune_s": result.seconds, "params": result.params,
                 "decision": result.decision, "gain_interval": list(result.gain_interval)})
    log(f"{label} tuned ({result.seconds:.1f} s): R@1 {rows[-1]['R@1']:.1f}  {result.params}")
    params, _ = tune_method("nnn", *tuning)
    peer = METHODS["nnn"][1](params, query_bank, gallery_bank)(d)
    peer.add(gallery)
    rows.append({"direction": label, "setting": "NNN (tuned)", **recalls(peer, queries),
                 "params": params})
    for row in rows:
        row["dR@1"] = row["R@1"] - rows[0]["R@1"]
    return rows


def label_free_statistic(query_bank, gallery_bank, holdout=2000, seed=0):
    """Does k-skewness track R@1? Over both forms' tuning grids, compare the point of least
    k-skewness of the top-10 occurrences -- of held-out gallery rows under held-out query rows
    of *other* pairs, as unpaired banks would give -- with the point of best held-out R@1
    (computed from the pairs, for judging only).

    Returns a dict: Spearman correlation of -skewness with R@1 over the grid, held-out R@1 of
    the skewness-chosen point, of the R@1-chosen point, of plain, and both points' parameters."""
    m = query_bank.shape[0]
    order = np.random.default_rng(seed).permutation(m)
    held, unpaired, rest = (np.sort(order[:holdout]), np.sort(order[holdout:2 * holdout]),
                            np.sort(order[2 * holdout:]))
    queries = np.vstack([query_bank[held], query_bank[unpaired]])  # paired rows, then others
    gallery = gallery_bank[held]
    points = []
    for form, form_grid in TUNING_GRIDS.items():
        for params, scores in invgc_grid_scores(queries, gallery, query_bank[rest],
                                                gallery_bank[rest], form, form_grid,
                                                max_bank_size=DEFAULT_MAX_BANK_SIZE):
            skew = top_k_skewness(scores[holdout:])
            r1 = 100.0 * float(np.mean(diagonal_ranks(scores[:holdout]) == 1))
            points.append((params, skew, r1))
    skews = np.array([p[1] for p in points])
    r1s = np.array([p[2] for p in points])
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    by_skew, by_r1 = points[int(np.argmin(skews))], points[int(np.argmax(r1s))]
    plain = 100.0 * float(np.mean(diagonal_ranks(queries[:holdout] @ gallery.T) == 1))
    return {"spearman": float(np.corrcoef(rank(-skews), rank(r1s))[0, 1]),
            "R@1 by skewness": by_skew[2], "R@1 best": by_r1[2], "R@1 plain": plain,
            "params by skewness": by_skew[0], "params best": by_r1[0]}


def summary(rows):
    """Per setting: worst and mean dR@1 over the real directions, and mean R@1."""
    real = [r for r in rows if r["direction"] != "synthetic"]
    out = []
    for setting in dict.fromkeys(r["setting"] for r in real):
        deltas = [r["dR@1"] for r in real if r["setting"] == setting]
        out.append({"setting": setting, "worst dR@1": min(deltas),
                    "mean dR@1": float(np.mean(deltas)),
                    "mean R@1": float(np.mean([r["R@1"] for r in real if r["setting"] == setting]))})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--langs", nargs="+", default=["deu", "zho", "swh"])
    args = parser.parse_args()

    def log(message):
        print(message, file=sys.stderr, flush=True)

    rows = []
    statistic = {}
    for lang in args.langs:
        split = load_bible_split("eng", lang, bank_size=20000, tune_size=2000)
        for label, queries, gallery, banks, tuning in directions(split, "eng", lang):
            rows += evaluate_direction(label, queries, gallery, banks, tuning, log)
            statistic[label] = label_free_statistic(*banks)
            log(f"{label} label-free statistic: {statistic[label]}")
    synthetic = make_cone_pairs(2000, 8000, 64, seed=0)
    label, queries, gallery, banks, tuning = directions(synthetic, "A", "B")[0]
    rows += evaluate_direction("synthetic", queries, gallery, banks, tuning, log)

    directions_seen = list(dict.fromkeys(r["direction"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    lines = ["test R@1 (dR@1 against plain) per direction; tuned = invgc_faiss.tune on the "
             "reference pairs", ""]
    lines.append(f"{'setting':<28}" + "".join(f"{d:>16}" for d in directions_seen))
    for setting in settings:
        cells = []
        for d in directions_seen:
            row = next(r for r in rows if r["direction"] == d and r["setting"] == setting)
            cells.append(f"{row['R@1']:6.1f} ({row['dR@1']:+5.1f})")
        lines.append(f"{setting:<28}" + "".join(f"{c:>16}" for c in cells))
    lines += ["", "over the six real directions:",
              f"{'setting':<28}{'worst dR@1':>12}{'mean dR@1':>12}{'mean R@1':>10}"]
    for s in summary(rows):
        lines.append(f"{s['setting']:<28}{s['worst dR@1']:12.1f}{s['mean dR@1']:12.2f}"
                     f"{s['mean R@1']:10.1f}")
    lines += ["", "label-free statistic (unpaired banks): least k-skewness of the top-10 "
              "occurrences vs best held-out R@1 over both forms' grids",
              f"{'direction':<12}{'spearman':>9}{'R@1 skew':>10}{'R@1 best':>10}{'plain':>8}"
              "  point of least skewness"]
    for label, st in statistic.items():
        lines.append(f"{label:<12}{st['spearman']:9.2f}{st['R@1 by skewness']:10.1f}"
                     f"{st['R@1 best']:10.1f}{st['R@1 plain']:8.1f}  "
                     f"{json.dumps(st['params by skewness'])}")
    lines += ["", "tuned: time, decision, parameters"]
    for row in rows:
        if row["setting"] == "tuned":
            lines.append(f"{row['direction']:<12} {row['tune_s']:6.1f} s  {row['decision']}  "
                         f"{json.dumps(row['params'])}")
    text = "\n".join(lines)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "defaults_study.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "defaults_study.json"), "w") as f:
        json.dump({"rows": rows, "summary": summary(rows), "statistic": statistic}, f, indent=1)


if __name__ == "__main__":
    main()
