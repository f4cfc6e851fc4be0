"""InvGC in LanceDB: corrected rows in a table, or a table searched as it is.

Needs the extra ``lancedb``. Tables have an ``id`` (int64) and a ``vector`` (fixed-size list of
float32) column and are searched with the ``dot`` distance, which LanceDB reports as
``1 - q . x`` (``search`` returns ``q . x``), so store unit vectors, as InvGC's are.

* :class:`LanceStore` (bake): ``create`` makes the table and saves the fitted correction as a
  row of the table ``invgc_corrections`` (the bytes of
  :func:`invgc_faiss.persistence.correction_bytes`), so ``open`` corrects later rows the same
  way. ``add`` corrects every row and checks that no id is stored, then writes them in one
  LanceDB commit: a failed call leaves the table at the version it was.
* :class:`LanceQuerySide` (no rebuild): an existing table of raw vectors searched with
  ``q~ = q - rho (q . m) m``; with ``rescore=`` the raw and the projected query's candidates are
  read back and scored exactly as ``q . x'``.
"""
import numpy as np

from ..persistence import correction_bytes
from ..rerank import DEFAULT_K_FACTOR
from ..validation import as_float_matrix, check_positive_int
from .common import QuerySideSearch, corrected_rows, required, saved_correction

CORRECTIONS_TABLE = "invgc_corrections"


def _modules():
    """``lancedb`` and ``pyarrow`` (an ``ImportError`` names the extra)."""
    return required("lancedb", "lancedb", "pyarrow")


def _table(db, name):
    """The open table ``name`` of ``db``, or None where there is none."""
    try:
        return db.open_table(name)
    except (ValueError, FileNotFoundError):
        return None


def table_dimension(table, name):
    """The size of ``table``'s ``vector`` column; ``ValueError`` for another layout."""
    _, pa = _modules()
    fields = {field.name: field.type for field in table.schema}
    vector = fields.get("vector")
    if "id" not in fields or not isinstance(vector, pa.FixedSizeListType):
        raise ValueError(f"table {name!r} needs an 'id' column and a fixed-size list 'vector' "
                         f"column, it has {fields}")
    return vector.list_size


def _search(table, queries, k, knobs):
    """Top ``k`` rows by ``q . x`` for each query: ``(D, I)`` like faiss (-inf / -1 padding).
    ``knobs``: LanceDB's ``nprobes`` and ``refine_factor`` of a vector index (None: its
    default)."""
    D = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    I = np.full((queries.shape[0], k), -1, dtype=np.int64)
    for i, q in enumerate(queries):
        query = table.search(q).distance_type("dot").select(["id", "_distance"]).limit(k)
        for knob, value in knobs.items():
            if value is not None:
                query = getattr(query, knob)(value)
        found = query.to_arrow()
        I[i, :found.num_rows] = found["id"].to_numpy()
        D[i, :found.num_rows] = 1 - found["_distance"].to_numpy()
    return D, I


