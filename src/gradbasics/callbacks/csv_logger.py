"""A CSV log of the run: one row per epoch, read back by any spreadsheet or pandas."""

from __future__ import annotations

import csv
import os
from typing import Any

from gradbasics._ckptcheck import check_writable
from gradbasics.callbacks.base import Callback
from gradbasics.checkpoint import check_path
from gradbasics.history import TrainHistory

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file: epoch, loss, val_loss, each metric, lr.

    The header is written at the first epoch of a run (a new run starts a new file).
    Values are written with ``repr``, so ``float(cell)`` gives back the history's float
    bit for bit; a value the run does not record in an epoch is left empty. Epochs are
    0-based, as in the history. The file is flushed after every row. On resume the file
    keeps the rows of the epochs the checkpoint holds and drops any later ones (written
    after the checkpoint, before the run stopped), so no epoch appears twice.

    Args:
        path: The CSV file (its folder must exist and be writable).

    Raises:
        TypeError: On a path that is not a str or ``os.PathLike``.
        ValueError: On a folder that is missing or not writable, or a directory.

    Example:
        >>> import csv, tempfile, torch
        >>> from gradbasics import ChainModel, train_loop
        >>> from gradbasics.callbacks import CSVLogger
        >>> path = tempfile.mkdtemp() + "/log.csv"
        >>> h = train_loop(ChainModel(0.5, 0.5, 0.5), torch.tensor([2.0]), torch.tensor([1.0]),
        ...                epochs=3, lr=0.1, callbacks=[CSVLogger(path)])
        >>> rows = list(csv.DictReader(open(path)))
        >>> [float(r["loss"]) for r in rows] == h.losses, list(rows[0])
        (True, ['epoch', 'loss', 'lr'])
    """

    order = 70  # before the checkpoint of its epoch, which then counts the epoch's row
    reads_history = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_path(path, name="path")
        check_writable(self.path, "path")
        self._columns: list[str] | None = None
        self._rows = 0

    def state_dict(self) -> dict[str, Any]:
        """The number of rows written and their columns."""
        return {"rows": self._rows, "columns": self._columns}

    def check_state(self, state: object) -> str | None:
        """A row count and a list of column names (or None)."""
        if not isinstance(state, dict) or set(state) != {"rows", "columns"}:
            return "expected the fields ['columns', 'rows']"
        columns = state["columns"]
        names = isinstance(columns, list) and all(isinstance(c, str) for c in columns)
        if type(state["rows"]) is not int or not (columns is None or names):
            return f"bad rows or columns ({state['rows']!r}, {columns!r})"
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep the rows of the checkpoint's epochs; drop any written after it."""
        self._columns, self._rows = state["columns"], state["rows"]
        kept: list[list[str]] = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                kept = list(csv.reader(f))[: self._rows + 1]  # the header and the rows
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerows(kept)

    def on_train_begin(self) -> None:
        """A new run starts a new file (a resume restores the count before any row)."""
        self._columns, self._rows = None, 0

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Append the epoch's row (the header first, at a new file's first epoch)."""
        row: dict[str, Any] = {"epoch": epoch, "loss": history.losses[-1]}
        if history.val_losses:
            row["val_loss"] = history.val_losses[-1]
        for name, values in history.metrics.items():
            if len(values) == len(history.losses):
                row[name] = values[-1]
        row["lr"] = history.lrs[-1]
        new = self._columns is None
        if self._columns is None:
            self._columns = list(row)
        with open(self.path, "w" if new else "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self._columns)
            writer.writerow([repr(row[c]) if c in row else "" for c in self._columns])
        self._rows += 1
