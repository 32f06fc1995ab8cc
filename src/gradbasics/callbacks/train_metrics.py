"""Training metrics: each metric on every training batch, row-weighted, read once per epoch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from gradbasics._device import sanctioned_sync
from gradbasics.callbacks.base import Callback, Step
from gradbasics.history import TrainHistory
from gradbasics.validation import Metric, check_metric_value, check_metrics

__all__ = ["TrainMetrics"]


class TrainMetrics(Callback):
    r"""Each metric on every training batch's outputs (before its update), per epoch.

    .. math::

        \bar m_{\text{train}} = \frac{1}{N} \sum_B |B|\, m\bigl(f_{\theta_B}(x_B), t_B\bigr)

    where :math:`\theta_B` are the weights batch :math:`B` was computed with. The sums stay
    on the device and are read once per epoch into ``history.metrics["train_" + name]``.
    It needs whole batches in one process (not DDP, not ``graph=True``).
    ``train_loop(metrics=..., train_metrics=True)`` builds it.

    Args:
        metrics: Named ``metric(outputs, targets) -> 0-d tensor`` (batch means).

    Raises:
        TypeError: On metrics that are not a dict of callables; during the run, on a
            metric that does not return a 0-d floating-point tensor (train_loop checks
            them on a few rows before training).
    """

    order = 10
    reads_history = False
    requires = frozenset({"whole_batches"})

    def __init__(self, metrics: Mapping[str, Metric]) -> None:
        self.metrics = check_metrics(metrics)
        self.records = tuple(f"train_{name}" for name in self.metrics)
        self._sums: Tensor | None = None  # (metrics,) row-weighted sums, on the device
        self._rows = 0

    def settings(self) -> dict[str, Any]:
        """The metrics' names."""
        return {"metrics": list(self.metrics)}

    def on_epoch_begin(self, epoch: int) -> None:
        """Start the epoch's sums afresh."""
        self._sums, self._rows = None, 0

    def on_before_update(self, step: Step) -> None:
        """Add the batch's metrics, weighted by its rows (no host read)."""
        target = step.targets
        with torch.no_grad():
            out = step.outputs.detach()
            row = torch.stack([check_metric_value(name, m(out, target)).to(torch.float64)
                               for name, m in self.metrics.items()])  # fmt: skip
            row = row * target.shape[0]  # (metrics,)
        self._sums = row if self._sums is None else self._sums + row
        self._rows += target.shape[0]

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Append the epoch's means (one host read)."""
        if self._sums is None:
            return
        with sanctioned_sync():
            values = (self._sums / self._rows).tolist()
        for name, value in zip(self.records, values, strict=True):
            history.metrics.setdefault(name, []).append(value)
