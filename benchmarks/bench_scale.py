"""Scale benchmark: exact vs approximate vs sampled banks on real data, and a 1M-vector build.

    python benchmarks/bench_scale.py banks   [--query-lang eng --gallery-lang deu]   (data extra)
    python benchmarks/bench_scale.py build   [--n 1000000 --bank 100000 --max-bank-size 12500]
    python benchmarks/bench_scale.py dask    [--n 200000 --bank 20000]                 (dask extra)

    python benchmarks/bench_scale.py bigbank [--bank 200000 --pool-rate 0.01]

``banks``: InvGC LocalAdj on the real benchmark split, in both forms (paper: rates tuned
label-free; projection: the defaults), for each scale knob that changes offsets -- exact
IndexFlatIP bank search, IVF at several nprobe and "auto", HNSW at several efSearch and "auto",
projected banks ("Proj64"/"Proj128": top k from a 64/128-d projection, reranked exactly) on "auto",
bank samples of 8,192 .. 256 rows, float16 rerank offsets -- the table gives the time to correct
10 copies of the test gallery (19,740 rows, so fixed costs do not dominate) and its speed-up
over exact, the offsets' mean cosine and norm ratio to the exact ones, whether the library
warned, and R@1 of the test queries with its change against exact.

``bigbank``: the same columns for exact vs "auto" IVF/HNSW/Proj32/Proj64 on a generated 200k-row
query bank,
and for bank samples of 16,384 and 4,096 rows (the pool stays the same share of the bank)
(scale data: R@1 is on generated pairs, no quality claim).

``build``: a generated cone-shaped gallery (scale data, not a quality claim) written to a .npy
file slice by slice, read back in batches (``read_npy_batches``) and streamed with
``add_in_batches`` into an IVF inner index through InvGC with an
approximate, sampled bank; reports time, vectors/s and peak resident memory against the gallery
and bank bytes.

``dask``: the same kind of gallery built with ``build_distributed`` on a LocalCluster of 1 and of
2 single-threaded worker processes; time, speed-up, and the per-vector cost behind the README's
estimate for 100M vectors.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss import InvGC, InvGCIndex, InvGCRerankIndex, add_in_batches  # noqa: E402
from invgc_faiss.bank_search import best_seconds, offset_agreement  # noqa: E402
from invgc_faiss.streaming import read_npy_batches  # noqa: E402
from invgc_faiss.lab.synthetic import cone_vectors, make_cone_pairs  # noqa: E402

REPEAT = 10


def status_mib(field):
    """``VmHWM`` (peak resident set) or ``VmRSS`` of this process, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss():
    """Make VmHWM start again from the current resident set (Linux clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def offset_agreement_to(exact, correction, rows):
    """Mean cosine and mean norm ratio of ``correction``'s offsets of ``rows`` against the
    ``exact`` correction's, over the banks the rates use."""
    used = correction.rates_.active(correction.bank_names_)
    approx_offsets = correction.offsets(rows, banks=used)[0]
    exact_offsets = exact.offsets(rows, banks=used)[0]
    cosines, ratios = zip(*(offset_agreement(a, e) for a, e in zip(approx_offsets, exact_offsets)))
    return float(np.mean(cosines)), float(np.mean(ratios))


def knob_settings(m, sizes=(8192, 4096, 1024, 256)):
    nlist = int(4 * np.sqrt(m))
    ivf = {"gallery_bank_index": f"IVF{nlist},Flat", "query_bank_index": f"IVF{nlist},Flat"}
    hnsw = {"gallery_bank_index": "HNSW32", "query_bank_index": "HNSW32"}
    configs = [("exact", {})]
    configs += [(f"IVF{nlist} nprobe={p}", {**ivf, "bank_search_params": f"nprobe={p}"})
                for p in (4, 16, 64)]
    configs += [(f"IVF{nlist} auto", ivf)]
    configs += [(f"HNSW32 efSearch={e}", {**hnsw, "bank_search_params": f"efSearch={e}"})
                for e in (64, 256)]
    configs += [("HNSW32 auto", hnsw)]
    configs += [(f"Proj{p} auto", {"gallery_bank_index": f"Proj{p}",
                                   "query_bank_index": f"Proj{p}"}) for p in (64, 128)]
    configs += [(f"sample {size}", {"max_bank_size": size}) for size in sizes if size < m]
    return configs


