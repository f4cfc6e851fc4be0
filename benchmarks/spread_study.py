"""Where there is no cone: plain, renormalization, the defaults and ``tune`` on spread variants.

    python benchmarks/spread_study.py                 # six real directions, paraphrases, generated
    python benchmarks/spread_study.py --datasets deu --variants as_is whitened
    python benchmarks/spread_study.py --redo defaults # recompute one method, keep the other rows

Data (test pairs only for the figures; every map, bank and tuning uses the reference pairs):

* ``deu``, ``zho``, ``swh``: English <-> German / Chinese / Swahili Bible verses, multilingual
  E5-small (1,974 test pairs, 20,175 reference pairs), both directions;
* ``paraphrase``: English <-> English, the KJV and the modern translation "3" of the same
  verses (translation "2" is nearly the KJV's text), embedded with the static 256-d wordllama
  encoder, both directions;
* ``generated``: cone pairs from :func:`invgc_faiss.lab.synthetic.make_cone_pairs` (d = 384;
  a safety check, not a quality claim), one direction.

Each as it comes and in the spread variants of :mod:`invgc_faiss.lab.spread` (centered on a shared
mean, centered per side, PCA-whitened, the outputs of an ITC adapter trained on the reference
pairs). Methods, test R@1: plain ``IndexFlatIP``; renormalization R1/R2 of both sides and of the
queries only (:mod:`invgc_faiss.renormalization`); ``defaults``: ``InvGCIndex(inner,
query_bank=...)`` with every default of the library as it is now; ``projection``: the projection
form at the 0.5 defaults (``rho_q = 1``, pool 0.2, 2,048-row sample) whatever the defaults do;
``tune``: ``invgc_faiss.tune`` on the reference pairs (every form it weighs), its index.
Statistics: mean and nearest-neighbour cosine of the query bank and of the test gallery, the norm
of the query bank's mean, and what the defaults' fit reports (``report_.crowding``).

Rows are kept in a JSON file (``--out``); a rerun computes only what is missing (or ``--redo``).
"""
import argparse
import dataclasses
import json
import os
import sys
import time
import warnings

import faiss
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import invgc_faiss  # noqa: E402
from invgc_faiss import InvGCIndex  # noqa: E402
from invgc_faiss.lab.datasets import directions, load_bible_split  # noqa: E402
from invgc_faiss.lab.spread import VARIANTS, crowding, spread_variant  # noqa: E402
from invgc_faiss.renormalization import Renormalization  # noqa: E402

DATASETS = ("deu", "zho", "swh", "paraphrase", "generated")
RENORMS = {"R1": ("R1", "both"), "R2": ("R2", "both"), "R1_query": ("R1", "query"),
           "R2_query": ("R2", "query")}
METHODS = ("plain", *RENORMS, "projection", "defaults", "tune")


def load(name):
    if name == "generated":
        from invgc_faiss.lab.synthetic import make_cone_pairs
        return make_cone_pairs(n_test=2000, n_bank=20000, d=384, seed=0, tune_fraction=0.1), \
            ("gen_q", "gen_g"), 1
    if name == "paraphrase":
        from invgc_faiss.lab.teachers import wordllama_cache
        split = load_bible_split("k", "3", bank_size=20000, tune_size=2000,
                                 cache=wordllama_cache())
        return split, ("kjv", "eng3"), 2
    return load_bible_split("eng", name, bank_size=20000, tune_size=2000), ("eng", name), 2


def cached_variant(split, name, variant, folder):
    """:func:`spread_variant`, kept in ``folder`` (the ITC variant trains an adapter)."""
    path = os.path.join(folder, f"{name}-{variant}.npz")
    fields = ("queries", "gallery", "bank_queries", "bank_gallery")
    if os.path.exists(path):
        with np.load(path) as arrays:
            n = split.tune_bank_queries.shape[0]
            bank_q, bank_g = arrays["bank_queries"], arrays["bank_gallery"]
            return dataclasses.replace(
                split, queries=arrays["queries"], gallery=arrays["gallery"],
                bank_queries=bank_q, bank_gallery=bank_g, tune_bank_queries=bank_q[:n],
                tune_queries=bank_q[n:], tune_bank_gallery=bank_g[:n], tune_gallery=bank_g[n:])
    spread = spread_variant(split, variant)
    os.makedirs(folder, exist_ok=True)
    np.savez(path + ".tmp.npz", **{f: getattr(spread, f) for f in fields})
    os.replace(path + ".tmp.npz", path)
    return spread


def recall_at_1(index, queries):
    _, found = index.search(queries, 1)
    return 100.0 * float(np.mean(found[:, 0] == np.arange(queries.shape[0])))


def flat(d):
    return faiss.IndexFlatIP(d)


