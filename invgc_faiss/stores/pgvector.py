"""InvGC in PostgreSQL with pgvector: corrected rows in a table, or a table searched as it is.

Needs the extra ``pgvector`` (``psycopg`` 3 and ``pgvector``); the server needs the ``vector``
extension (``CREATE EXTENSION vector``, done here if allowed). Scores are inner products, the
``<#>`` operator (pgvector returns it negated; ``search`` returns ``q . x``), so rows should be
unit vectors, as InvGC's are.

* :class:`PgVectorStore` (bake): ``create`` makes a table ``(id bigint primary key, embedding
  vector(d))`` and saves the fitted correction in the table ``invgc_corrections`` (one row per
  table, the bytes of :func:`invgc_faiss.persistence.correction_bytes`), in one transaction;
  ``add`` corrects rows in batches and inserts them with ``COPY`` inside one transaction, so a
  failed call leaves the table as it was; ``open`` reads the saved correction back, so later
  rows are corrected the same way.
* :class:`PgVectorQuerySide` (no rebuild): an existing table of raw vectors searched with
  ``q~ = q - rho (q . m) m`` (:class:`invgc_faiss.QueryCorrection`); with ``rescore=`` a fitted
  :class:`invgc_faiss.InvGC`, the raw and the projected query's top candidates are read back
  and scored exactly as ``q . x'`` (rerank mode's union, docs/results.md "Rerank candidates").

Table and column names are quoted identifiers; nothing is formatted into SQL text.
"""
import numpy as np

from ..persistence import correction_bytes
from ..rerank import DEFAULT_K_FACTOR
from ..validation import as_float_matrix, check_positive_int
from .common import QuerySideSearch, corrected_rows, required, saved_correction

CORRECTIONS_TABLE = "invgc_corrections"


def _modules():
    """``psycopg`` and pgvector's ``register_vector`` (an ``ImportError`` names the extra)."""
    psycopg, pgvector_psycopg = required("pgvector", "psycopg", "pgvector.psycopg")
    return psycopg, pgvector_psycopg.register_vector


def _prepared(conn):
    """``conn`` with the vector extension and its type registered (numpy arrays as vectors)."""
    psycopg, register_vector = _modules()
    if not isinstance(conn, psycopg.Connection):
        raise TypeError(f"conn must be a psycopg.Connection, got {type(conn).__name__}")
    with conn.transaction():
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn


def table_dimension(conn, table, column="embedding"):
    """The ``d`` of ``table.column`` (a ``vector(d)`` column); ``ValueError`` when the table or
    the column does not exist or is not a vector of fixed dimension."""
    psycopg, _ = _modules()
    name = psycopg.sql.Identifier(table).as_string(conn)
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    if not row[0]:
        raise ValueError(f"table {table!r} does not exist")
    row = conn.execute(
        "SELECT format_type(atttypid, atttypmod), atttypmod FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped",
        (name, column)).fetchone()
    if row is None:
        raise ValueError(f"table {table!r} has no column {column!r}")
    if not row[0].startswith("vector(") or row[1] <= 0:
        raise ValueError(f"column {table}.{column} is {row[0]}, not a vector(d) column")
    return int(row[1])


def _search(conn, table, column, id_column, queries, k):
    """Top ``k`` rows of ``table`` by ``q . x`` for each query: ``(D, I)`` float32/int64 (nq, k),
    padded with -inf and -1 like faiss."""
    psycopg, _ = _modules()
    sql = psycopg.sql
    query = sql.SQL("SELECT {id}, ({col} <#> %s) * -1 FROM {table} ORDER BY {col} <#> %s "
                    "LIMIT %s").format(id=sql.Identifier(id_column), col=sql.Identifier(column),
                                       table=sql.Identifier(table))
    D = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    I = np.full((queries.shape[0], k), -1, dtype=np.int64)
    for i, q in enumerate(queries):
        rows = conn.execute(query, (q, q, k)).fetchall()
        if rows:
            I[i, :len(rows)] = [r[0] for r in rows]
            D[i, :len(rows)] = [r[1] for r in rows]
    return D, I


