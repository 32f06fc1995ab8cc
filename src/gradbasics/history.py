"""What a training run keeps: its history, and the error that ends a diverging run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["Callback", "DivergenceError", "TrainHistory", "TrainingInterrupted"]


@dataclass
class TrainHistory:
    """What :func:`train_loop` keeps of a run.

    Attributes:
        losses: One float per completed epoch: the epoch's mean per-sample loss, each
            batch's loss taken before its update.
        activations: With ``record=True``, one CPU tensor per recorded name, of shape
            ``(epochs, *activation_shape)``: row ``e`` holds the activation of epoch
            ``e``'s last forward pass, before its update. Empty otherwise.
    """

    losses: list[float] = field(default_factory=list)
    activations: dict[str, Tensor] = field(default_factory=dict)


Callback = Callable[[int, TrainHistory], Any]
"""Called as ``callback(epoch, history)`` at the end of each epoch (``epoch`` is 0-based)."""


class DivergenceError(FloatingPointError):
    """Raised by :func:`train_loop` when a loss is NaN or infinite.

    The update from the non-finite loss is never applied, so the parameters keep the
    values of the last finite step.

    Attributes:
        epoch: The 0-based epoch in which the loss became non-finite.
        history: The history of the completed epochs before it.
        loss: The non-finite loss value.
        last_finite_loss: The last finite batch loss seen, or None if there was none.
    """

    def __init__(
        self, epoch: int, history: TrainHistory, loss: float, last_finite_loss: float | None
    ) -> None:
        self.epoch = epoch
        self.history = history
        self.loss = loss
        self.last_finite_loss = last_finite_loss
        last = "none" if last_finite_loss is None else f"{last_finite_loss:.6g}"
        super().__init__(
            f"Training diverged at epoch {epoch}: the loss became {loss}; the last finite "
            f"loss was {last}. The update from the non-finite loss was not applied. "
            "Try a smaller learning rate."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.epoch, self.history, self.loss, self.last_finite_loss)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`train_loop` on Ctrl-C (SIGINT), at the end of the current step.

    The interrupt is deferred until the step in progress has finished its update and
    cleared its gradients, so the model is never half-updated: it holds the parameters
    after the last completed step. It is a ``KeyboardInterrupt``, so code that stops on
    Ctrl-C still stops.

    Attributes:
        epoch: The 0-based epoch during which training stopped.
        history: The history of the completed epochs (the current one is not included).
    """

    def __init__(self, epoch: int, history: TrainHistory) -> None:
        self.epoch = epoch
        self.history = history
        super().__init__(
            f"Training interrupted during epoch {epoch}, after a completed step; "
            f"{len(history.losses)} epoch(s) are in .history."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.epoch, self.history)
