"""Checkpointing: the whole run saved atomically every few epochs, and resumed exactly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gradbasics._ckptcheck import LazySettings, check_writable
from gradbasics._ckptload import restore
from gradbasics._ckptstate import callback_entries
from gradbasics._validate import _describe, check_int
from gradbasics.callbacks.base import Callback, Loop
from gradbasics.checkpoint import check_path, save_checkpoint
from gradbasics.history import TrainHistory
from gradbasics.rules import Rule

__all__ = ["Checkpointing"]


class Checkpointing(Callback):
    """Save the run to ``path`` every ``every`` epochs, at a stop and after the last epoch.

    A save holds the model, the optimizer or rule state, the generator and global RNG
    states, the history, the run's settings and every callback's settings and state (see
    :func:`~gradbasics.save_checkpoint`); it runs after every other callback of the
    epoch but plain functions (which see the file of their epoch). With ``resume=True``
    and an existing file, the run continues from it (up to ``epochs`` in total),
    bit-identically to a run that was never stopped: the whole file and every setting
    are checked first, and a mismatch is a
    :class:`~gradbasics.CheckpointError` naming the callback and the setting, with
    nothing changed. ``train_loop(checkpoint=..., checkpoint_every=..., resume=...)``
    builds it.

    Args:
        path: The file (its folder must exist and be writable).
        every: Epochs between saves, >= 1.
        resume: Continue from ``path`` when it exists.

    Raises:
        TypeError: On a path that is not a str or ``os.PathLike``, or a non-bool ``resume``.
        ValueError: On a folder that is missing or not writable, a directory, or
            ``every < 1``.
    """

    order = 80
    reads_history = False

    def __init__(
        self, path: str | os.PathLike[str], *, every: int = 1, resume: bool = False
    ) -> None:
        self._saved: tuple[int, int | None] = (0, None)  # (epochs, stopped epoch) on disk
        self.path = check_path(path, name="checkpoint")
        check_writable(self.path, "checkpoint")
        self.every = check_int(every, name="checkpoint_every", minimum=1)
        if not isinstance(resume, bool):
            raise TypeError(f"resume must be a bool, got {_describe(resume)}.")
        self.resume = resume

    def on_train_begin(self) -> None:
        """Resume from the file once every callback has begun (and checked)."""
        self.loop.defer(self._begin)

    def _begin(self) -> None:
        callback_entries(self.loop.callbacks)  # what no checkpoint could store: refused now
        if self.resume and self.path.exists():
            restore_run(self.path, self.loop)
        self._saved = (self.loop.start, self.loop.history.stopped_epoch)

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Save when due: every ``every`` epochs, at a stop, after the last epoch."""
        loop = self.loop
        stop = history.stopped_epoch == epoch or history.stop_requested
        if (epoch + 1) % self.every == 0 or stop or epoch + 1 == loop.epochs:
            self._save(history)

    def on_train_end(self, history: TrainHistory) -> None:
        """Save a stop that a later callback (a plain function) asked for after the save."""
        if self.loop.failed is None and self._saved != (len(history.losses), history.stopped_epoch):
            self._save(history)

    def _save(self, history: TrainHistory) -> None:
        if self.loop.lead:
            save_run(self.path, self.loop, len(history.losses))
        self._saved = (len(history.losses), history.stopped_epoch)


def _complete(settings: dict[str, Any]) -> dict[str, Any]:
    return settings.complete() if isinstance(settings, LazySettings) else settings


def save_run(path: Path, loop: Loop, epoch: int) -> None:
    """Save a running train_loop after ``epoch`` epochs (its callbacks all included)."""
    rule = loop.update if loop.optimizer is None and isinstance(loop.update, Rule) else None
    save_checkpoint(
        path, loop.model, epoch=epoch, history=loop.sync(), optimizer=loop.optimizer,
        generator=loop.generator, settings=_complete(loop.settings), rule=rule,
        callbacks=loop.callbacks, extra={"lr": loop.lr},
    )  # fmt: skip


def restore_run(path: Path, loop: Loop) -> None:
    """Resume a train_loop from ``path``: check all, restore, then each callback's state."""
    rule = loop.update if loop.optimizer is None and isinstance(loop.update, Rule) else None
    restored = restore(
        path, loop.model, loop.optimizer, loop.generator, _complete(loop.settings),
        max_epoch=loop.epochs, rule=rule, callbacks=loop.callbacks, volatile=loop.volatile,
    )  # fmt: skip
    loop.history, loop.start = restored.history, restored.epoch
    rate = restored.extra.get("lr")
    if loop.optimizer is None and isinstance(rate, float):  # a callback may have moved it
        loop._lr = rate
    for cb in loop.callbacks:
        entry = restored.callbacks.get(cb.key)
        if entry is not None and entry.get("state") is not None:
            cb.load_state_dict(entry["state"])