def evaluate(method, queries, gallery, query_bank, gallery_bank):
    """Test R@1 of one method, and what its build said (params, warnings, report)."""
    d = queries.shape[1]
    info = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        if method == "plain":
            index = flat(d)
        elif method in RENORMS:
            kind, sides = RENORMS[method]
            index = InvGCIndex(flat(d), query_bank=query_bank, gallery_bank=gallery_bank,
                               alignment=Renormalization(kind, sides).fit(query_bank,
                                                                          gallery_bank),
                               rho_g=0.0, rho_q=0.0)
        elif method in ("projection", "defaults"):
            rates = {"rho_q": 1.0, "pool_rate": 0.2, "max_bank_size": 2048} \
                if method == "projection" else {}
            index = InvGCIndex(flat(d), query_bank=query_bank, **rates)
            report = index.correction.report_
            info["crowding"] = report.crowding
            info["not_crowded"] = report.not_crowded
        elif method == "tune":
            result = invgc_faiss.tune(query_bank, gallery_bank)
            info["params"] = result.params
            info["decision"] = result.decision
            index = result.index(flat(d))
        else:
            raise ValueError(method)
        index.add(gallery)
        info["seconds"] = time.perf_counter() - start
    info["warnings"] = [str(w.message) for w in caught]
    return recall_at_1(index, queries), info


def statistics(queries, gallery, query_bank):
    qb_mean, qb_nn = crowding(query_bank)
    g_mean, g_nn = crowding(gallery)
    return {"query_bank_mean_cos": qb_mean, "query_bank_nn_cos": qb_nn,
            "gallery_mean_cos": g_mean, "gallery_nn_cos": g_nn,
            "query_bank_mean_norm": float(np.linalg.norm(query_bank.mean(axis=0,
                                                                         dtype=np.float64)))}


def table(rows):
    """The markdown table of the rows kept: one line per (data, variant, direction)."""
    cells = {}
    for row in rows.values():
        cells.setdefault((row["dataset"], row["direction"], row["variant"]), {})[row["method"]] = row
    lines = ["| data | direction | variant | mean cos | nn cos | shared | plain | R1 | R2 | R1 q | "
             "R2 q | 0.5 defaults | defaults | tune (form) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
             "---: | --- |"]
    order = {v: i for i, v in enumerate(VARIANTS)}
    for (name, label, variant), got in sorted(cells.items(), key=lambda kv: (
            DATASETS.index(kv[0][0]), kv[0][1], order[kv[0][2]])):
        any_row = next(iter(got.values()))
        crowd = (got.get("defaults") or got.get("projection") or {}).get("crowding") or {}

        def r1(method):
            return f"{got[method]['R@1']:.1f}" if method in got else "-"

        tuned = got.get("tune")
        form = "" if tuned is None else f" ({tuned['params']['form']})"
        lines.append(f"| {name} | {label} | {variant} | {any_row['query_bank_mean_cos']:.2f} | "
                     f"{any_row['query_bank_nn_cos']:.2f} | "
                     f"{crowd.get('shared_direction', float('nan')):.2f} | "
                     + " | ".join(r1(m) for m in ("plain", *RENORMS, "projection", "defaults"))
                     + f" | {r1('tune')}{form} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--redo", nargs="*", default=[], choices=METHODS)
    parser.add_argument("--table", action="store_true", help="print the table of --out, run nothing")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "spread_study.json"))
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                        "invgc-faiss", "spread"),
                        help="folder keeping the variants' arrays between runs")
    args = parser.parse_args()
    from machine import describe

    state = {"rows": {}}
    if os.path.exists(args.out):
        with open(args.out) as f:
            state = json.load(f)
    rows = state["rows"]
    if args.table:
        print(state.get("machine", ""))
        print(table(rows))
        return
    for name in args.datasets:
        split, sides, n_directions = load(name)
        for variant in args.variants:
            spread = None
            for label, queries, gallery, (query_bank, gallery_bank), _ in directions(
                    split, *sides)[:n_directions]:
                for method in args.methods:
                    key = f"{name}|{variant}|{label}|{method}"
                    if key in rows and method not in args.redo:
                        continue
                    if spread is None:
                        start = time.perf_counter()
                        spread = cached_variant(split, name, variant, args.cache)
                        print(f"{name} {variant}: variant made in "
                              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
                        views = {lab: v for lab, *v in directions(spread, *sides)}
                    queries, gallery, (query_bank, gallery_bank), _ = views[label]
                    r1, info = evaluate(method, queries, gallery, query_bank, gallery_bank)
                    rows[key] = {"dataset": name, "variant": variant, "direction": label,
                                 "method": method, "R@1": r1, **info,
                                 **statistics(queries, gallery, query_bank)}
                    print(f"{key}: R@1 {r1:.2f}  {info.get('params', '')} "
                          f"{info.get('crowding', '')} ({info['seconds']:.1f} s)",
                          file=sys.stderr, flush=True)
                    state["machine"] = describe()
                    tmp = args.out + ".tmp"
                    with open(tmp, "w") as f:
                        json.dump(state, f, indent=1)
                    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
