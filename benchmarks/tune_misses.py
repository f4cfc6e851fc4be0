"""What ``tune`` sees on held-out pairs where it misses the best route on the test books.

    python benchmarks/tune_misses.py > benchmarks/results/tune_misses.txt       (~1 min, cached)

Issue 34 asks ``tune`` to reach max(plain, renormalization, its InvGC forms) - 0.3 test R@1 on
every spread setting of ``spread_study.py``; it misses on four (results/spread_study.txt,
results/reduced_quality.txt). This prints ``tune``'s held-out table on those four, to show why:
the held-out pairs (random reference verses) rank the routes otherwise than the test books do,
or the cross-fitted gain's interval reaches 0 and the do-no-harm rule keeps the plain index.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import invgc_faiss  # noqa: E402
import spread_study  # noqa: E402
from invgc_faiss.lab.datasets import directions  # noqa: E402
from machine import describe  # noqa: E402

MISSES = (("deu", "centered_per_side", "deu->eng"), ("swh", "centered_per_side", "swh->eng"),
          ("paraphrase", "centered_shared", "eng3->kjv"), ("paraphrase", "whitened", "eng3->kjv"))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "invgc-faiss", "spread")


def main():
    print("# python benchmarks/tune_misses.py, version", invgc_faiss.__version__)
    print(describe())
    for name, variant, wanted in MISSES:
        split, sides, _ = spread_study.load(name)
        spread = spread_study.cached_variant(split, name, variant, CACHE)
        for label, _, _, (query_bank, gallery_bank), _ in directions(spread, *sides):
            if label == wanted:
                print(f"\n## {name} {variant} {label}")
                print(invgc_faiss.tune(query_bank, gallery_bank))


if __name__ == "__main__":
    main()
