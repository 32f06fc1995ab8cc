"""The learning-rate schedule: a torch scheduler, or a function of the epoch, as a callback."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from gradbasics._validate import _describe, check_lr
from gradbasics.callbacks.base import Callback, Step
from gradbasics.history import TrainHistory

__all__ = ["Schedule"]

INTERVALS = ("epoch", "batch")

# What a torch scheduler moves as it steps: state, not a setting of the run.
_MOVING = frozenset({
    "last_epoch", "_step_count", "_is_initial", "_get_lr_called_within_step", "_last_lr",
    "T_cur", "T_i", "best", "cooldown_counter", "num_bad_epochs",
})  # fmt: skip
# The optimizer values a scheduler writes (momentum and betas when it cycles them).
_DRIVEN = frozenset({"lr", "initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"})


def _config(state: object) -> Any:
    """A scheduler's ``state_dict`` without what moves as it steps (nested ones too)."""
    if isinstance(state, dict):
        return {k: _config(v) for k, v in state.items() if k not in _MOVING}
    if isinstance(state, list | tuple):
        return [_config(v) for v in state]
    return state


def _same_kind(saved: object, own: object) -> bool:
    """Whether a saved state value can stand for ``own`` (numbers for numbers, alike)."""
    if isinstance(own, bool) or own is None:
        return type(saved) is type(own) or own is None
    if isinstance(own, int | float):
        return isinstance(saved, int | float) and not isinstance(saved, bool)
    if isinstance(own, list | tuple):
        return (
            isinstance(saved, list | tuple)
            and len(saved) == len(own)
            and all(_same_kind(s, o) for s, o in zip(saved, own, strict=True))
        )
    if isinstance(own, dict):
        return (
            isinstance(saved, dict)
            and saved.keys() == own.keys()
            and all(_same_kind(saved[k], v) for k, v in own.items())
        )
    return type(saved) is type(own)


