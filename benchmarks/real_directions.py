"""The README's table: test R@1 of plain faiss, the defaults and ``tune`` on the real directions.

    python benchmarks/real_directions.py [deu zho swh]    (data extra; ~1 min a language, cached)

For English <-> each language (1,974 test verse pairs, 20,175 reference pairs as banks): plain
``IndexFlatIP``; ``InvGCIndex(IndexFlatIP, query_bank=...)`` with every default, and with
``max_bank_size=4096`` (the default before 0.3) beside it; and the index ``invgc_faiss.tune``
builds from the reference pairs (with its printout for eng->deu). Prints the fit time and any
warning of the default construction.
"""
import os
import sys
import time
import warnings

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import invgc_faiss  # noqa: E402
from invgc_faiss import InvGCIndex  # noqa: E402
from invgc_faiss.lab.datasets import directions, load_bible_split  # noqa: E402


def recall_at_1(index, queries):
    _, found = index.search(queries, 1)
    return 100.0 * float(np.mean(found[:, 0] == np.arange(queries.shape[0])))


def main():
    for lang in sys.argv[1:] or ["deu", "zho", "swh"]:
        split = load_bible_split("eng", lang, bank_size=20000, tune_size=2000)
        for label, queries, gallery, banks, _ in directions(split, "eng", lang):
            query_bank, gallery_bank = banks
            d = queries.shape[1]
            plain = faiss.IndexFlatIP(d)
            plain.add(gallery)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                start = time.perf_counter()
                default = InvGCIndex(faiss.IndexFlatIP(d), query_bank=query_bank)
                fit_s = time.perf_counter() - start
                default.add(gallery)
                before = InvGCIndex(faiss.IndexFlatIP(d), query_bank=query_bank, max_bank_size=4096)
                before.add(gallery)
            result = invgc_faiss.tune(query_bank, gallery_bank)
            if label == "eng->deu":
                print(result)
            tuned = result.index()
            tuned.add(gallery)
            print(f"{label}: plain {recall_at_1(plain, queries):.2f}  defaults "
                  f"{recall_at_1(default, queries):.2f} (max_bank_size 4096: "
                  f"{recall_at_1(before, queries):.2f}; fit {fit_s:.2f} s; warnings "
                  f"{[str(w.message) for w in caught]})  tuned {recall_at_1(tuned, queries):.2f} "
                  f"(tune {result.seconds:.1f} s, {result.params})", flush=True)


if __name__ == "__main__":
    main()