def measure_knobs(label, params, split, configs, timing_rows, log):
    """One table block: each knob setting's add time, speed-up, offset agreement, warning and
    R@1 against the exact setting of the same parameters."""
    gallery, queries = split.gallery, split.queries
    rows = []
    exact = None
    for name, extra in configs:
        correction = InvGC(**{"max_bank_size": None, **params, **extra})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            correction.fit(query_bank=split.bank_queries, gallery_bank=split.bank_gallery)
            correction.correct(timing_rows[:64])  # warm
            # best of three: on this 2-core machine a slow spell can cover two runs in a row
            correct_s = best_seconds(lambda: correction.correct(timing_rows), repeats=3)[0]
        warned = any(issubclass(w.category, RuntimeWarning) for w in caught)
        exact = exact or (correction, correct_s)
        cosine, ratio = offset_agreement_to(exact[0], correction, gallery)
        index = InvGCIndex(faiss.IndexFlatIP(gallery.shape[1]), correction=correction)
        index.add(gallery)
        r1 = recall_at_1(index, queries)
        rows.append({"form": label, "setting": name, "correct_s": correct_s,
                     "speed_up": exact[1] / correct_s, "offset_cosine": cosine,
                     "norm_ratio": ratio, "warned": warned, "R@1": r1,
                     "search_params": correction.report_.bank_search_params})
        log(rows[-1])
    for row in rows:
        row["dR@1"] = row["R@1"] - rows[0]["R@1"]
    return rows


def recall_at_1(index, queries):
    _, I = index.search(queries, 1)
    return 100.0 * float(np.mean(I[:, 0] == np.arange(queries.shape[0])))


def float16_rows(label, params, split):
    """Rerank mode with float16 against float32 offsets (k * k_factor covers the gallery, so the
    only difference is the storage)."""
    rows = []
    for dtype in ("float32", "float16"):
        index = InvGCRerankIndex(faiss.IndexFlatIP(split.gallery.shape[1]),
                                 gallery_bank=split.bank_gallery, query_bank=split.bank_queries,
                                 offset_dtype=dtype, k_factor=len(split.gallery),
                                 **{"max_bank_size": None, **params})
        index.add(split.gallery)
        offsets = [index.items.columns[f"offsets_{b}"].astype(np.float32)
                   for b in range(len(index.correction.offsets_))]
        rows.append((dtype, offsets, recall_at_1(index, split.queries)))
    (_, exact_offsets, r1_32), (_, half_offsets, r1_16) = rows
    pairs = [offset_agreement(h, e) for h, e in zip(half_offsets, exact_offsets)
             if np.isfinite(e).all() and np.abs(e).sum() > 0]
    return {"form": label, "setting": "rerank float16 offsets", "correct_s": float("nan"),
            "speed_up": float("nan"), "offset_cosine": float(np.mean([c for c, _ in pairs])),
            "norm_ratio": float(np.mean([r for _, r in pairs])), "warned": False, "R@1": r1_16,
            "dR@1": r1_16 - r1_32, "search_params": None}


def print_knob_table(rows, header):
    print(header)
    print(f"{'form':<11}{'setting':<24}{'add s':>8}{'speed-up':>9}{'off cos':>9}{'norm':>7}"
          f"{'warn':>6}{'R@1':>7}{'dR@1':>7}  chosen")
    for r in rows:
        print(f"{r['form']:<11}{r['setting']:<24}{r['correct_s']:>8.2f}{r['speed_up']:>9.2f}"
              f"{r['offset_cosine']:>9.4f}{r['norm_ratio']:>7.3f}{'yes' if r['warned'] else 'no':>6}"
              f"{r['R@1']:>7.2f}{r['dR@1']:>7.2f}  {r['search_params'] or ''}")


