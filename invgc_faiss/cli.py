"""Command line: ``python -m invgc_faiss demo``.

The CLI is the only place that prints; the library logs.
"""
import argparse
import sys

import faiss

from .evaluation import evaluate_method, format_table
from .index import InvGCIndex
from .synthetic import make_cone_pairs

TABLE_COLUMNS = ["method", "R@1", "R@5", "R@10", "MdR", "MnR", "k_skewness", "antihub_rate",
                 "add_s", "search_s"]


def demo_methods(split, r_g, r_q, pool_rate):
    """Plain flat inner-product index vs InvGC (LocalAdj and full) on the same inner index."""
    banks = {"gallery_bank": split.bank_gallery, "query_bank": split.bank_queries,
             "r_g": r_g, "r_q": r_q}
    return {
        "plain": lambda d: faiss.IndexFlatIP(d),
        "invgc_localadj": lambda d: InvGCIndex(faiss.IndexFlatIP(d), pool_rate=pool_rate, **banks),
        "invgc_full": lambda d: InvGCIndex(faiss.IndexFlatIP(d), variant="full", **banks),
    }


def run_demo(args):
    split = make_cone_pairs(args.n_test, args.n_bank, args.dim, seed=args.seed)
    print(f"data: {split.description}")
    print(f"test pairs {split.queries.shape[0]}, bank pairs {split.bank_queries.shape[0]}, "
          f"r_g={args.r_g} r_q={args.r_q} pool_rate={args.pool_rate}")
    rows = []
    for name, build in demo_methods(split, args.r_g, args.r_q, args.pool_rate).items():
        rows.append({"method": name, **evaluate_method(build, split.queries, split.gallery)})
    print(format_table(rows, TABLE_COLUMNS))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m invgc_faiss", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="plain vs InvGC on generated cone data (synthetic)")
    demo.add_argument("--n-test", type=int, default=2000)
    demo.add_argument("--n-bank", type=int, default=8000)
    demo.add_argument("--dim", type=int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--r-g", type=float, default=0.3)
    demo.add_argument("--r-q", type=float, default=0.3)
    demo.add_argument("--pool-rate", type=float, default=0.01)
    demo.set_defaults(run=run_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
