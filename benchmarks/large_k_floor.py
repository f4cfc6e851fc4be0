"""Where the add time goes at a large pool on a large bank, and what an approximate bank could save.

    python benchmarks/large_k_floor.py [--bank 200000 --rows 5000 --pool-rate 0.01]

The data of ``bench_scale.py bigbank`` (generated cone pairs, d = 384; scale data, not a quality
claim): ``rows`` gallery rows against a bank of ``bank`` rows at k = pool_rate * bank. Times are
the best of 2 runs:

  exact search      faiss IndexFlatIP top-k in d dims (what exact LocalAdj asks per bank)
  gather            the library's weighted neighbour mean of that top-k (kernels.py)
  Proj32 top-1/k    faiss IndexFlatIP in the 32-dim uncentred projection ("Proj32" bank index's
                    base search) at k = 1, 200 and k: the scan of every bank row, and what
                    selecting the k largest of them adds

and, for IVF-style pruning in that projection (spherical k-means, nlist lists), the share of the
exact top-k that lies in the p lists nearest each row against the share of the bank those lists
hold. It bounds the speed-up an approximate bank can give at this k: any path that finds the
exact top-k's rows still scans (or prunes to) that share of the bank, selects k per row, and
gathers k rows.
"""
import argparse
import os
import sys

import faiss
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench_scale import plain_index  # noqa: E402 (a flat inner-product index over the rows)
from invgc_faiss import kernels  # noqa: E402
from invgc_faiss.bank_search import best_seconds  # noqa: E402
from invgc_faiss.lab.synthetic import make_cone_pairs  # noqa: E402
from invgc_faiss.projected_bank import uncentred_projection  # noqa: E402


def gather_seconds(bank, sims, nbrs):
    n, d = sims.shape[0], bank.shape[1]
    out = (np.empty((n, d), np.float32), np.empty(n, np.float32), np.empty(n, np.int64))
    return best_seconds(lambda: kernels.weighted_neighbour_mean(bank, sims, nbrs, *out))[0]


def list_coverage(projected_bank, projected_rows, exact_nbrs, nlist, probes, every=25):
    """Mean share of each row's exact top-k inside its ``p`` nearest lists, and the mean share
    of the bank those lists hold, for each ``p`` in ``probes`` (every ``every``-th row)."""
    kmeans = faiss.Kmeans(projected_bank.shape[1], nlist, niter=10, seed=0, spherical=True)
    kmeans.train(projected_bank)
    assign = kmeans.index.search(projected_bank, 1)[1][:, 0]
    sizes = np.bincount(assign, minlength=nlist)
    nearest = plain_index(kmeans.centroids).search(projected_rows[::every], nlist)[1]
    result = []
    for p in probes:
        lists = nearest[:, :p]
        covered = [np.isin(assign[nbrs], chosen).mean()
                   for nbrs, chosen in zip(exact_nbrs[::every], lists)]
        result.append((p, float(np.mean(covered)), float(np.min(covered)),
                       float(sizes[lists].sum(axis=1).mean() / projected_bank.shape[0])))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--pool-rate", type=float, default=0.01)
    args = parser.parse_args()
    split = make_cone_pairs(n_test=args.rows, n_bank=args.bank, d=384, seed=0)
    bank, rows = split.bank_queries, split.gallery
    k = max(1, int(args.pool_rate * bank.shape[0]))
    print(f"data: {split.description}; {rows.shape[0]} rows, bank {bank.shape[0]}, k = {k}")
    exact = plain_index(bank)
    exact_seconds, (sims, nbrs) = best_seconds(lambda: exact.search(rows, k))
    gather = gather_seconds(bank, sims, nbrs)
    projection, kept = uncentred_projection(bank, 32)
    projected_bank = np.ascontiguousarray(bank @ projection.T)
    projected_rows = np.ascontiguousarray(rows @ projection.T)
    projected = plain_index(projected_bank)
    print(f"\n{'step':<34}{'seconds':>9}")
    print(f"{'exact search, top-' + str(k):<34}{exact_seconds:>9.2f}")
    print(f"{'gather of ' + str(k) + ' rows':<34}{gather:>9.2f}")
    for top in sorted({1, min(200, k), k}):
        seconds = best_seconds(lambda: projected.search(projected_rows, top))[0]
        print(f"{'Proj32 search, top-' + str(top):<34}{seconds:>9.2f}")
    print(f"(the 32-dim projection keeps {100 * kept:.1f} % of the bank's energy)")
    print(f"\nexact top-{k} inside the p lists nearest each row (32-dim projection)")
    print(f"{'nlist':>6}{'p':>5}{'mean share':>12}{'min share':>11}{'bank scanned':>14}")
    for nlist in (64, 256):
        for p, mean, low, scanned in list_coverage(projected_bank, projected_rows, nbrs, nlist,
                                                   (1, 4, 16, 32)):
            print(f"{nlist:>6}{p:>5}{mean:>12.4f}{low:>11.3f}{scanned:>14.3f}")


if __name__ == "__main__":
    main()