def run_banks(args):
    from invgc_faiss.lab.datasets import load_bible_split
    from invgc_faiss.lab.grid_search import tune_method

    split = load_bible_split(args.query_lang, args.gallery_lang, bank_size=args.bank_size,
                             tune_size=args.tune_size)
    paper, _ = tune_method("invgc_localadj", split.tune_queries, split.tune_gallery,
                           split.tune_bank_queries, split.tune_bank_gallery)
    settings = [("paper", paper), ("projection", {"rho_q": 1.0, "pool_rate": 0.2})]
    settings = [(label, params) for label, params in settings if label in args.forms]
    m = split.bank_gallery.shape[0]
    print(f"data: {split.description}")
    print(f"paper form tuned label-free: {paper}; projection form at the defaults (rho_q = 1, "
          f"pool 0.2, query bank only), whole banks unless sampled")
    print(f"plain faiss R@1 = {recall_at_1(plain_index(split.gallery), split.queries):.2f}; "
          f"bank M = {m}; add = correcting {REPEAT} copies of the test gallery")
    timing_rows = np.tile(split.gallery, (REPEAT, 1))
    rows = []
    for label, params in settings:
        rows += measure_knobs(label, params, split, knob_settings(m), timing_rows,
                              lambda r: print(r, file=sys.stderr, flush=True))
        rows.append(float16_rows(label, params, split))
    print_knob_table(rows, "")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def plain_index(gallery):
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    return index


def run_big_bank(args):
    """Speed of "auto" on a large generated bank (scale data: R@1 on generated pairs)."""
    split = make_cone_pairs(n_test=args.n_test, n_bank=args.bank, d=args.dim, seed=0)
    m = split.bank_gallery.shape[0]
    nlist = int(4 * np.sqrt(m))
    params = {"rho_q": 1.0, "pool_rate": args.pool_rate, "max_bank_size": None}
    configs = [("exact", {}), (f"IVF{nlist} auto", {"query_bank_index": f"IVF{nlist},Flat"}),
               ("HNSW32 auto", {"query_bank_index": "HNSW32"})]
    configs += [(f"Proj{p} auto", {"query_bank_index": f"Proj{p}"}) for p in (32, 64)]
    configs += [(f"sample {size}", {"max_bank_size": size}) for size in (16384, 4096)]
    print(f"data: {split.description}")
    print(f"projection form rho_q = 1, pool {args.pool_rate} (k = {int(args.pool_rate * m)}), "
          f"query bank only; add = correcting the {args.n_test} test gallery rows")
    timing_rows = split.gallery
    rows = measure_knobs("projection", params, split, configs, timing_rows,
                         lambda r: print(r, file=sys.stderr, flush=True))
    print_knob_table(rows, "")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def cone_scale_data(folder, n, n_bank, n_train, d=384):
    """A generated cone gallery written to ``folder/gallery.npy`` slice by slice (never all in
    memory), two banks and training rows from the same cone. Returns (path, banks, train)."""
    rng = np.random.default_rng(0)
    axis = cone_vectors(1, d, rng=rng, spread=1.0)[0]
    path = os.path.join(folder, "gallery.npy")
    gallery = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        gallery[start:stop] = cone_vectors(stop - start, d, rng=rng, axis=axis)
    gallery.flush()
    del gallery
    banks = [cone_vectors(n_bank, d, rng=rng, axis=axis) for _ in range(2)]
    return path, banks, cone_vectors(n_train, d, rng=rng, axis=axis)


def run_build(args):
    d = 384
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path, banks, train = cone_scale_data(tmp, args.n, args.bank, args.train, d)
        reset_peak_rss()  # the data generation's own peak is not the build's
        rss_start = status_mib("VmRSS")
        inner = faiss.index_factory(d, args.inner, faiss.METRIC_INNER_PRODUCT)
        start = time.perf_counter()
        index = InvGCIndex(inner, gallery_bank=banks[0], query_bank=banks[1], r_g=0.3, r_q=0.3,
                           pool_rate=args.pool_rate, max_bank_size=args.max_bank_size,
                           gallery_bank_index=args.bank_index, query_bank_index=args.bank_index,
                           bank_search_params=args.bank_search_params)
        index.train(train)
        setup_s = time.perf_counter() - start
        bar = _bar(args.n)
        start = time.perf_counter()
        add_in_batches(index, read_npy_batches(path, args.batch_size), progress=bar)
        add_s = time.perf_counter() - start
        peak = status_mib("VmHWM")
    k = index.correction.offsets_[0].k
    data_mib = (args.n * d * 4 + 2 * args.bank * d * 4) / 2**20
    print(f"1M build: n = {args.n}, banks 2 x {args.bank} (sampled to {args.max_bank_size}, k = {k}), "
          f"bank index {args.bank_index} {args.bank_search_params}, inner {args.inner}")
    print(f"setup (bank indexes, inner training) {setup_s:.1f} s; add {add_s:.1f} s = "
          f"{args.n / add_s:.0f} vectors/s; total {setup_s + add_s:.1f} s")
    print(f"peak RSS during the build {peak:.0f} MiB, of which {rss_start:.0f} MiB before it (runtime, "
          f"banks, training rows); gallery + banks = {data_mib:.0f} MiB; the inner index holds "
          f"{args.n * d * 4 / 2**20:.0f} MiB; peak - gallery - banks = {peak - data_mib:.0f} MiB")


