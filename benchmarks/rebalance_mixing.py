"""Does the teacher mixing weight matter? Structure-aware adapters with lam held at 1 (English
teacher only) and at 0.5, on eng->deu with German noise sigma = 1, 0.5, 0 (needs the data extra).

    python benchmarks/rebalance_mixing.py 1 0.5 0

Same protocol and table as ``python -m invgc_faiss rebalance`` (rows without InvGC), so the rows
compare with the learned-lam "rebalance" rows of benchmarks/results/rebalance_stress.txt.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss.lab.cli import REBALANCE_COLUMNS  # noqa: E402
from invgc_faiss.lab.datasets import load_bible_split, verse_texts  # noqa: E402
from invgc_faiss.lab.evaluation import format_table  # noqa: E402
from invgc_faiss.rebalance import ALIGNMENTS, RebalancingAdapter  # noqa: E402
from invgc_faiss.lab.stress import degraded_split, evaluate_setting  # noqa: E402
from invgc_faiss.lab.rouge import rouge_l_matrix  # noqa: E402


def fixed(lam):
    return lambda **kw: RebalancingAdapter(mixing=lam, learn_mixing=False, **kw)


def main():
    for lam in (1.0, 0.5):
        ALIGNMENTS[f"fixed{lam}"] = fixed(lam)
    split = load_bible_split("eng", "deu", bank_size=20000, tune_size=2000)
    relevance = rouge_l_matrix(verse_texts(split.test_keys))
    rows = []
    for sigma in map(float, sys.argv[1:] or ["1", "0.5", "0"]):
        start = time.time()
        rows += evaluate_setting(f"deu noise {sigma:g}", degraded_split(split, sigma, "gallery"),
                                 relevance, split.queries, split.gallery,
                                 methods=["fixed1.0", "fixed0.5"], invgc=(False,))
        print(f"sigma {sigma:g}: {time.time() - start:.0f} s", flush=True)
    print(format_table(rows, REBALANCE_COLUMNS + ["epochs"]))
    json.dump(rows, sys.stderr, default=str)


if __name__ == "__main__":
    main()
