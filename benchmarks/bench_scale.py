"""Scale benchmark: exact vs approximate vs sampled banks on real data, and a 1M-vector build.

    python benchmarks/bench_scale.py banks   [--query-lang eng --gallery-lang deu]   (data extra)
    python benchmarks/bench_scale.py build   [--n 1000000 --bank 100000 --max-bank-size 12500]
    python benchmarks/bench_scale.py dask    [--n 200000 --bank 20000]                 (dask extra)

``banks``: InvGC LocalAdj with rates tuned label-free, on the real benchmark split; for each bank
search (exact IndexFlatIP, IVF at several nprobe, HNSW at several efSearch) and each bank sample
(1/2, 1/8, 1/16), the table gives the time to correct 10 copies of the test gallery (19,740 rows,
so the fixed costs do not dominate), the recall of the bank top-k lists against the exact ones,
and R@1 of the test queries.

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
import os
import sys
import tempfile
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss import InvGC, InvGCIndex, add_in_batches, metrics  # noqa: E402
from invgc_faiss.streaming import read_npy_batches  # noqa: E402
from invgc_faiss.synthetic import cone_vectors  # noqa: E402

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


def topk_recall(exact, approx):
    """Mean share of each exact top-k list found by the approximate search."""
    hits = [len(np.intersect1d(e, a[a >= 0])) for e, a in zip(exact, approx)]
    return float(np.mean(hits)) / exact.shape[1]


def run_banks(args):
    from invgc_faiss.datasets import load_bible_split
    from invgc_faiss.grid_search import tune_method

    split = load_bible_split(args.query_lang, args.gallery_lang, bank_size=args.bank_size,
                             tune_size=args.tune_size)
    params, _ = tune_method("invgc_localadj", split.tune_queries, split.tune_gallery,
                            split.tune_bank_queries, split.tune_bank_gallery)
    print(f"data: {split.description}")
    print(f"tuned label-free: {params}")
    m = split.bank_gallery.shape[0]
    nlist = int(4 * np.sqrt(m))
    configs = [("exact", {})]
    configs += [(f"IVF{nlist} nprobe={p}", {"gallery_bank_index": f"IVF{nlist},Flat",
                                            "query_bank_index": f"IVF{nlist},Flat",
                                            "bank_search_params": f"nprobe={p}"})
                for p in (4, 16, 64)]
    configs += [(f"HNSW32 efSearch={e}", {"gallery_bank_index": "HNSW32",
                                          "query_bank_index": "HNSW32",
                                          "bank_search_params": f"efSearch={e}"})
                for e in (64, 256)]
    configs += [(f"sample 1/{f}", {"max_bank_size": m // f}) for f in (2, 8, 16)]
    gallery = split.gallery
    timing_rows = np.tile(gallery, (REPEAT, 1))
    exact_lists = None
    plain = faiss.IndexFlatIP(gallery.shape[1])
    plain.add(gallery)
    plain_r1 = metrics.retrieval_metrics(metrics.ground_truth_ranks(
        plain.search(split.queries, 10)[1], np.arange(len(gallery))))["R@1"]
    print(f"plain faiss R@1 = {plain_r1:.2f}; bank M = {m}, k = {max(1, int(params['pool_rate'] * m))}")
    print(f"{'bank search':<24}{'build s':>9}{'correct s':>11}{'speed-up':>10}{'top-k recall':>14}"
          f"{'R@1':>8}{'dR@1':>7}")
    base = None
    for name, extra in configs:
        start = time.perf_counter()
        correction = InvGC(**params, **extra).fit(split.bank_gallery, split.bank_queries)
        build_s = time.perf_counter() - start
        correction.correct(timing_rows[:64])  # warm
        start = time.perf_counter()
        correction.correct(timing_rows)
        correct_s = time.perf_counter() - start
        lists = [off.bank_index.search(gallery, off.k)[1] for off in correction.offsets_]
        index = InvGCIndex(faiss.IndexFlatIP(gallery.shape[1]), correction=correction)
        index.add(gallery)
        r1 = metrics.retrieval_metrics(metrics.ground_truth_ranks(
            index.search(split.queries, 10)[1], np.arange(len(gallery))))["R@1"]
        if base is None:
            base, exact_lists = (correct_s, r1), lists
        recall = (np.mean([topk_recall(e, a) for e, a in zip(exact_lists, lists)])
                  if "sample" not in name else float("nan"))
        print(f"{name:<24}{build_s:>9.2f}{correct_s:>11.2f}{base[0] / correct_s:>10.2f}"
              f"{recall:>14.3f}{r1:>8.2f}{r1 - base[1]:>7.2f}")


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
        index = InvGCIndex(inner, gallery_bank=banks[0], query_bank=banks[1],
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
                                   gallery_bank=banks[0], query_bank=banks[1],
                                   pool_rate=args.pool_rate)
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
    {"banks": run_banks, "build": run_build, "dask": run_dask}[args.command](args)


if __name__ == "__main__":
    main()
