"""What follows an epoch's steps in train_loop: metrics, validation, recording, stopping."""

from __future__ import annotations

from torch import Tensor, nn

from gradbasics._activationlog import Recording
from gradbasics._device import sanctioned_sync
from gradbasics.data import LossFn
from gradbasics.engines import Engine
from gradbasics.history import TrainHistory
from gradbasics.schedules import Schedule
from gradbasics.validation import BestWeights, Metric, validate_sums

__all__: list[str] = []


class EpochEnd:
    """What follows an epoch's steps: metrics, validation, recording, early stopping."""

    def __init__(
        self,
        core: nn.Module,
        loss_fn: LossFn,
        metrics: dict[str, Metric],
        size: int,
        train_metrics: bool,
        val: tuple[Tensor, Tensor] | None,
        recording: Recording | None,
        best: BestWeights | None,
        schedule: Schedule,
        monitor: str,
    ) -> None:
        self.core, self.loss_fn, self.metrics, self.size = core, loss_fn, metrics, size
        self.train_metrics, self.val, self.recording = train_metrics, val, recording
        self.best, self.schedule, self.monitor = best, schedule, monitor

    def publish(self, history: TrainHistory) -> None:
        """Bring what is kept lazily (the recorded activations) into ``history``."""
        if self.recording is not None:
            self.recording.publish(history)

    def after(self, epoch: int, engine: Engine, history: TrainHistory) -> bool:
        """Fill the epoch's history; return whether early stopping ends the run."""
        if self.train_metrics:
            for name, value in engine.training_metrics().items():
                history.metrics.setdefault(f"train_{name}", []).append(value)
        if self.val is not None:
            validate(self.core, self.val, self.loss_fn, self.metrics, self.size, history)
        if self.recording is not None:
            self.recording.after(epoch)
        best, schedule = self.best, self.schedule
        if best is None and schedule.kind == "none":  # nothing watches the monitored value
            return False
        value = monitored(history, self.monitor)
        stop = best is not None and best.update(epoch, value)
        history.best_epoch = None if best is None else best.best_epoch
        history.stopped_epoch = epoch if stop else None
        schedule.end_epoch(value)
        return stop


def validate(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    loss_fn: LossFn,
    metrics: dict[str, Metric],
    size: int,
    history: TrainHistory,
) -> None:
    """Append the epoch's validation loss and metrics (one host read for all)."""
    sums = validate_sums(model, data[0], data[1], loss_fn, metrics, size or data[0].shape[0])
    with sanctioned_sync():
        values = (sums / data[0].shape[0]).tolist()
    history.val_losses.append(values[0])
    for name, value in zip(metrics, values[1:], strict=True):
        history.metrics.setdefault(name, []).append(value)


def monitored(history: TrainHistory, name: str) -> float:
    if name == "loss":
        return history.losses[-1]
    if name == "val_loss":
        return history.val_losses[-1]
    return history.metrics[name][-1]
