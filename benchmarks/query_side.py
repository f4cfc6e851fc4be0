"""The query-side correction beside the baked one: plain, query-side, baked defaults, tuned (R@1).

    python benchmarks/query_side.py [deu zho swh]     (data extra; ~4 min, cached)

For English <-> each language (1,974 test verse pairs, 20,175 reference pairs as banks), test R@1
of the gallery in a flat inner-product index searched six ways: plain; with the queries moved
off the query bank's mean direction (``QueryCorrection``, rho 1, through ``query_corrected``:
the gallery untouched); the same over an ``HNSW32`` index at faiss's default efSearch; the
baked index with every default (``InvGCIndex(IndexFlatIP, query_bank=...)``); the index of
``invgc_faiss.tune`` on the reference pairs (all three forms; the form that won is printed);
and ``tune`` restricted to the query-side form (for an index that cannot be rebuilt). A last
row does the same on generated cone pairs (make_cone_pairs, d 384: a check of the mechanics,
not a quality claim). Then test R@1 of the query-side correction at fixed rates ``rho``.
"""
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import invgc_faiss  # noqa: E402
from invgc_faiss import InvGCIndex  # noqa: E402
from invgc_faiss.lab.datasets import directions, load_bible_split  # noqa: E402
from invgc_faiss.lab.synthetic import make_cone_pairs  # noqa: E402
from invgc_faiss.query_side import QueryCorrection, query_corrected  # noqa: E402


def recall_at_1(index, queries):
    _, found = index.search(queries, 1)
    return 100.0 * float(np.mean(found[:, 0] == np.arange(queries.shape[0])))


def row(label, queries, gallery, query_bank, gallery_bank):
    d = queries.shape[1]
    plain = faiss.IndexFlatIP(d)
    plain.add(gallery)
    start = time.perf_counter()
    correction = QueryCorrection().fit(query_bank)
    fit_ms = 1000 * (time.perf_counter() - start)
    hnsw = faiss.index_factory(d, "HNSW32", faiss.METRIC_INNER_PRODUCT)
    hnsw.add(gallery)
    baked = InvGCIndex(faiss.IndexFlatIP(d), query_bank=query_bank)
    baked.add(gallery)
    tuned_result = invgc_faiss.tune(query_bank, gallery_bank)
    tuned = tuned_result.index()
    tuned.add(gallery)
    side_result = invgc_faiss.tune(query_bank, gallery_bank, forms=("query-side",))
    side_rho = side_result.params["rho"]
    print(f"{label:<10} {recall_at_1(plain, queries):>6.2f} "
          f"{recall_at_1(query_corrected(plain, correction), queries):>10.2f} "
          f"{recall_at_1(query_corrected(hnsw, correction), queries):>10.2f} "
          f"{recall_at_1(baked, queries):>8.2f} {recall_at_1(tuned, queries):>7.2f} "
          f"{tuned_result.params['form']:<11} "
          f"{recall_at_1(side_result.index(plain), queries):>8.2f} {side_rho:>5} "
          f"{fit_ms:>7.1f}", flush=True)


RHOS = (0.6, 0.7, 0.8, 0.9, 1.0)


def rho_row(label, queries, gallery, query_bank):
    recalls = []
    for rho in RHOS:
        flat = faiss.IndexFlatIP(queries.shape[1])
        flat.add(gallery)
        recalls.append(recall_at_1(query_corrected(flat, QueryCorrection(rho).fit(query_bank)),
                                   queries))
    print(f"{label:<10} " + " ".join(f"{r:>7.2f}" for r in recalls), flush=True)


def main():
    print(f"{'direction':<10} {'plain':>6} {'query-side':>10} {'q-s HNSW':>10} {'baked':>8} "
          f"{'tuned':>7} {'tuned form':<11} {'tuned qs':>8} {'rho':>5} {'fit ms':>7}")
    langs = sys.argv[1:] or ["deu", "zho", "swh"]
    splits = {lang: load_bible_split("eng", lang, bank_size=20000, tune_size=2000)
              for lang in langs}
    for lang, split in splits.items():
        for label, queries, gallery, banks, _ in directions(split, "eng", lang):
            row(label, queries, gallery, *banks)
    cone = make_cone_pairs(n_test=2000, n_bank=20000, d=384, seed=0, tune_fraction=0.0)
    row("generated", cone.queries, cone.gallery, cone.bank_queries, cone.bank_gallery)
    print(f"\nquery-side correction at fixed rho, test R@1 (flat)\n{'direction':<10} "
          + " ".join(f"{'rho ' + str(rho):>7}" for rho in RHOS))
    for lang, split in splits.items():
        for label, queries, gallery, banks, _ in directions(split, "eng", lang):
            rho_row(label, queries, gallery, banks[0])


if __name__ == "__main__":
    main()
