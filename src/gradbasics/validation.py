"""Validation: a model's loss and metrics on held-out rows, and early stopping on them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics._device import sanctioned_sync
from gradbasics._validate import _describe, check_data, check_int, model_device_dtype
from gradbasics.data import LossFn, check_loss_fn, check_loss_value

__all__ = ["EarlyStopping", "Metric", "evaluate"]

Metric = Callable[[Tensor, Tensor], Tensor]
"""A metric: ``metric(outputs, targets)`` returns the batch's mean as a 0-d tensor."""

_MODES = ("min", "max")


def check_metrics(metrics: object) -> dict[str, Metric]:
    """``metrics``: a mapping of names (str) to callables, or None for none."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> callable, got {_describe(metrics)}.")
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metrics' names must be non-empty strings, got {name!r}.")
        if not callable(fn):
            raise TypeError(f"metrics[{name!r}] must be callable, got {_describe(fn)}.")
    return dict(metrics)


def evaluate(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    metrics: Mapping[str, Metric] | None = None,
    batch_size: int | None = None,
) -> dict[str, float]:
    r"""Return the mean loss and metrics of ``model`` over all rows, without training.

    The model runs in eval mode (dropout off, batch-norm statistics frozen) under
    ``torch.no_grad()``, in batches of ``batch_size`` rows (all at once when None); its
    mode is restored afterwards. Each value is the mean over rows, each batch's mean
    weighted by its rows, so it does not depend on the batch size:

    .. math::

        \bar m = \frac{1}{N} \sum_B |B|\, m\bigl(f(x_B), t_B\bigr)

    All values are read from the device at once, at the end.

    Args:
        model: The model :math:`f`; the data must be on its device.
        inputs: Inputs, rows are samples: ``(N, ...)``.
        targets: Targets with ``N`` rows.
        loss_fn: The loss (default :func:`~gradbasics.mse_loss`), returning batch means.
        metrics: Named metrics ``metric(outputs, targets) -> 0-d tensor`` (batch means).
        batch_size: Rows per batch, >= 1; None for one batch.

    Returns:
        ``{"loss": ..., name: ...}`` as Python floats.

    Raises:
        TypeError: On arguments of the wrong type, or a metric that does not return a
            0-d floating-point tensor.
        ValueError: On mismatched rows, empty or non-finite data, or a bad batch size.

    Example:
        >>> import torch
        >>> from gradbasics import ChainModel, evaluate
        >>> x, t = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 1.0])
        >>> mae = lambda out, t: (out - t).abs().mean()
        >>> evaluate(ChainModel(), x, t, metrics={"mae": mae}, batch_size=1)
        {'loss': 8821.0, 'mae': 89.0}
    """
    device, dtype = model_device_dtype(model)
    fn = check_loss_fn(loss_fn)
    named = check_metrics(metrics)
    with sanctioned_sync():
        x, y = check_data(inputs, targets, model_dtype=dtype, float_targets=loss_fn is None)
    n = x.shape[0]
    size = n if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
    if x.device != device:
        raise ValueError(f"inputs must be on the model's device {device}, got {x.device}.")
    sums = validate_sums(model, x, y, fn, named, size)
    with sanctioned_sync():
        values = (sums / n).tolist()
    return dict(zip(["loss", *named], values, strict=True))


def validate_sums(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, metrics: dict[str, Metric], size: int
) -> Tensor:
    """Row-weighted sums of the loss and each metric, on the device: ``(1 + metrics,)``."""
    was_training = model.training
    model.eval()
    try:
        totals: Tensor | None = None
        with torch.no_grad():
            for xb, yb in zip(x.split(size), y.split(size), strict=True):
                out = model(xb)
                row = [check_loss_value(loss_fn(out, yb))]
                for name, metric in metrics.items():
                    value = metric(out, yb)
                    if not isinstance(value, Tensor) or value.dim() != 0:
                        raise TypeError(
                            f"metrics[{name!r}] must return a 0-d tensor (the batch's mean), "
                            f"got {_describe(value)}."
                        )
                    row.append(value)
                batch = torch.stack([v.to(torch.float64) for v in row]) * xb.shape[0]
                totals = batch if totals is None else totals + batch
        assert totals is not None
        return totals
    finally:
        model.train(was_training)


class EarlyStopping:
    r"""Stop training when a monitored value stops improving; keep the best weights.

    After each epoch the monitored value :math:`v_e` (``"loss"``, ``"val_loss"`` or a
    metric's name) is compared with the best so far :math:`v^*`: it improves when
    :math:`v_e < v^* - \delta` (``mode="min"``) or :math:`v_e > v^* + \delta`
    (``mode="max"``), with :math:`\delta` = ``min_delta``. After ``patience`` epochs in a
    row without improvement the run stops (``history.stopped_epoch``); ``history.best_epoch``
    is the best epoch. With ``restore_best`` the model ends with the weights of the best
    epoch, kept as a copy on the model's device (no copy to the host per epoch).

    Args:
        monitor: What to watch: ``"loss"``, ``"val_loss"`` or a name in ``metrics``.
        patience: Epochs without improvement before stopping, >= 1.
        min_delta: The least change that counts as an improvement, >= 0.
        mode: ``"min"`` (lower is better) or ``"max"``.
        restore_best: Put the best epoch's weights back at the end.

    Raises:
        TypeError: On arguments of the wrong type.
        ValueError: On a patience < 1, a negative ``min_delta`` or an unknown mode.

    Example:
        >>> from gradbasics import EarlyStopping
        >>> EarlyStopping(monitor="val_loss", patience=3)
        EarlyStopping(monitor='val_loss', patience=3, min_delta=0.0, mode='min', restore_best=True)
    """

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

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
            f"min_delta={self.min_delta}, mode={self.mode!r}, restore_best={self.restore_best})"
        )

    def improved(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta``."""
        if math.isnan(value):
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


class BestWeights:
    """The best epoch so far and, with ``restore_best``, a device copy of its weights."""

    def __init__(self, rule: EarlyStopping, model: nn.Module) -> None:
        self.rule, self.model = rule, model
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.waited = 0
        self.weights: dict[str, Tensor] | None = None

    def update(self, epoch: int, value: float) -> bool:
        """Record ``value`` of ``epoch``; return True when the run should stop."""
        if self.rule.improved(value, self.best):
            self.best, self.best_epoch, self.waited = value, epoch, 0
            if self.rule.restore_best:
                state = self.model.state_dict()
                if self.weights is None:
                    self.weights = {k: v.detach().clone() for k, v in state.items()}
                else:
                    for k, v in state.items():
                        self.weights[k].copy_(v)
            return False
        self.waited += 1
        return self.waited >= self.rule.patience

    def restore(self) -> None:
        """Put the best weights back into the model (when kept)."""
        if self.weights is not None:
            self.model.load_state_dict(self.weights)

    def load(self, state: object) -> None:
        """Continue from :meth:`state` of a checkpoint (None: nothing was saved)."""
        if not isinstance(state, dict):
            return
        self.best, self.best_epoch, self.waited = (
            state["best"],
            state["best_epoch"],
            state["waited"],
        )
        saved = state.get("weights")
        if saved is not None:
            own = self.model.state_dict()
            self.weights = {k: v.to(own[k].device, copy=True) for k, v in saved.items()}

    def state(self) -> dict[str, Any]:
        """Plain values and tensors for a checkpoint."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "waited": self.waited,
            "weights": self.weights,
        }