def run_dask(args):
    from dask.distributed import Client, LocalCluster

    from invgc_faiss.distributed import build_distributed

    d = 384
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path, banks, train = cone_scale_data(tmp, args.n, args.bank, 20_000, d)
        results = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                index = InvGCIndex(faiss.index_factory(d, args.inner, faiss.METRIC_INNER_PRODUCT),
                                   gallery_bank=banks[0], query_bank=banks[1], r_g=0.3,
                                   r_q=0.3, pool_rate=args.pool_rate, max_bank_size=None)
                index.train(train)
                start = time.perf_counter()
                build_distributed(client, index, path, chunk_size=args.chunk_size)
                results[workers] = time.perf_counter() - start
    per_vector = results[2] / args.n * 2  # worker-seconds per vector with 2 workers
    print(f"dask build: n = {args.n}, banks 2 x {args.bank}, pool_rate {args.pool_rate}, "
          f"inner {args.inner}, chunks of {args.chunk_size}, 1 thread per worker")
    print(f"{'workers':>8}{'seconds':>10}{'vectors/s':>12}{'speed-up':>10}")
    for workers, seconds in results.items():
        print(f"{workers:>8}{seconds:>10.1f}{args.n / seconds:>12.0f}{results[1] / seconds:>10.2f}")
    print(f"measured cost: {1000 * per_vector:.2f} worker-ms per vector; 100M vectors on N machines "
          f"of 2 such workers ~ {1e8 * per_vector / 2 / 3600:.1f} / N hours (+ merging on the client)")


def _bar(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, unit="vec", file=sys.stderr)
    return lambda n, _total: bar.update(n)  # add_in_batches cannot know a generator's length


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    banks = sub.add_parser("banks")
    banks.add_argument("--query-lang", default="eng")
    banks.add_argument("--gallery-lang", default="deu")
    banks.add_argument("--bank-size", type=int, default=20000)
    banks.add_argument("--tune-size", type=int, default=2000)
    banks.add_argument("--json", help="save the rows as JSON")
    banks.add_argument("--forms", nargs="+", default=["paper", "projection"],
                       choices=["paper", "projection"])
    big = sub.add_parser("bigbank")
    big.add_argument("--bank", type=int, default=200_000)
    big.add_argument("--n-test", type=int, default=5000)
    big.add_argument("--dim", type=int, default=384)
    big.add_argument("--pool-rate", type=float, default=0.01)
    big.add_argument("--json", help="save the rows as JSON")
    build = sub.add_parser("build")
    build.add_argument("--n", type=int, default=1_000_000)
    build.add_argument("--bank", type=int, default=100_000)
    build.add_argument("--train", type=int, default=50_000)
    build.add_argument("--pool-rate", type=float, default=0.01)
    build.add_argument("--max-bank-size", type=int, default=12_500)
    build.add_argument("--bank-index", default="IVF256,Flat")
    build.add_argument("--bank-search-params", default="nprobe=8")
    build.add_argument("--inner", default="IVF4096,Flat")
    build.add_argument("--batch-size", type=int, default=65536)
    build.add_argument("--tmp", default=None)
    dask = sub.add_parser("dask")
    dask.add_argument("--n", type=int, default=200_000)
    dask.add_argument("--bank", type=int, default=20_000)
    dask.add_argument("--pool-rate", type=float, default=0.01)
    dask.add_argument("--inner", default="IVF1024,Flat")
    dask.add_argument("--chunk-size", type=int, default=20_000)
    dask.add_argument("--tmp", default=None)
    args = parser.parse_args()
    {"banks": run_banks, "bigbank": run_big_bank, "build": run_build,
     "dask": run_dask}[args.command](args)


if __name__ == "__main__":
    main()
