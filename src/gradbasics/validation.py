"""Validation: a model's loss and metrics on held-out rows (batched, row-weighted)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics._device import sanctioned_sync
from gradbasics._validate import (
    _describe,
    check_data,
    check_int,
    model_device_dtype,
    modes,
    restore_modes,
)
from gradbasics.data import LossFn, check_loss_fn, check_loss_value, loader_batch

__all__ = ["Metric", "evaluate"]

Metric = Callable[[Tensor, Tensor], Tensor]
"""A metric: ``metric(outputs, targets)`` returns the batch's mean as a 0-d tensor."""


def check_metrics(metrics: object) -> dict[str, Metric]:
    """``metrics``: a mapping of names (str) to callables, or None for none."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> callable, got {_describe(metrics)}.")
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metrics' names must be non-empty strings, got {name!r}.")
        if name in ("loss", "val_loss", "lr", "epoch") or name.startswith("train_"):
            raise ValueError(
                f"metrics' names must not be 'loss', 'val_loss', 'lr', 'epoch' or start with "
                f"'train_' (the history and the logs use those), got {name!r}."
            )
        if not callable(fn):
            raise TypeError(f"metrics[{name!r}] must be callable, got {_describe(fn)}.")
    return dict(metrics)


def check_metric_value(name: str, value: object) -> Tensor:
    """A metric's result: a 0-d floating-point tensor (the batch's mean), else a TypeError."""
    if not isinstance(value, Tensor) or value.dim() != 0 or not value.is_floating_point():
        hint = ""
        if isinstance(value, Tensor) and value.dim() == 0:
            hint = "; convert it with .float()"
        elif isinstance(value, float | int):
            hint = "; return a tensor (torch.tensor(value)), not a Python number"
        raise TypeError(
            f"metrics[{name!r}] must return a 0-d tensor (the batch's mean) of a floating-point "
            f"dtype, got {_describe(value)}{hint}."
        )
    return value


def check_row_mean(loss_fn: object) -> None:
    """Refuse a class-weighted loss: its mean divides by the batch's weights, not its rows."""
    if isinstance(loss_fn, nn.CrossEntropyLoss | nn.NLLLoss) and loss_fn.weight is not None:
        fn = "cross_entropy" if isinstance(loss_fn, nn.CrossEntropyLoss) else "nll_loss"
        raise ValueError(
            f"loss_fn {type(loss_fn).__name__}(weight=...) divides each batch's weighted sum "
            "by the batch's total weight, not by its rows: the epoch loss (batch means "
            "weighted by rows) and evaluate would then depend on the batch size. Pass "
            f"loss_fn=lambda out, t: nn.functional.{fn}(out, t, weight=w, reduction='sum') "
            "/ len(t) (a mean over rows) instead."
        )


def check_class_targets(loss_fn: object, targets: Tensor, *, name: str) -> None:
    """Class indices for ``CrossEntropyLoss``/``NLLLoss``: int64, none of ``ignore_index``.

    A row of class ``ignore_index`` is left out of its batch's mean, so batch means
    weighted by rows would depend on the batch size: such rows are refused.
    """
    if not isinstance(loss_fn, nn.CrossEntropyLoss | nn.NLLLoss):
        return
    loss = type(loss_fn).__name__
    if targets.is_floating_point() and isinstance(loss_fn, nn.CrossEntropyLoss):
        return  # class probabilities: no index to leave out
    if targets.dtype not in (torch.int64, torch.uint8):
        raise TypeError(
            f"{name} must be int64 class indices (torch.long) for {loss}, got "
            f"{_describe(targets)}; convert them with .long()."
        )
    ignore = loss_fn.ignore_index
    with sanctioned_sync():
        left_out = int((targets == ignore).sum())
    if left_out:
        fn = "cross_entropy" if isinstance(loss_fn, nn.CrossEntropyLoss) else "nll_loss"
        raise ValueError(
            f"{name} hold {left_out} row(s) of class {ignore}, which {loss}(ignore_index="
            f"{ignore}) leaves out of each batch's mean: the epoch loss (batch means weighted "
            "by all rows) and evaluate would then depend on the batch size. Drop those rows, "
            f"or pass loss_fn=lambda out, t: nn.functional.{fn}(out, t, ignore_index={ignore}, "
            "reduction='sum') / len(t) (a mean over all rows)."
        )


def evaluate(
    model: nn.Module,
    inputs: Tensor | Iterable[Any],
    targets: Tensor | None = None,
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

    All values are read from the device at once, at the end. A ``DataLoader`` of
    ``(inputs, targets)`` batches can replace the two tensors; its batches are moved to
    the model's device as they come, and weighted by their rows the same way.

    Args:
        model: The model :math:`f`; tensors must be on its device.
        inputs: Inputs, rows are samples: ``(N, ...)``; or a ``DataLoader`` (any
            iterable of ``(inputs, targets)`` batches), with ``targets`` omitted.
        targets: Targets with ``N`` rows (omitted with a loader).
        loss_fn: The loss (default :func:`~gradbasics.mse_loss`), returning batch means.
        metrics: Named metrics ``metric(outputs, targets) -> 0-d tensor`` (batch means).
        batch_size: Rows per batch, >= 1; None for one batch (tensors only).

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
    check_row_mean(fn)
    named = check_metrics(metrics)
    if not isinstance(inputs, Tensor) and isinstance(inputs, Iterable) and targets is None:
        if batch_size is not None:
            raise ValueError(
                f"batch_size must be None with a DataLoader (it has its own), got {batch_size!r}."
            )
        batches: Iterable[tuple[Tensor, Tensor]] = loader_batches(inputs, device, fn)
    else:
        with sanctioned_sync():
            x, y = check_data(inputs, targets, model_dtype=dtype, float_targets=loss_fn is None)
        check_class_targets(fn, y, name="targets")
        n = x.shape[0]
        size = n if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
        if x.device != device:
            raise ValueError(f"inputs must be on the model's device {device}, got {x.device}.")
        batches = zip(x.split(size), y.split(size), strict=True)
    sums, rows = validate_sums(model, batches, fn, named)
    with sanctioned_sync():
        values = (sums / rows).tolist()
    return dict(zip(["loss", *named], values, strict=True))


def loader_batches(
    loader: Iterable[Any], device: torch.device, loss_fn: object = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """A loader's ``(inputs, targets)`` batches, checked (class targets for ``loss_fn``)."""
    for batch in loader:
        xb, yb = loader_batch(batch, device)
        check_class_targets(loss_fn, yb, name="each batch's targets")
        yield xb, yb


def validate_sums(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    loss_fn: LossFn,
    metrics: dict[str, Metric],
) -> tuple[Tensor, int]:
    """Row-weighted sums of the loss and each metric, on the device: ``(1 + metrics,)``.

    Returns the sums and the number of rows.
    """
    was_training = modes(model)
    model.eval()
    try:
        totals: Tensor | None = None
        rows = 0
        with torch.no_grad():
            for xb, yb in batches:
                out = model(xb)
                row = [check_loss_value(loss_fn(out, yb))]
                for name, metric in metrics.items():
                    row.append(check_metric_value(name, metric(out, yb)))
                batch = torch.stack([v.to(torch.float64) for v in row]) * xb.shape[0]
                totals = batch if totals is None else totals + batch
                rows += xb.shape[0]
        if totals is None:
            raise ValueError("the validation data must hold at least one batch, got none.")
        return totals, rows
    finally:
        restore_modes(was_training)
