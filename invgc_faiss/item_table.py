"""Per-item side data kept next to a faiss index, row-aligned with its id map.

``InvGCIndex`` stores, for each stored vector, its LocalAdj degrees (always) and its original
vector (when asked). Rows follow the index's internal order: appended at ``add()``, filtered by the
same keep-mask at ``remove_ids()``, cleared at ``reset()``.
"""
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
        self.reset()

    def __len__(self):
        return next(iter(self.columns.values())).shape[0]

    def reset(self):
        """Drop every row."""
        self.columns = {name: np.empty((0, w), dtype=self.dtypes[name])
                        for name, w in self.widths.items()}

    def appended(self, **rows):
        """Columns with ``rows`` appended, computed without changing the table (commit with
        :meth:`replace`), so a failure between the two leaves the table as it was."""
        if set(rows) != set(self.widths):
            raise ValueError(f"expected columns {sorted(self.widths)}, got {sorted(rows)}")
        return {name: np.concatenate([self.columns[name], rows[name].astype(self.dtypes[name])])
                for name in self.widths}

    def kept(self, keep):
        """Columns restricted to the rows where the boolean mask ``keep`` (n,) is True."""
        return {name: col[keep] for name, col in self.columns.items()}

    def replace(self, columns):
        """Install columns computed by :meth:`appended` or :meth:`kept`."""
        self.columns = columns

    def take(self, name, positions):
        """Rows ``positions`` (int array) of column ``name``."""
        return self.columns[name][positions]
