"""The best model so far: its weights written whenever a monitored value improves."""

from __future__ import annotations

import math
import os
from typing import Any

from gradbasics._ckptcheck import check_writable
from gradbasics._validate import _describe
from gradbasics.callbacks.base import Callback
from gradbasics.checkpoint import check_path, save_checkpoint
from gradbasics.history import TrainHistory

__all__ = ["BestCheckpoint"]

_MODES = ("min", "max")


class BestCheckpoint(Callback):
    r"""Write the model's weights to ``path`` whenever the monitored value improves.

    After each epoch :math:`e` the monitored value :math:`v_e` is compared with the best
    so far :math:`v^*`; when :math:`v_e < v^*` (``mode="min"``) or :math:`v_e > v^*`
    (``"max"``), or at the first finite value, the model's weights are written
    atomically to ``path`` (a checkpoint: :func:`~gradbasics.load_checkpoint` loads them
    for inference), with ``extra={"epoch": e, "monitor": ..., "value": v_e}``. A NaN never
    improves, nor does an infinity. Keras's ``ModelCheckpoint(save_best_only=True)`` and Lightning's
    ``ModelCheckpoint(monitor=...)`` do the same.

    Its settings are ``monitor`` and ``mode``; its state, the best value and epoch, so a
    resumed run writes the file exactly when the uninterrupted one would.

    Args:
        path: The file to write (its folder must exist and be writable).
        monitor: What to watch: ``"loss"``, ``"val_loss"`` or a metric's name.
        mode: ``"min"`` (lower is better) or ``"max"``.

    Raises:
        TypeError: On a path that is not a str or ``os.PathLike``, or a monitor that is
            not a str.
        ValueError: On an unknown mode, a folder that is missing or not writable; at the
            start of a run, on a monitor the run does not record.

    Example:
        >>> import tempfile, torch
        >>> from gradbasics import ChainModel, load_checkpoint, train_loop
        >>> from gradbasics.callbacks import BestCheckpoint
        >>> path = tempfile.mkdtemp() + "/best.pt"
        >>> x, t = torch.tensor([2.0]), torch.tensor([1.0])
        >>> h = train_loop(ChainModel(0.5, 0.5, 0.5), x, t, epochs=5, lr=0.1,
        ...                callbacks=[BestCheckpoint(path, monitor="loss")])
        >>> best = load_checkpoint(path, ChainModel()).extra
        >>> best["value"] == min(h.losses), best["epoch"] == h.losses.index(min(h.losses))
        (True, True)
    """

    order = 60
    reads_history = False

    def __init__(
        self, path: str | os.PathLike[str], *, monitor: str = "val_loss", mode: str = "min"
    ) -> None:
        self.path = check_path(path, name="path")
        check_writable(self.path, "path")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {_describe(monitor)}.")
        if mode not in _MODES:
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch: int | None = None

    def settings(self) -> dict[str, Any]:
        """The monitor and the mode."""
        return {"monitor": self.monitor, "mode": self.mode}

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch (None before the first)."""
        return {"best": self.best, "best_epoch": self.best_epoch}

    def check_state(self, state: object) -> str | None:
        """The two fields, a float (or None) and an int (or None)."""
        if not isinstance(state, dict) or set(state) != {"best", "best_epoch"}:
            return "expected the fields ['best', 'best_epoch']"
        best, epoch = state["best"], state["best_epoch"]
        if not (best is None or isinstance(best, float)) or not (
            epoch is None or type(epoch) is int
        ):
            return f"bad best value or epoch ({best!r}, {epoch!r})"
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checked state."""
        self.best, self.best_epoch = state["best"], state["best_epoch"]

    def on_train_begin(self) -> None:
        """Check the monitor against what the run records; start afresh."""
        known = self.loop.recorded()
        if self.monitor not in known:
            raise ValueError(
                f"BestCheckpoint monitors {self.monitor!r}, which this run does not record; "
                f"known: {known}."
            )
        self.best = self.best_epoch = None

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far."""
        if not math.isfinite(value):  # NaN or an infinity is never a best to keep
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Write the weights when the epoch's value is the best so far."""
        value = self.loop.latest(self.monitor)
        if not self.improved(value):
            return
        self.best, self.best_epoch = value, epoch
        if self.loop.lead:
            extra = {"epoch": epoch, "monitor": self.monitor, "value": value}
            save_checkpoint(self.path, self.loop.model, epoch=epoch + 1, extra=extra)