class Schedule(Callback):
    r"""Change the learning rate as training goes: a torch scheduler or ``epoch -> lr``.

    - A ``torch.optim.lr_scheduler`` scheduler of the run's optimizer: ``step()`` after
      each epoch (``interval="epoch"``) or after each update (``"batch"``).
    - ``ReduceLROnPlateau``: stepped after each epoch with the value of ``monitor``
      (default ``"val_loss"`` when the run validates, else ``"loss"``, as Keras's).
    - A callable ``epoch -> lr`` (with ``train_loop(lr=...)``): the rate
      :math:`\eta_e` = ``schedule(e)`` of every step of epoch :math:`e`, from epoch 0.

    Its settings are the kind, the scheduler's class and configuration (a StepLR's
    ``step_size`` and ``gamma``, not its step count), the interval and the monitor; its
    state is the scheduler's ``state_dict()``. The optimizer values a scheduler drives
    (``lr``, and ``momentum`` or ``betas`` under ``OneCycleLR``/``CyclicLR``) are state
    too: a resume does not compare them as hyperparameters.

    Args:
        scheduler: The torch scheduler, or a callable ``epoch -> lr``.
        interval: ``"epoch"`` or ``"batch"`` (a torch scheduler other than plateau).
        monitor: What ``ReduceLROnPlateau`` watches (None: the default above).

    Raises:
        TypeError: On a scheduler of another kind.
        ValueError: On an unknown interval, a plateau scheduler per batch, or a callable
            per batch.
    """

    order = 45
    reads_history = False
    requires = frozenset({"lr_change"})

    def __init__(
        self, scheduler: object, *, interval: str = "epoch", monitor: str | None = None
    ) -> None:
        if interval not in INTERVALS:
            raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {interval!r}.")
        if monitor is not None and not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str or None, got {_describe(monitor)}.")
        self.scheduler: Any = scheduler
        self.interval, self.monitor = interval, monitor
        self.watching = monitor or "val_loss"  # resolved against the run at its start
        if isinstance(scheduler, LRScheduler):
            self.kind = "plateau" if isinstance(scheduler, ReduceLROnPlateau) else "torch"
            if self.kind == "plateau" and interval == "batch":
                raise ValueError(
                    "scheduler_interval='batch' cannot drive ReduceLROnPlateau: it steps on "
                    "the monitored value of an epoch."
                )
        elif callable(scheduler):
            if interval == "batch":
                raise ValueError("a callable scheduler gives one rate per epoch: use 'epoch'.")
            self.kind = "callable"
        else:
            raise TypeError(
                "scheduler must be a torch.optim.lr_scheduler.LRScheduler, a callable "
                f"epoch -> lr, or None, got {_describe(scheduler)}."
            )
        per_batch = self.kind == "torch" and interval == "batch"
        self.unused_hooks: tuple[str, ...] = () if per_batch else ("on_after_update",)
        if self.kind != "callable":
            self.unused_hooks += ("on_epoch_begin",)

    def check_optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        """A torch scheduler needs the run's optimizer; a callable needs ``lr=``."""
        if self.kind == "callable" and optimizer is not None:
            raise ValueError(
                "scheduler as a callable epoch -> lr needs lr=, got an optimizer; pass a "
                "torch.optim.lr_scheduler scheduler of that optimizer instead."
            )
        if self.kind != "callable" and (
            optimizer is None or self.scheduler.optimizer is not optimizer
        ):
            raise ValueError(
                f"scheduler must be a torch scheduler of the optimizer passed as "
                f"optimizer=, got {type(self.scheduler).__name__} with "
                f"optimizer={type(optimizer).__name__ if optimizer else None}; with lr=, "
                "pass a callable epoch -> lr instead."
            )

    def settings(self) -> dict[str, Any]:
        """Kind, class, configuration, interval, and (plateau) the monitor."""
        fn = self.scheduler
        name = (
            f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
        )
        if self.kind == "callable":
            return {"kind": self.kind, "schedule": name}
        return {
            "kind": self.kind,
            "scheduler": type(fn).__qualname__,
            "config": _config(fn.state_dict()),
            "interval": self.interval,
            "monitor": self.watching if self.kind == "plateau" else None,
        }

    def state_dict(self) -> dict[str, Any] | None:
        """The torch scheduler's ``state_dict()`` (None for a callable)."""
        return None if self.kind == "callable" else dict(self.scheduler.state_dict())

    def check_state(self, state: object) -> str | None:
        """The keys of this scheduler's own state."""
        if self.kind == "callable":
            return None if state is None else "a callable schedule has no state"
        own = self.scheduler.state_dict()
        if not isinstance(state, dict) or set(state) != set(own):
            return f"expected a {type(self.scheduler).__name__} state with keys {sorted(own)}"
        wrong = sorted(k for k, v in own.items() if not _same_kind(state[k], v))
        return f"{wrong} are of another kind than this scheduler's" if wrong else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the torch scheduler."""
        if self.kind != "callable":
            self.scheduler.load_state_dict(state)

    def on_train_begin(self) -> None:
        """Check the optimizer and the monitor; mark the values the scheduler drives."""
        loop = self.loop
        self.check_optimizer(loop.optimizer)
        known = loop.recorded()
        if self.kind == "plateau":
            default = "val_loss" if "val_loss" in known else "loss"
            self.watching = self.monitor or default
            if self.watching not in known:
                raise ValueError(
                    f"the scheduler monitors {self.watching!r}, which this run does not "
                    f"record; known: {known}."
                )
        if self.kind != "callable":
            cycles = getattr(self.scheduler, "cycle_momentum", False)
            loop.volatile |= _DRIVEN | ({"momentum", "betas"} if cycles else set())

    def on_epoch_begin(self, epoch: int) -> None:
        """A callable schedule sets the epoch's rate before its first step."""
        self.loop.lr = check_lr(self.scheduler(epoch), name=f"scheduler({epoch})")

    def on_after_update(self, step: Step) -> None:
        """A per-batch torch scheduler steps after every update."""
        self.scheduler.step()

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """A per-epoch torch scheduler steps (a plateau one with the monitored value)."""
        if self.kind == "plateau":
            self.scheduler.step(self.loop.latest(self.watching))
        elif self.kind == "torch" and self.interval == "epoch":
            self.scheduler.step()
