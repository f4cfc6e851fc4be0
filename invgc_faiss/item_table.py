"""Per-item side data kept next to a faiss index, row-aligned with its id map.

The indexes store, for each stored vector, its LocalAdj degrees (always), its original vector
(when asked) and, in rerank mode, its offsets and scalars. Rows follow the index's internal order:
appended at ``add()``, filtered by the same keep-mask at ``remove_ids()``, cleared at ``reset()``.

Growth is amortized, so adding a gallery in many small batches costs about what one batch costs,
not O(n^2). Rows live in blocks; an append writes its rows into the spare room of the last block,
or into a new block as large as all earlier ones together, so nothing already stored moves and a
block's untouched rows cost no memory (pages are faulted in on first write). The first read after
appends that opened new blocks joins them into one block with as much room again (each row moves
once more, O(1) amortized). Changes are two-phase for all-or-nothing adds:
:meth:`ItemTable.staged` writes the new rows where no view of the table reaches, without changing
the table; :meth:`ItemTable.commit` makes them the table's.
"""
import threading

import numpy as np


class ItemTable:
    """Named columns of equal length ``n``; column ``name`` has shape (n, width).

    Parameters
    ----------
    widths : dict of str -> int
        Column names and their widths.
    dtypes : dict of str -> dtype, optional
        Column dtypes; float32 where not given.
    """

    def __init__(self, widths, dtypes=None):
        if not widths:
            raise ValueError("ItemTable needs at least one column")
        self.widths = dict(widths)
        self.dtypes = {name: np.dtype((dtypes or {}).get(name, np.float32)) for name in self.widths}
        self._joining = threading.Lock()  # searches read concurrently and may join blocks
        self.reset()

    def __len__(self):
        return sum(used for _, used in self._blocks)

    @property
    def columns(self):
        """``{name: ndarray (n, width)}``, views of the current rows (a later change never
        alters a view taken before it)."""
        with self._joining:
            if len(self._blocks) > 1:
                n = len(self)
                joined = self._new_block(2 * n)
                start = 0
                for block, used in self._blocks:
                    for name, buffer in joined.items():
                        buffer[start:start + used] = block[name][:used]
                    start += used
                self._blocks = [(joined, n)]
            block, used = self._blocks[0]
            return {name: buffer[:used] for name, buffer in block.items()}

    def reset(self):
        """Drop every row."""
        self.replace({name: np.empty((0, w), dtype=self.dtypes[name])
                      for name, w in self.widths.items()})

    def staged(self, **rows):
        """Write ``rows`` (``{name: (m, width)}``) after the current rows, in the last block's
        spare room or a new block, without changing the table: returns what :meth:`commit`
        appends. A failure between the two leaves nothing half-added."""
        if set(rows) != set(self.widths):
            raise ValueError(f"expected columns {sorted(self.widths)}, got {sorted(rows)}")
        shapes = {name: np.shape(part) for name, part in rows.items()}
        m = shapes[next(iter(shapes))][0]
        if any(shape != (m, self.widths[name]) for name, shape in shapes.items()):
            raise ValueError(f"rows must have shapes (m, width) of widths {self.widths}, got "
                             f"{shapes}")
        block, used = self._blocks[-1]
        capacity = next(iter(block.values())).shape[0]
        if used + m > capacity:  # a new block, as large as all earlier ones together
            total = sum(next(iter(b.values())).shape[0] for b, _ in self._blocks)
            block, used = self._new_block(max(m, total)), 0
        for name, buffer in block.items():
            buffer[used:used + m] = rows[name]
        return "append", (block, used + m)

    def kept(self, keep):
        """The rows where the boolean mask ``keep`` (n,) is True, staged for :meth:`commit`."""
        return "replace", {name: col[keep] for name, col in self.columns.items()}

    def commit(self, staged):
        """Make rows staged by :meth:`staged` (appended) or :meth:`kept` (replacing) the table's."""
        how, value = staged
        if how == "replace":
            self.replace(value)
        elif value[0] is self._blocks[-1][0]:
            self._blocks[-1] = value
        else:  # a new block (an empty table's empty block is dropped)
            self._blocks = [block for block in self._blocks if block[1]] + [value]

    def replace(self, columns):
        """Make ``columns`` (``{name: (n, width)}``, arrays taken as they are) the table."""
        block = {name: columns[name] for name in self.widths}
        self._blocks = [(block, len(next(iter(block.values()))))]

    def take(self, name, positions):
        """Rows ``positions`` (int array) of column ``name``, a copy."""
        return self.columns[name][positions]

    def _new_block(self, rows):
        return {name: np.empty((rows, width), self.dtypes[name])
                for name, width in self.widths.items()}
