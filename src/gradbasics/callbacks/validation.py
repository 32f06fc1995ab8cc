"""Validation after every epoch: the loss and metrics on held-out rows, in eval mode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from gradbasics._ckptcheck import fingerprint
from gradbasics._device import sanctioned_sync, to_device
from gradbasics.callbacks.base import Callback
from gradbasics.history import TrainHistory
from gradbasics.validation import Metric, check_metrics, validate_sums

__all__ = ["Validation"]


class Validation(Callback):
    r"""After each epoch, the mean loss and metrics on ``(inputs, targets)``.

    The model runs in eval mode under ``torch.no_grad()`` (see :func:`~gradbasics.evaluate`),
    in batches of ``batch_size`` rows, each batch's mean weighted by its rows:

    .. math::

        \bar m = \frac{1}{N} \sum_B |B|\, m\bigl(f(x_B), t_B\bigr)

    The loss goes to ``history.val_losses``, each metric to ``history.metrics[name]``,
    with one host read per epoch. Before the first epoch the loss and metrics run once on
    up to 8 rows, so a metric that fails changes nothing. ``train_loop(val=..., metrics=...)``
    builds it after checking the data against the model.

    Args:
        inputs: Validation inputs ``(N, ...)`` (moved to the model's device once).
        targets: Validation targets with ``N`` rows.
        metrics: Named ``metric(outputs, targets) -> 0-d tensor`` (batch means).
        batch_size: Rows per batch; None for all rows at once.

    Raises:
        TypeError: On metrics that are not a dict of callables.
    """

    order = 20
    reads_history = False

    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        *,
        metrics: Mapping[str, Metric] | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.inputs, self.targets = inputs.detach(), targets.detach()
        self.metrics = check_metrics(metrics)
        self.batch_size = batch_size or int(inputs.shape[0])
        self.records = ("val_loss", *self.metrics)
        self._fingerprint: str | None = None

    def settings(self) -> dict[str, Any]:
        """The rows (a fingerprint of the data), the metrics' names and the batch size."""
        if self._fingerprint is None:
            with sanctioned_sync():
                self._fingerprint = fingerprint(self.inputs, self.targets)
        return {"data": self._fingerprint, "metrics": list(self.metrics),
                "batch_size": self.batch_size}  # fmt: skip

    def on_train_begin(self) -> None:
        """Place the rows on the model's device; run the loss and metrics on a few."""
        device = self.loop.device
        with sanctioned_sync():
            self.inputs = to_device(self.inputs, device)
            self.targets = to_device(self.targets, device)
        k = min(self.batch_size, 8)
        x, y = self.inputs[:k], self.targets[:k]
        validate_sums(self.loop.model, x, y, self.loop.loss_fn, self.metrics, k)

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Append the epoch's validation loss and metrics (one host read for all)."""
        x, y = self.inputs, self.targets
        sums = validate_sums(self.loop.model, x, y, self.loop.loss_fn, self.metrics,
                             self.batch_size)  # fmt: skip
        with sanctioned_sync():
            values = (sums / x.shape[0]).tolist()
        history.val_losses.append(values[0])
        for name, value in zip(self.metrics, values[1:], strict=True):
            history.metrics.setdefault(name, []).append(value)
