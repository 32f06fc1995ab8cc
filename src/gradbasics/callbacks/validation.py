"""Validation after every epoch: the loss and metrics on held-out rows, in eval mode."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from gradbasics._ckptcheck import fingerprint
from gradbasics._device import sanctioned_sync, to_device
from gradbasics._preflight import peek
from gradbasics._validate import check_data, model_device_dtype
from gradbasics.callbacks.base import Callback, Loop
from gradbasics.data import loader_batch, mse_loss
from gradbasics.history import TrainHistory
from gradbasics.validation import (
    Metric,
    check_class_targets,
    check_metrics,
    loader_batches,
    validate_sums,
)

__all__ = ["Validation"]


class Validation(Callback):
    r"""After each epoch, the mean loss and metrics on held-out rows.

    The model runs in eval mode under ``torch.no_grad()`` (see :func:`~gradbasics.evaluate`),
    in batches of ``batch_size`` rows (or as a ``DataLoader`` gives them), each batch's
    mean weighted by its rows:

    .. math::

        \bar m = \frac{1}{N} \sum_B |B|\, m\bigl(f(x_B), t_B\bigr)

    The loss goes to ``history.val_losses``, each metric to ``history.metrics[name]``,
    with one host read per epoch. Before the first epoch the loss and metrics run once on
    up to 8 rows (a loader's first batch), so a metric that fails changes nothing.
    ``train_loop(val=..., metrics=...)`` builds it after checking the data.

    Args:
        inputs: Validation inputs ``(N, ...)`` (moved to the model's device once); or a
            ``DataLoader`` of ``(inputs, targets)`` batches, with ``targets`` omitted.
        targets: Validation targets with ``N`` rows.
        metrics: Named ``metric(outputs, targets) -> 0-d tensor`` (batch means).
        batch_size: Rows per batch; None for all rows at once (tensors only).

    Raises:
        TypeError: On metrics that are not a dict of callables.
    """

    order = 20
    reads_history = False

    def __init__(
        self,
        inputs: Tensor | Iterable[Any],
        targets: Tensor | None = None,
        *,
        metrics: Mapping[str, Metric] | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.loader: Iterable[Any] | None = None
        if isinstance(inputs, Tensor) and isinstance(targets, Tensor):
            self.inputs, self.targets = inputs.detach(), targets.detach()
            self.batch_size = batch_size or int(inputs.shape[0])
        else:
            self.loader = inputs
            self.inputs = self.targets = torch.empty(0)
            self.batch_size = getattr(inputs, "batch_size", None) or 0
        self.metrics = check_metrics(metrics)
        self.records = ("val_loss", *self.metrics)
        self._fingerprint: str | None = None

    def settings(self) -> dict[str, Any]:
        """The rows (a fingerprint of the data), the metrics' names and the batch size."""
        if self._fingerprint is None:
            data = (self.inputs, self.targets) if self.loader is None else _tensors(self.loader)
            with sanctioned_sync():
                self._fingerprint = "unknown" if data is None else fingerprint(*data)
        return {"data": self._fingerprint, "metrics": list(self.metrics),
                "batch_size": self.batch_size}  # fmt: skip

    def _batches(self, *, sample: bool = False) -> Iterable[tuple[Tensor, Tensor]]:
        """The validation batches; with ``sample``, one small batch to check on."""
        if self.loader is not None:
            if not sample:
                return loader_batches(self.loader, self.loop.device)
            return [_first_batch(self.loader, self.loop)]
        size = min(self.batch_size, 8) if sample else self.batch_size
        x, y = (self.inputs[:size], self.targets[:size]) if sample else (self.inputs, self.targets)
        return zip(x.split(size), y.split(size), strict=True)

    def on_train_begin(self) -> None:
        """Place the rows on the model's device; run the loss and metrics on a few."""
        if self.loader is None:
            with sanctioned_sync():
                self.inputs = to_device(self.inputs, self.loop.device)
                self.targets = to_device(self.targets, self.loop.device)
        batches = list(self._batches(sample=True))
        targets = self.targets if self.loader is None else batches[0][1]
        check_class_targets(self.loop.loss_fn, targets, name="val targets")
        validate_sums(self.loop.model, batches, self.loop.loss_fn, self.metrics)

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Append the epoch's validation loss and metrics (one host read for all)."""
        sums, rows = validate_sums(self.loop.model, self._batches(), self.loop.loss_fn,
                                   self.metrics)  # fmt: skip
        with sanctioned_sync():
            values = (sums / rows).tolist()
        history.val_losses.append(values[0])
        for name, value in zip(self.metrics, values[1:], strict=True):
            history.metrics.setdefault(name, []).append(value)


def _first_batch(loader: Iterable[Any], loop: Loop) -> tuple[Tensor, Tensor]:
    """A val loader's first batch, checked as tensors are, on the model's device.

    It is drawn with every random state put back (see :func:`~gradbasics._preflight.peek`).
    """
    first = peek(loader)
    if first is None:
        raise ValueError("val must hold at least one batch, got an empty loader.")
    try:
        xb, yb = loader_batch(first, loop.device)
        with sanctioned_sync():
            check_data(xb, yb, model_dtype=model_device_dtype(loop.model)[1],
                       float_targets=loop.loss_fn is mse_loss)  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"val's first batch: {exc}") from None
    return xb, yb


def _tensors(loader: object) -> tuple[Tensor, Tensor] | None:
    """A loader's data when they are a ``TensorDataset`` of two tensors, else None."""
    dataset = getattr(loader, "dataset", None)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    return None