class LanceStore:
    """A LanceDB table whose rows InvGC corrects as they are added (module docstring).

    Build it with :meth:`create` (a new table) or :meth:`open` (one ``create`` made).
    """

    #: LanceDB's search knobs of a vector index on the table (None: LanceDB's default)
    nprobes = None
    refine_factor = None

    def __init__(self, db, name, correction):
        self.db, self.name, self.correction = db, name, correction
        self.table = db.open_table(name)

    @classmethod
    def create(cls, db, name, correction):
        """A new table for corrected rows, ``correction`` (a fitted :class:`InvGC`) saved in
        ``invgc_corrections``; refuses a table that exists. If the table cannot be made, the
        saved row is removed again."""
        lancedb, pa = _modules()
        if not isinstance(db, lancedb.DBConnection):
            raise TypeError(f"db must be a lancedb connection, got {type(db).__name__}")
        if getattr(correction, "offsets_", None) is None:
            raise ValueError("correction must be a fitted InvGC (call fit first)")
        if _table(db, name) is not None:
            raise ValueError(f"table {name!r} already exists: open it with LanceStore.open")
        saved = pa.table({"table_name": [name], "correction": [correction_bytes(correction)]})
        corrections = _table(db, CORRECTIONS_TABLE)
        if corrections is None:
            corrections = db.create_table(CORRECTIONS_TABLE, saved)
        else:
            corrections.delete(f"table_name = '{_quoted(name)}'")
            corrections.add(saved)
        try:
            db.create_table(name, schema=pa.schema([
                pa.field("id", pa.int64()),
                pa.field("vector", pa.list_(pa.float32(), correction.d_))]))
        except Exception:
            corrections.delete(f"table_name = '{_quoted(name)}'")
            raise
        return cls(db, name, correction)

    @classmethod
    def open(cls, db, name, device="cpu"):
        """The store of a table :meth:`create` made, its correction read back."""
        table = _table(db, name)
        if table is None:
            raise ValueError(f"table {name!r} does not exist")
        d = table_dimension(table, name)
        corrections = _table(db, CORRECTIONS_TABLE)
        rows = (corrections.search().where(f"table_name = '{_quoted(name)}'")
                .select(["correction"]).limit(1).to_arrow() if corrections is not None else None)
        if rows is None or rows.num_rows == 0:
            raise ValueError(f"no correction is saved for table {name!r}: it was not made by "
                             "LanceStore.create (search it with LanceQuerySide)")
        return cls(db, name, saved_correction(rows["correction"][0].as_py(), d,
                                              f"for table {name!r}", device))

    def __len__(self):
        return self.table.count_rows()

    def add(self, vectors, ids=None, *, batch_size=16384, progress=None):
        """Correct ``vectors`` (n, d) and write them under ``ids`` (n,), default
        ``max(id) + 1 ...``, in one commit. An id already stored raises ``ValueError`` and
        nothing is written."""
        _, pa = _modules()
        stored = self.table.search().select(["id"]).limit(None).to_arrow()["id"].to_numpy()
        corrected, ids = corrected_rows(self.correction, vectors, ids,
                                        int(stored.max()) + 1 if stored.size else 0,
                                        batch_size=batch_size, progress=progress)
        taken = np.intersect1d(ids, stored)
        if taken.size:
            raise ValueError(f"{taken.size} id(s) already stored in {self.name!r}, e.g. "
                             f"{int(taken[0])}; nothing was added")
        self.table.add(pa.table({"id": pa.array(ids, pa.int64()), "vector":
                                 pa.FixedSizeListArray.from_arrays(
                                     pa.array(corrected.ravel()), corrected.shape[1])}))

    def search(self, queries, k):
        """``D, I``: the top ``k`` corrected rows by ``q . x'`` for each query, like faiss."""
        queries = as_float_matrix(queries, self.correction.d_, name="queries", allow_empty=True)
        return _search(self.table, queries, check_positive_int(k, "k"),
                       {"nprobes": self.nprobes, "refine_factor": self.refine_factor})


class LanceQuerySide(QuerySideSearch):
    """An existing LanceDB table of raw vectors searched with the query-side correction
    (:class:`invgc_faiss.stores.common.QuerySideSearch`).

    Parameters
    ----------
    db : lancedb connection
    name : str
    query_correction : fitted :class:`invgc_faiss.QueryCorrection`
    rescore : fitted :class:`invgc_faiss.InvGC`, optional
    k_factor : int

    ``nprobes`` and ``refine_factor`` (attributes, None by default) are passed to LanceDB's
    searches where the table has a vector index.
    """

    nprobes = None
    refine_factor = None

    def __init__(self, db, name, query_correction, *, rescore=None, k_factor=DEFAULT_K_FACTOR):
        self.table = _table(db, name)
        if self.table is None:
            raise ValueError(f"table {name!r} does not exist")
        self._setup(table_dimension(self.table, name), f"table {name!r}", query_correction,
                    rescore, k_factor)

    def _top(self, queries, k):
        return _search(self.table, queries, k,
                       {"nprobes": self.nprobes, "refine_factor": self.refine_factor})

    def _vectors(self, ids):
        rows = (self.table.search().where(f"id IN ({', '.join(map(str, ids.tolist()))})")
                .select(["id", "vector"]).limit(None).to_arrow())
        return (rows["id"].to_numpy(),
                np.stack(rows["vector"].to_numpy(zero_copy_only=False)).astype(np.float32))


def _quoted(text):
    """``text`` inside a single-quoted SQL string literal of LanceDB's filters."""
    return str(text).replace("'", "''")
