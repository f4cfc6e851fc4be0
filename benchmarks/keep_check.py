"""Test R@1 of the defaults and of ``tune`` on the six real directions, for the library in a given
code tree: run it once per tree to check that a change keeps them.

    git worktree add /tmp/before <commit>
    python benchmarks/keep_check.py /tmp/before > before.json
    python benchmarks/keep_check.py . > after.json            (data; ~2 min a tree, cached)
"""
import json
import os
import sys

sys.path.insert(0, os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "."))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

import invgc_faiss  # noqa: E402
from invgc_faiss.lab.datasets import directions, load_bible_split  # noqa: E402


def recall_at_1(index, queries):
    _, found = index.search(queries, 1)
    return 100.0 * float(np.mean(found[:, 0] == np.arange(queries.shape[0])))


def main():
    out = {"tree": os.path.dirname(invgc_faiss.__file__), "version": invgc_faiss.__version__}
    for lang in ("deu", "zho", "swh"):
        split = load_bible_split("eng", lang, bank_size=20000, tune_size=2000)
        for label, queries, gallery, (query_bank, gallery_bank), _ in directions(split, "eng",
                                                                                 lang):
            d = queries.shape[1]
            result = invgc_faiss.tune(query_bank, gallery_bank)
            tuned = result.index(faiss.IndexFlatIP(d))
            defaults = invgc_faiss.InvGCIndex(faiss.IndexFlatIP(d), query_bank=query_bank)
            for index in (tuned, defaults):
                index.add(gallery)
            out[label] = {"tune": recall_at_1(tuned, queries), "params": result.params,
                          "defaults": recall_at_1(defaults, queries)}
            print(label, out[label], file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
