"""GPU add throughput against faiss's own GPU kNN floor and against the CPU path, one run.

    python benchmarks/bench_gpu.py                       # 1M x 384 gallery, two 100k banks, pool 0.01
    python benchmarks/bench_gpu.py --gallery 20000 --bank 5000 --cpu-rows 2000   # smoke run

Needs faiss with GPU support and PyTorch with CUDA (see invgc_faiss/gpu.py). Generated cone data
(a speed measurement, no quality claim). Paper form with both rates > 0 (r_g 0.25, r_q 1.5) so
that both banks are searched; ``max_bank_size=None`` keeps the whole banks; k = pool_rate x bank.

Rows, for each batch size:
  floor        faiss.bfKnn of every gallery batch against both banks on the GPU, outputs left
               on the GPU (the least any LocalAdj add must do), gallery batches uploaded from host
  gpu_add      InvGCIndex(IndexFlatIP, device="gpu").add of the whole gallery: bank kNN, gather,
               host combine, add to the GPU inner index
  ratio        floor seconds / gpu_add seconds (the bar: >= 0.8)
and once:
  cpu_add      the same add with device="cpu" on the first cpu_rows rows (all CPU cores); its
               rows/s against gpu_add's
  agreement    GPU-stored vectors of those rows against the CPU ones: max |diff|; rows whose
               top-k bank sets differ between GPU and CPU kNN (float ties at rank k); max |diff|
               over the rows whose sets agree; and the dense float64 reference on ref_rows rows
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

RATES = {"r_g": 0.25, "r_q": 1.5}

from bench_add import make_data  # noqa: E402 (the same generated cone data as bench_add)


def floor_seconds(x, banks, k, batch_size):
    """faiss.bfKnn of every batch against every bank, outputs on the GPU."""
    import torch

    from invgc_faiss import gpu

    on_gpu = [torch.from_numpy(b).cuda() for b in banks]
    gpu.knn(torch.from_numpy(x[:batch_size]).cuda(), on_gpu[0], k)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    for lo in range(0, x.shape[0], batch_size):
        queries = torch.from_numpy(x[lo:lo + batch_size]).cuda()
        for bank in on_gpu:
            gpu.knn(queries, bank, k)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def build(banks, args, device, batch_size):
    import faiss

    from invgc_faiss import InvGCIndex

    return InvGCIndex(faiss.IndexFlatIP(banks[0].shape[1]), gallery_bank=banks[0],
                      query_bank=banks[1], pool_rate=args.pool_rate, max_bank_size=None,
                      batch_size=batch_size, device=device, **RATES)


def add_seconds(index, x):
    import torch

    start = time.perf_counter()
    index.add(x)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def differing_sets(x, banks, k):
    """Rows whose top-k bank sets differ between faiss CPU and GPU exact search, bool (n,)."""
    import faiss
    import torch

    from invgc_faiss import gpu

    differ = np.zeros(x.shape[0], bool)
    for bank in banks:
        cpu = faiss.IndexFlatIP(bank.shape[1])
        cpu.add(bank)
        _, i_cpu = cpu.search(x, k)
        _, i_gpu = gpu.knn(torch.from_numpy(x).cuda(), torch.from_numpy(bank).cuda(), k)
        differ |= np.any(np.sort(i_cpu, axis=1) != np.sort(i_gpu.cpu().numpy(), axis=1), axis=1)
    return differ


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--bank", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--pool-rate", type=float, default=0.01)
    parser.add_argument("--batch-sizes", default="16384,65536")
    parser.add_argument("--cpu-rows", type=int, default=20000)
    parser.add_argument("--ref-rows", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import faiss
    import torch

    from tests.helpers import dense_reference as ref
    from invgc_faiss import gpu
    from invgc_faiss.offsets import pool_size

    reason = gpu.unavailable_reason()
    if reason is not None:
        sys.exit(f"bench_gpu needs a GPU: {reason}")
    t0 = time.perf_counter()
    x, bank_g, bank_q = make_data(args.gallery, args.bank, args.d)
    banks = [bank_g, bank_q]
    k = pool_size(args.pool_rate, args.bank)
    report = {"gpu": torch.cuda.get_device_name(0), "faiss": faiss.__version__,
              "torch": torch.__version__, "cpu_threads": faiss.omp_get_max_threads(),
              "gallery": args.gallery, "bank": args.bank, "d": args.d, "k": k,
              "data_seconds": round(time.perf_counter() - t0, 1), "rows": []}
    print(f"{report['gpu']}, faiss {report['faiss']}, torch {report['torch']}, "
          f"{report['cpu_threads']} CPU threads; gallery {args.gallery} x {args.d}, two banks of "
          f"{args.bank}, k = {k}", flush=True)

    build(banks, args, "gpu", 4096).add(x[:4096])  # warm-up: cuBLAS, kernels, Numba
    gpu_index = None
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        floor = floor_seconds(x, banks, k, batch_size)
        index = build(banks, args, "gpu", batch_size)
        seconds = add_seconds(index, x)
        row = {"batch_size": batch_size, "floor_s": round(floor, 2), "gpu_add_s": round(seconds, 2),
               "gpu_rows_per_s": round(args.gallery / seconds), "ratio": round(floor / seconds, 3)}
        report["rows"].append(row)
        print(row, flush=True)
        gpu_index = index
        torch.cuda.empty_cache()

    n = min(args.cpu_rows, args.gallery)
    cpu_index = build(banks, args, "cpu", 16384)
    start = time.perf_counter()
    cpu_index.add(x[:n])
    cpu_seconds = time.perf_counter() - start
    best = max(r["gpu_rows_per_s"] for r in report["rows"])
    report["cpu_add"] = {"rows": n, "seconds": round(cpu_seconds, 2),
                         "rows_per_s": round(n / cpu_seconds), "gpu_speedup": round(best * cpu_seconds / n, 1)}
    print(report["cpu_add"], flush=True)

    on_gpu = gpu_index.index.reconstruct_n(0, n)
    on_cpu = cpu_index.index.reconstruct_n(0, n)
    diff = np.abs(on_gpu - on_cpu).max(axis=1)
    differ = differing_sets(x[:n], banks, k)
    m = min(args.ref_rows, n)
    dense = ref.invgc(x[:m], banks, [RATES["r_g"], RATES["r_q"]], pool_rate=args.pool_rate)
    report["agreement"] = {
        "rows": n, "max_abs_diff": float(diff.max()),
        "rows_over_1e-5": int((diff > 1e-5).sum()),
        "rows_with_differing_topk_sets": int(differ.sum()),
        "max_abs_diff_where_sets_agree": float(diff[~differ].max()) if (~differ).any() else None,
        "rows_over_1e-5_where_sets_agree": int((diff[~differ] > 1e-5).sum()),
        "dense_reference_rows": m,
        "max_abs_diff_to_dense_reference_gpu": float(np.abs(on_gpu[:m] - dense).max()),
        "max_abs_diff_to_dense_reference_cpu": float(np.abs(on_cpu[:m] - dense).max()),
    }
    print(report["agreement"], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
