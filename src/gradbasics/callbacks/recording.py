"""Activation recording: per-unit statistics, rows that fit, dead units, every epoch."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from gradbasics._activationlog import ActivationLog, plan_rows, probe_pass
from gradbasics._device import sanctioned_sync, to_device
from gradbasics.callbacks.base import Callback
from gradbasics.history import TrainHistory
from gradbasics.recording import ActivationRecorder

__all__ = ["ActivationRecording"]


class ActivationRecording(Callback):
    """Record the activations of the named submodules after every epoch.

    The per-unit statistics go to ``history.activation_stats``, units dead in the last 3
    epochs to ``history.dead_units`` (with a :class:`~gradbasics.DeadUnitsWarning` at the
    end of the run), and
    whole rows to ``history.activations`` while they fit in 64 MiB. Without ``probe`` the
    rows are those of each epoch's last training batch, before its update; with it, a pass
    of the probe after the epoch's updates, in eval mode under ``torch.no_grad()``.
    ``train_loop(record=..., probe=...)`` builds it after checking both against the model.

    Its settings are the names and the probe (its shape and a hash of its values); its
    state is the number of epochs recorded (the records themselves are in the history).
    It may join a resumed run that did not record: the epochs before it are NaN.

    Args:
        names: The submodule names to record (checked by train_loop).
        probe: A fixed batch of inputs, or None.
    """

    order = 30
    may_join = True
    reads_history = False

    def __init__(self, names: Sequence[str], probe: Tensor | None = None) -> None:
        self.names, self.probe = tuple(names), probe
        self._rec: Recording | None = None

    def settings(self) -> dict[str, Any]:
        """The recorded names, and the probe's shape and SHA-256 (None without one)."""
        probe = None
        if self.probe is not None:
            with sanctioned_sync():
                data = self.probe.detach().cpu().contiguous().view(-1).view(torch.uint8)
                digest = hashlib.sha256(data.numpy().tobytes()).hexdigest()[:16]
            probe = f"{tuple(self.probe.shape)} {self.probe.dtype}, sha256 {digest}"
        return {"names": list(self.names), "probe": probe}

    def state_dict(self) -> dict[str, Any] | None:
        """The number of epochs recorded."""
        return {"epochs": 0 if self._rec is None else self._rec.done}

    def check_state(self, state: object) -> str | None:
        """A count of epochs; None (a run that did not record) is fine: its epochs are NaN."""
        ok = state is None or (isinstance(state, dict) and set(state) == {"epochs"})
        return None if ok else "expected {'epochs': count}"

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the log from the resumed history."""
        if self._rec is not None:
            self._rec.restore(self.loop.history, self.loop.start)

    def on_train_begin(self) -> None:
        """Measure one pass (of the probe, else of the last batch's rows); hook the model."""
        loop = self.loop
        self._rec = None
        if not loop.lead:  # one rank records
            return
        probe = None if self.probe is None else to_device(self.probe, loop.device)
        last = None if loop.inputs is None else loop.inputs[: loop.last_rows]
        rec = Recording.start(ActivationRecorder(loop.model, self.names), probe, last, loop.epochs)
        if rec.in_steps is not None:
            loop.watch_last_forward(rec.in_steps)
        loop.keep_lazily(rec.publish)
        self._rec = rec

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Keep the epoch's statistics (a probe pass first, with a probe)."""
        if self._rec is not None:
            self._rec.after(epoch)

    def on_train_end(self, history: TrainHistory) -> None:
        """Warn of the units dead at the end (not after an error: it would hide it)."""
        if self._rec is not None and self.loop.failed is None:
            self._rec.finish()


class Recording:
    """train_loop's recording: the recorder, the probe (or None) and the log it fills.

    The history's views are refreshed by :meth:`publish` only when someone can look: a
    callback, a checkpoint, the end of the run; each epoch only keeps its numbers.
    """

    def __init__(self, recorder: ActivationRecorder, probe: Tensor | None, log: ActivationLog):
        self.recorder, self.probe, self.log = recorder, probe, log
        self.done = 0

    @classmethod
    def start(
        cls, recorder: ActivationRecorder, probe: Tensor | None, last: Tensor | None, epochs: int
    ) -> Recording:
        """Plan the log from one measuring pass of ``probe`` (else of ``last``, the last batch).

        With a loader (``last`` None and no probe) the rows are measured when they come.
        """
        keep_rows = None
        if probe is not None:
            keep_rows = plan_rows(recorder, probe, epochs, what="probe")
        elif last is not None:
            keep_rows = plan_rows(recorder, last, epochs, what="inputs")
        return cls(recorder, probe, ActivationLog(epochs, keep_rows))

    @property
    def in_steps(self) -> ActivationRecorder | None:
        """The recorder the training steps use: none when a probe is recorded instead."""
        return self.recorder if self.probe is None else None

    def restore(self, history: TrainHistory, start: int) -> None:
        """Start from the first ``start`` epochs of a resumed history."""
        self.log.restore(history, start)
        self.done = start

    def after(self, epoch: int) -> None:
        """Keep epoch ``epoch``: a pass of the probe first when there is one."""
        if self.probe is not None:
            probe_pass(self.recorder, self.probe)
        self.log.keep(self.recorder.activations, epoch)
        self.done = epoch + 1

    def finish(self) -> None:
        """At the end of the run: warn of the units dead in its last epochs."""
        self.log.warn_dead(self.done, self.recorder.labels)

    def publish(self, history: TrainHistory) -> None:
        """Bring the history's activations, statistics and dead units up to date."""
        if self.done or history.activation_stats:
            self.log.fill(history, self.done, self.recorder.labels)
