"""InvGC with autofaiss at a few hundred thousand rows: both routes, side by side in one run.

    .venv-numpy1/bin/python benchmarks/bench_autofaiss.py          # 200k x 384, about 5 minutes on 2 cores

Needs the `autofaiss` extra, in the numpy<2 environment (README). Generated cone data: a
speed and agreement measurement, no quality claim. The gallery is a memory-mapped .npy; the query
bank (4,000 rows) uses the defaults (projection form, rho_q = 1, pool 0.2).

Rows:
  autofaiss plain      build_index on the original vectors (what autofaiss alone gives)
  rerank route         InvGCRerankIndex.from_existing on that index with the memory-mapped
                       vectors: attach time, search; recall@10 against exact InvGC search, at
                       k_factor 8 (default) and 64 (candidates = 10 x k_factor of autofaiss's
                       ranking of the uncorrected vectors)
  baked route          transform_in_batches into a .npy memory map, build_index on it: time,
                       search; recall@10 against exact InvGC search
  by hand              max |score - q . x'| over the returned rows, x' from the dense float64
                       reference (tests/helpers/dense_reference.py)
"""
import argparse
import json
import logging
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def build(folder, workdir, name):
    from autofaiss import build_index

    start = time.perf_counter()
    index, infos = build_index(embeddings=folder, index_path=os.path.join(workdir, name + ".index"),
                               index_infos_path=os.path.join(workdir, name + ".json"),
                               metric_type="ip", max_index_memory_usage="4G",
                               current_memory_available="8G", verbose=logging.ERROR)
    return index, infos.get("index_key"), time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=200_000)
    parser.add_argument("--bank", type=int, default=4000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from tests.helpers import dense_reference as ref
    import invgc_faiss
    from invgc_faiss.lab.synthetic import cone_vectors

    rng = np.random.default_rng(0)
    axis = cone_vectors(1, args.d, rng=rng, spread=1.0)[0]
    report = {"gallery": args.gallery, "d": args.d, "bank": args.bank}
    with tempfile.TemporaryDirectory() as work:
        plain_dir, baked_dir = os.path.join(work, "plain"), os.path.join(work, "baked")
        os.makedirs(plain_dir)
        os.makedirs(baked_dir)
        np.save(os.path.join(plain_dir, "part0.npy"), cone_vectors(args.gallery, args.d, rng=rng, axis=axis))
        gallery = np.load(os.path.join(plain_dir, "part0.npy"), mmap_mode="r")
        bank = cone_vectors(args.bank, args.d, rng=rng, axis=axis)
        xq = cone_vectors(args.queries, args.d, rng=rng, axis=axis)

        plain, key, seconds = build(plain_dir, work, "plain")
        report["autofaiss_plain"] = {"index_key": key, "build_s": round(seconds, 1)}

        start = time.perf_counter()
        rerank = invgc_faiss.InvGCRerankIndex.from_existing(plain, vectors=gallery, query_bank=bank,
                                                            offset_dtype="float32")
        attach = time.perf_counter() - start
        correction = rerank.correction

        start = time.perf_counter()
        out = np.lib.format.open_memmap(os.path.join(baked_dir, "part0.npy"), "w+", np.float32,
                                        gallery.shape)
        invgc_faiss.transform_in_batches(correction, gallery, out)
        out.flush()
        transform = time.perf_counter() - start
        del out
        baked, key, seconds = build(baked_dir, work, "baked")
        corrected = np.load(os.path.join(baked_dir, "part0.npy"), mmap_mode="r")
        exact = np.argsort(-(xq @ np.asarray(corrected).T), axis=1)[:, :10]

        sampled = correction.offsets_[0].bank  # the bank sample the correction uses (4,096 rows max)
        for name, index, extra in (("rerank_route", rerank, {"attach_s": round(attach, 1)}),
                                   ("rerank_route_k64", rerank, {}),
                                   ("baked_route", baked, {"transform_s": round(transform, 1),
                                                           "index_key": key,
                                                           "build_s": round(seconds, 1)})):
            if name == "rerank_route_k64":
                rerank.k_factor = 64
            start = time.perf_counter()
            D, I = index.search(xq, 10)
            search = time.perf_counter() - start
            rows = np.asarray(gallery)[I.ravel()]
            by_hand = ref.projection_invgc(rows, [sampled], [1.0], correction.pool_rate)
            scores = np.einsum("qd,qkd->qk", xq.astype(np.float64), by_hand.reshape(I.shape + (args.d,)))
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, exact)]))
            report[name] = {**extra, "search_ms_per_query": round(1000 * search / args.queries, 3),
                            "recall10_vs_exact_invgc": round(recall, 4),
                            "max_abs_score_diff_by_hand": float(np.abs(D - scores).max())}
        D, I = plain.search(xq, 10)
        report["autofaiss_plain"]["overlap10_with_exact_invgc"] = round(float(np.mean(
            [len(set(a) & set(b)) / 10 for a, b in zip(I, exact)])), 4)
    print(f"gallery {args.gallery} x {args.d}, query bank {args.bank}, {args.queries} queries")
    for name in ("autofaiss_plain", "rerank_route", "rerank_route_k64", "baked_route"):
        print(f"{name:16s} {report[name]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