class PgVectorStore:
    """A pgvector table whose rows InvGC corrects as they are added (module docstring).

    Build it with :meth:`create` (a new table) or :meth:`open` (a table ``create`` made).

    Attributes
    ----------
    conn : psycopg.Connection
    table, column, id_column : str
    correction : InvGC, fitted (the one saved beside the table)
    """

    def __init__(self, conn, table, correction, *, column="embedding", id_column="id"):
        self.conn, self.table, self.correction = conn, table, correction
        self.column, self.id_column = column, id_column

    @classmethod
    def create(cls, conn, table, correction, *, index=None):
        """A new table for corrected rows, with ``correction`` (a fitted :class:`InvGC`) saved
        beside it; ``index="hnsw"`` adds pgvector's HNSW index (inner product). One
        transaction: on failure neither the table nor the saved correction exists."""
        psycopg, _ = _modules()
        sql = psycopg.sql
        conn = _prepared(conn)
        if getattr(correction, "offsets_", None) is None:
            raise ValueError("correction must be a fitted InvGC (call fit first)")
        if index not in (None, "hnsw"):
            raise ValueError(f"index must be None or 'hnsw', got {index!r}")
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (sql.Identifier(table).as_string(conn),)).fetchone()[0]:
            raise ValueError(f"table {table!r} already exists: open it with PgVectorStore.open")
        with conn.transaction():
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, embedding vector({}))")
                         .format(sql.Identifier(table), sql.Literal(correction.d_)))
            if index == "hnsw":
                conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_ip_ops)")
                             .format(sql.Identifier(table)))
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, "
                                 "correction bytea NOT NULL)")
                         .format(sql.Identifier(CORRECTIONS_TABLE)))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s)")
                         .format(sql.Identifier(CORRECTIONS_TABLE)),
                         (table, correction_bytes(correction)))
        return cls(conn, table, correction)

    @classmethod
    def open(cls, conn, table, device="cpu"):
        """The store of a table :meth:`create` made, its correction read back."""
        psycopg, _ = _modules()
        sql = psycopg.sql
        conn = _prepared(conn)
        d = table_dimension(conn, table)
        saved = None
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (CORRECTIONS_TABLE,)).fetchone()[0]:
            saved = conn.execute(sql.SQL("SELECT correction FROM {} WHERE table_name = %s")
                                 .format(sql.Identifier(CORRECTIONS_TABLE)), (table,)).fetchone()
        if saved is None:
            raise ValueError(f"no correction is saved for table {table!r}: it was not made by "
                             "PgVectorStore.create (search it with PgVectorQuerySide)")
        return cls(conn, table, saved_correction(saved[0], d, f"for table {table!r}", device))

    def __len__(self):
        psycopg, _ = _modules()
        return self.conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(
            psycopg.sql.Identifier(self.table))).fetchone()[0]

    def add(self, vectors, ids=None, *, batch_size=16384, progress=None):
        """Correct ``vectors`` (n, d; any array slicing into batches, ``np.memmap`` included)
        and insert them under ``ids`` (n,), default ``max(id) + 1 ...``. All or nothing: the
        rows are corrected first, then copied in one transaction; an id already stored raises
        ``ValueError`` and the table keeps exactly the rows it held.

        ``progress``: callable(n_done_increment, total), or True for a tqdm bar."""
        psycopg, _ = _modules()
        sql = psycopg.sql
        next_id = self.conn.execute(sql.SQL("SELECT coalesce(max(id) + 1, 0) FROM {}").format(
            sql.Identifier(self.table))).fetchone()[0]
        corrected, ids = corrected_rows(self.correction, vectors, ids, next_id,
                                        batch_size=batch_size, progress=progress)
        copy_sql = sql.SQL("COPY {} (id, embedding) FROM STDIN WITH (FORMAT BINARY)").format(
            sql.Identifier(self.table))
        try:
            with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.set_types(["int8", "vector"])
                for i in range(len(ids)):
                    copy.write_row((int(ids[i]), corrected[i]))
        except psycopg.errors.UniqueViolation as exc:
            raise ValueError(f"an id is already stored in {self.table!r} ({exc.diag.message_detail}"
                             "); nothing was added") from None

    def search(self, queries, k):
        """``D, I``: the top ``k`` corrected rows by ``q . x'`` for each query (n, d), like
        faiss (padded with -inf and -1)."""
        queries = as_float_matrix(queries, self.correction.d_, name="queries", allow_empty=True)
        return _search(self.conn, self.table, self.column, self.id_column, queries,
                       check_positive_int(k, "k"))


class PgVectorQuerySide(QuerySideSearch):
    """An existing pgvector table of raw vectors searched with the query-side correction
    (:class:`invgc_faiss.stores.common.QuerySideSearch`).

    Parameters
    ----------
    conn : psycopg.Connection
    table : str, column : str, id_column : str
    query_correction : fitted :class:`invgc_faiss.QueryCorrection`
    rescore : fitted :class:`invgc_faiss.InvGC`, optional
    k_factor : int
    """

    def __init__(self, conn, table, query_correction, *, column="embedding", id_column="id",
                 rescore=None, k_factor=DEFAULT_K_FACTOR):
        self.conn = _prepared(conn)
        self.table, self.column, self.id_column = table, column, id_column
        self._setup(table_dimension(self.conn, table, column), f"{table}.{column}",
                    query_correction, rescore, k_factor)

    def _top(self, queries, k):
        return _search(self.conn, self.table, self.column, self.id_column, queries, k)

    def _vectors(self, ids):
        psycopg, _ = _modules()
        sql = psycopg.sql
        rows = self.conn.execute(sql.SQL("SELECT {}, {} FROM {} WHERE {} = ANY(%s)").format(
            sql.Identifier(self.id_column), sql.Identifier(self.column),
            sql.Identifier(self.table), sql.Identifier(self.id_column)),
            (ids.tolist(),)).fetchall()
        return (np.array([r[0] for r in rows], dtype=np.int64),
                np.array([r[1].to_numpy() if hasattr(r[1], "to_numpy") else r[1]
                          for r in rows], dtype=np.float32))
