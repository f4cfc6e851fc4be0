"""The query-side correction on the real directions: plain, query-side, baked defaults (test R@1).

    python benchmarks/query_side.py [deu zho swh]          (data extra; ~1 min, cached)

For English <-> each language (1,974 test verse pairs, 20,175 reference pairs as banks), test R@1
of the gallery in a flat inner-product index searched four ways: plain; with the queries moved
off the query bank's mean direction (``QueryCorrection``, rho 1, through ``query_corrected``:
the gallery untouched); the same over an ``HNSW32`` index at faiss's default efSearch; and the
baked index with every default (``InvGCIndex(IndexFlatIP, query_bank=...)``), for reference.
"""
import os
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss import InvGCIndex  # noqa: E402
from invgc_faiss.lab.datasets import directions, load_bible_split  # noqa: E402
from invgc_faiss.query_side import QueryCorrection, query_corrected  # noqa: E402


def recall_at_1(index, queries):
    _, found = index.search(queries, 1)
    return 100.0 * float(np.mean(found[:, 0] == np.arange(queries.shape[0])))


def main():
    print(f"{'direction':<10} {'plain':>6} {'query-side':>10} {'query-side HNSW32':>17} "
          f"{'baked defaults':>14} {'fit ms':>7}")
    for lang in sys.argv[1:] or ["deu", "zho", "swh"]:
        split = load_bible_split("eng", lang, bank_size=20000, tune_size=2000)
        for label, queries, gallery, banks, _ in directions(split, "eng", lang):
            query_bank = banks[0]
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
            print(f"{label:<10} {recall_at_1(plain, queries):>6.2f} "
                  f"{recall_at_1(query_corrected(plain, correction), queries):>10.2f} "
                  f"{recall_at_1(query_corrected(hnsw, correction), queries):>17.2f} "
                  f"{recall_at_1(baked, queries):>14.2f} {fit_ms:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
