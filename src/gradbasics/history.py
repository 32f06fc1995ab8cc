"""What a training run keeps: its history, and the error that ends a diverging run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from gradbasics.unitstats import UnitStats

__all__ = ["DivergenceError", "EpochFn", "TrainHistory", "TrainingInterrupted"]


@dataclass
class TrainHistory:
    """What :func:`train_loop` keeps of a run.

    Epochs are counted from 0 in the attributes (``losses[e]`` is epoch ``e``) and from 1
    in every message and chart ("epoch 3 of 100" is ``losses[2]``).

    Attributes:
        losses: One float per completed epoch: the epoch's mean per-sample loss, each
            batch's loss taken before its update.
        activations: With ``record=``, one CPU tensor per recorded name, of shape
            ``(epochs, *activation_shape)``: row ``e`` holds the activation of epoch
            ``e``'s last forward pass, before its update, or with ``probe=`` that of the
            probe after epoch ``e``'s updates. Kept only while all rows fit in 64 MiB;
            empty otherwise.
        activation_stats: With ``record=``, the per-unit statistics of each recorded name
            (:class:`~gradbasics.UnitStats` of float64 tensors of shape
            ``(epochs, units)``: mean, standard deviation, dead fraction), always kept.
        activation_labels: With ``record=``, a chart label for each recorded name, built
            from the model (``"0: Linear(3→16)"``).
        dead_units: With ``record=``, the units of each name that output 0 for every
            recorded row in each of the last 3 epochs (see :func:`~gradbasics.dead_units`).
        val_losses: With ``val=``, the mean validation loss after each epoch.
        metrics: With ``metrics=``, each metric's mean on the validation rows after each
            epoch, by name.
        lrs: The learning rate of each epoch's first step.
        best_epoch: With ``early_stopping=``, the epoch whose monitored value was best.
        stopped_epoch: The epoch after which the run stopped early (by early stopping or
            :meth:`stop`), or None when it ran all its epochs.
    """

    losses: list[float] = field(default_factory=list)
    activations: dict[str, Tensor] = field(default_factory=dict)
    activation_stats: dict[str, UnitStats] = field(default_factory=dict)
    activation_labels: dict[str, str] = field(default_factory=dict)
    dead_units: dict[str, list[int]] = field(default_factory=dict)
    val_losses: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    lrs: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    stop_requested: bool = field(default=False, repr=False, compare=False)

    def stop(self) -> None:
        """Ask :func:`train_loop` to stop after the current epoch (call it from a callback).

        The epoch's history, checkpoint and callbacks complete first; then the run ends
        normally, with ``stopped_epoch`` set.
        """
        self.stop_requested = True

    def extras(self) -> dict[str, object]:
        """The fields beyond losses and activations, as plain values (for checkpoints)."""
        return {
            "activation_labels": dict(self.activation_labels),
            "dead_units": {k: list(v) for k, v in self.dead_units.items()},
            "val_losses": list(self.val_losses),
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "lrs": list(self.lrs),
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
        }


EpochFn = Callable[[int, TrainHistory], Any]
"""A plain callback: ``fn(epoch, history)`` at the end of each epoch (``epoch`` is 0-based).

It stops the run, without raising, by calling ``history.stop()``.
"""


class DivergenceError(FloatingPointError):
    """Raised by :func:`train_loop` when a loss is NaN or infinite.

    The update from the non-finite loss is never applied, so the parameters keep the
    values of the last finite step.

    Attributes:
        epoch: The 0-based epoch in which the loss became non-finite (the message counts
            from 1: "epoch 3 of 100" is ``epoch == 2``).
        history: The history of the completed epochs before it.
        loss: The non-finite loss value.
        last_finite_loss: The last finite batch loss seen, or None if there was none.
        epochs: The number of epochs the run was asked for, or None.
    """

    def __init__(
        self,
        epoch: int,
        history: TrainHistory,
        loss: float,
        last_finite_loss: float | None,
        epochs: int | None = None,
    ) -> None:
        self.epoch = epoch
        self.history = history
        self.loss = loss
        self.last_finite_loss = last_finite_loss
        self.epochs = epochs
        last = "none" if last_finite_loss is None else f"{last_finite_loss:.6g}"
        of = f" of {epochs}" if epochs is not None else ""
        super().__init__(
            f"Training diverged in epoch {epoch + 1}{of}: the loss became {loss}; the last "
            f"finite loss was {last}. The update from the non-finite loss was not applied. "
            "Try a smaller learning rate."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.epoch, self.history, self.loss, self.last_finite_loss, self.epochs)
        return type(self), args


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`train_loop` on Ctrl-C (SIGINT) or SIGTERM, at the end of the step.

    The interrupt is deferred until the step in progress has finished its update and
    cleared its gradients, so the model is never half-updated: it holds the parameters
    after the last completed step. A second signal during that step aborts at once. It is
    a ``KeyboardInterrupt``, so code that stops on Ctrl-C still stops. The checkpoint on
    disk (with ``checkpoint=``) is that of the last epoch saved: resuming repeats the
    interrupted epoch from its start, bit-identically.

    Attributes:
        epoch: The 0-based epoch during which training stopped.
        epochs: The number of epochs the run was asked for, or None.
        history: The history of the completed epochs (the current one is not included).
    """

    def __init__(self, epoch: int, history: TrainHistory, epochs: int | None = None) -> None:
        self.epoch = epoch
        self.history = history
        self.epochs = epochs
        of = f" of {epochs}" if epochs is not None else ""
        super().__init__(
            f"Training interrupted in epoch {epoch + 1}{of}, after a completed step; "
            f"{len(history.losses)} epoch(s) are in .history."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.epoch, self.history, self.epochs)
