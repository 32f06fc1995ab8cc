"""TensorBoard logs: scalars per epoch (and per step when asked), for ``tensorboard``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gradbasics._validate import _describe
from gradbasics.callbacks.base import Callback, Step
from gradbasics.checkpoint import check_path
from gradbasics.history import TrainHistory

__all__ = ["TensorBoardLogger"]


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TensorBoardLogger needs tensorboard; install it with: "
            "pip install 'gradbasics[tensorboard]'"
        ) from exc
    return SummaryWriter


class TensorBoardLogger(Callback):
    """Write the run's scalars for TensorBoard (``torch.utils.tensorboard``).

    After each epoch: ``loss``, ``val_loss``, every metric and ``lr``, at step = the
    0-based epoch, into ``log_dir``. With ``every_step=True`` also each update's batch
    loss as ``batch/loss``, at step = the update's count from 0, into
    ``log_dir/steps`` (a read of the loss per step, a synchronisation on a GPU). On
    resume, events written after the checkpoint are purged (``purge_step``), so no step
    appears twice. Open with ``tensorboard --logdir LOG_DIR``. It needs
    ``pip install 'gradbasics[tensorboard]'``.

    Args:
        log_dir: The folder for the event files (created when missing).
        every_step: Also log every update's loss.

    Raises:
        TypeError: On a path that is not a str or ``os.PathLike``, or a non-bool
            ``every_step``.
        ValueError: On a ``log_dir`` that is a file, or whose parent is not writable.
        ImportError: At the start of a run, when tensorboard is not installed.
    """

    order = 70
    reads_history = False

    def __init__(self, log_dir: str | os.PathLike[str], *, every_step: bool = False) -> None:
        self.log_dir = check_path(log_dir, name="log_dir")
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise ValueError(f"log_dir must be a folder, got the file {self.log_dir}.")
        parent = self.log_dir if self.log_dir.exists() else self.log_dir.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"log_dir must be in a writable folder, got {self.log_dir}.")
        if not isinstance(every_step, bool):
            raise TypeError(f"every_step must be a bool, got {_describe(every_step)}.")
        self.every_step = every_step
        self.unused_hooks = () if every_step else ("on_after_update",)
        self._writers: list[Any] = []
        self._steps = 0

    def settings(self) -> dict[str, Any]:
        """Whether every step is logged."""
        return {"every_step": self.every_step}

    def state_dict(self) -> dict[str, Any]:
        """The number of updates logged so far."""
        return {"steps": self._steps}

    def check_state(self, state: object) -> str | None:
        """A count of updates."""
        ok = isinstance(state, dict) and set(state) == {"steps"} and type(state["steps"]) is int
        return None if ok else "expected {'steps': count}"

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the step count."""
        self._steps = state["steps"]

    def on_train_begin(self) -> None:
        """Check that tensorboard imports; the writers open at the first epoch."""
        _summary_writer()
        self._writers, self._steps = [], 0

    def _open(self) -> list[Any]:
        if not self._writers and self.loop.lead:
            writer = _summary_writer()
            start = self.loop.start
            self._writers = [writer(str(self.log_dir), purge_step=start or None)]
            if self.every_step:
                steps = Path(self.log_dir) / "steps"
                self._writers.append(writer(str(steps), purge_step=self._steps or None))
        return self._writers

    def on_after_update(self, step: Step) -> None:
        """Log the update's batch loss (with ``every_step``)."""
        writers = self._open()
        if writers:
            writers[1].add_scalar("batch/loss", float(step.loss), self._steps)
        self._steps += 1

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Log the epoch's loss, validation loss, metrics and rate."""
        writers = self._open()
        if not writers:
            return
        scalars = {"loss": history.losses[-1], "lr": history.lrs[-1]}
        if history.val_losses:
            scalars["val_loss"] = history.val_losses[-1]
        for name, values in history.metrics.items():
            if len(values) == len(history.losses):
                scalars[name] = values[-1]
        for tag, value in scalars.items():
            writers[0].add_scalar(tag, value, epoch)
        for writer in writers:
            writer.flush()

    def on_train_end(self, history: TrainHistory) -> None:
        """Close the event files."""
        for writer in self._writers:
            writer.close()
        self._writers = []
