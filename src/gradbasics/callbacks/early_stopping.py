"""Early stopping: stop when a monitored value stops improving, keep the best weights."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from gradbasics._validate import _describe, check_int
from gradbasics.callbacks.base import Callback
from gradbasics.history import TrainHistory

__all__ = ["EarlyStopping"]

_MODES = ("min", "max")


class EarlyStopping(Callback):
    r"""Stop training when a monitored value stops improving; keep the best weights.

    After each epoch the monitored value :math:`v_e` (``"loss"``, ``"val_loss"`` or a
    metric's name) is compared with the best so far :math:`v^*`: it improves when
    :math:`v_e < v^* - \delta` (``mode="min"``) or :math:`v_e > v^* + \delta`
    (``mode="max"``), with :math:`\delta` = ``min_delta``. After ``patience`` epochs in a
    row without improvement the run stops (``history.stopped_epoch``); ``history.best_epoch``
    is the best epoch. With ``restore_best`` the model ends with the weights of the best
    epoch, kept as a copy on the model's device (no copy to the host per epoch).

    Pass it as ``train_loop(early_stopping=...)`` or in ``callbacks=``. Its settings (all
    five arguments) must match on resume; its state (the best value and epoch, the epochs
    waited, the best weights) is saved in checkpoints. A ``checkpoint=`` file holds the
    last epoch's weights (what a resume continues from) and, in this callback's state, the
    best ones: ``load_checkpoint(path, model, weights="EarlyStopping")`` loads those.

    Args:
        monitor: What to watch: ``"loss"``, ``"val_loss"`` or a name in ``metrics``.
        patience: Epochs without improvement before stopping, >= 1.
        min_delta: The least change that counts as an improvement, >= 0.
        mode: ``"min"`` (lower is better) or ``"max"``.
        restore_best: Put the best epoch's weights back at the end.

    Raises:
        TypeError: On arguments of the wrong type.
        ValueError: On a patience < 1, a negative ``min_delta`` or an unknown mode; at the
            start of a run, on a ``monitor`` the run does not record.

    Example:
        >>> from gradbasics import EarlyStopping
        >>> EarlyStopping(monitor="val_loss", patience=3)
        EarlyStopping(monitor='val_loss', patience=3, min_delta=0.0, mode='min', restore_best=True)
    """

    order = 40
    reads_history = False

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best: bool = True,
    ) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {_describe(monitor)}.")
        self.patience = check_int(patience, name="patience", minimum=1)
        if isinstance(min_delta, bool) or not isinstance(min_delta, int | float):
            raise TypeError(f"min_delta must be a number, got {_describe(min_delta)}.")
        if not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}.")
        if mode not in _MODES:
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be a bool, got {_describe(restore_best)}.")
        self.monitor, self.min_delta, self.mode = monitor, float(min_delta), mode
        self.restore_best = restore_best
        self._reset()

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
            f"min_delta={self.min_delta}, mode={self.mode!r}, restore_best={self.restore_best})"
        )

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.waited = 0
        self.weights: dict[str, Tensor] | None = None

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta``."""
        if math.isnan(value):
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def settings(self) -> dict[str, Any]:
        """All five arguments: another monitor or mode would mix two runs' bests."""
        return {
            "monitor": self.monitor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "mode": self.mode,
            "restore_best": self.restore_best,
        }

    def state_dict(self) -> dict[str, Any]:
        """The best value and epoch, the epochs waited, and the best weights (or None)."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "waited": self.waited,
            "weights": self.weights,
        }

    def check_state(self, state: object) -> str | None:
        """The four fields, of the right kinds, with weights named like the model's."""
        if not isinstance(state, dict) or set(state) != {"best", "best_epoch", "waited", "weights"}:
            return "expected the fields ['best', 'best_epoch', 'waited', 'weights']"
        best, epoch, waited, weights = (
            state[k] for k in ("best", "best_epoch", "waited", "weights")
        )
        if not (best is None or isinstance(best, float)) or not (
            epoch is None or (isinstance(epoch, int) and not isinstance(epoch, bool))
        ):
            return f"bad best value or epoch ({best!r}, {epoch!r})"
        if isinstance(waited, bool) or not isinstance(waited, int) or waited < 0:
            return f"bad waited count {waited!r}"
        own = self.loop.model.state_dict()
        if weights is not None and (
            not isinstance(weights, dict)
            or set(weights) != set(own)
            or any(
                not isinstance(v, Tensor) or v.shape != own[k].shape or v.dtype != own[k].dtype
                for k, v in weights.items()
            )
        ):
            return "its best weights do not fit the model"
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checked state (the weights copied onto the model's device)."""
        self.best, self.best_epoch, self.waited = (
            state["best"],
            state["best_epoch"],
            state["waited"],
        )
        saved = state["weights"]
        own = self.loop.model.state_dict()
        self.weights = (
            None if saved is None else {k: v.to(own[k].device, copy=True) for k, v in saved.items()}
        )

    def on_train_begin(self) -> None:
        """Check the monitor against what the run records; start afresh."""
        known = self.loop.recorded()
        if self.monitor not in known:
            hint = "" if "val_loss" in known else " (val_loss and metrics need val=)"
            raise ValueError(
                f"early_stopping monitors {self.monitor!r}, which this run does not record; "
                f"known: {known}{hint}."
            )
        self._reset()

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> bool:
        """Record the epoch's value; return True when the run should stop."""
        stop = self._update(epoch, self.loop.latest(self.monitor))
        history.best_epoch = self.best_epoch
        return stop

    def _update(self, epoch: int, value: float) -> bool:
        if self.improved(value, self.best):
            self.best, self.best_epoch, self.waited = value, epoch, 0
            if self.restore_best:
                state = self.loop.model.state_dict()
                if self.weights is None:
                    self.weights = {k: v.detach().clone() for k, v in state.items()}
                else:
                    for k, v in state.items():
                        self.weights[k].copy_(v)
            return False
        self.waited += 1
        return self.waited >= self.patience

    def on_train_end(self, history: TrainHistory) -> None:
        """Put the best weights back, when kept and the run did not fail."""
        if self.loop.failed is None and self.restore_best and self.weights is not None:
            self.loop.model.load_state_dict(self.weights)
