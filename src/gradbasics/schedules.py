"""Learning-rate schedules for train_loop: torch's schedulers, or a function of the epoch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from gradbasics._validate import _describe, check_lr

__all__ = ["LRSchedule"]

LRSchedule = Callable[[int], float]
"""A schedule for ``train_loop(lr=..., scheduler=...)``: ``schedule(epoch) -> lr``."""

INTERVALS = ("epoch", "batch")


class Schedule:
    """What train_loop does with its ``scheduler`` argument, checked once.

    - None: the rate stays (``lr``, or the optimizer's own).
    - A ``torch.optim.lr_scheduler.LRScheduler`` of the run's optimizer: ``step()`` after
      each epoch (``interval="epoch"``) or after each update (``"batch"``);
      ``ReduceLROnPlateau`` is stepped after each epoch with the monitored value.
    - A callable ``epoch -> lr`` (with ``lr=``): the rate of each epoch, from epoch 0.
    """

    def __init__(
        self,
        scheduler: object,
        *,
        interval: object,
        optimizer: torch.optim.Optimizer | None,
        lr: float,
    ) -> None:
        if interval not in INTERVALS:
            raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {interval!r}.")
        self.scheduler: Any = scheduler
        self.optimizer, self.base = optimizer, lr
        self.per_batch = interval == "batch"
        if scheduler is None:
            self.kind = "none"
        elif isinstance(scheduler, LRScheduler):
            if optimizer is None or scheduler.optimizer is not optimizer:
                raise ValueError(
                    f"scheduler must be a torch scheduler of the optimizer passed as "
                    f"optimizer=, got {type(scheduler).__name__} with "
                    f"optimizer={type(optimizer).__name__ if optimizer else None}; with lr=, "
                    "pass a callable epoch -> lr instead."
                )
            self.kind = "plateau" if isinstance(scheduler, ReduceLROnPlateau) else "torch"
            if self.kind == "plateau" and self.per_batch:
                raise ValueError(
                    "scheduler_interval='batch' cannot drive ReduceLROnPlateau: it steps on "
                    "the monitored value of an epoch."
                )
        elif callable(scheduler):
            if optimizer is not None:
                raise ValueError(
                    "scheduler as a callable epoch -> lr needs lr=, got an optimizer; pass a "
                    "torch.optim.lr_scheduler scheduler of that optimizer instead."
                )
            if self.per_batch:
                raise ValueError("a callable scheduler gives one rate per epoch: use 'epoch'.")
            self.kind = "callable"
        else:
            raise TypeError(
                "scheduler must be a torch.optim.lr_scheduler.LRScheduler, a callable "
                f"epoch -> lr, or None, got {_describe(scheduler)}."
            )

    @property
    def after_step(self) -> Callable[[], None] | None:
        """What to call after every update (a per-batch torch scheduler's ``step``)."""
        if self.kind == "torch" and self.per_batch:
            step: Callable[[], None] = self.scheduler.step
            return step
        return None

    def begin_epoch(self, epoch: int) -> float:
        """The rate of ``epoch``'s first step (set first, for a callable schedule)."""
        if self.kind == "callable":
            self.base = check_lr(self.scheduler(epoch), name=f"scheduler({epoch})")
            return self.base
        if self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return self.base

    def end_epoch(self, monitored: float) -> None:
        """Step a per-epoch torch scheduler (a plateau one with ``monitored``)."""
        if self.kind == "plateau":
            self.scheduler.step(monitored)
        elif self.kind == "torch" and not self.per_batch:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any] | None:
        """The torch scheduler's state, for a checkpoint (None for the others)."""
        if self.kind in ("torch", "plateau"):
            state: dict[str, Any] = self.scheduler.state_dict()
            return state
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore a state saved by :meth:`state_dict`."""
        if state is not None and self.kind in ("torch", "plateau"):
            self.scheduler.load_state_dict(state)
