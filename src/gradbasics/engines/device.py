"""The device engine: losses stay on the device and are read once per epoch.

Off the CPU, reading a loss makes the host wait for the device. With a built-in update
rule the engine instead keeps every batch loss in a device buffer and folds its
finiteness into one sticky flag that masks the update (:func:`~gradbasics.manual_sgd_step`
with a mask): once a loss is NaN or infinite, that step and every later one change
nothing, and the epoch's one read finds the bad loss and stops the run.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gradbasics._device import sanctioned_sync
from gradbasics.callbacks.base import Step
from gradbasics.engines.base import Diverged, Engine, Run

__all__ = ["DeviceEngine", "read_losses"]


def read_losses(engine: Engine, losses: Tensor) -> list[float]:
    """The epoch's one host read; raise :class:`Diverged` at the first bad loss."""
    with sanctioned_sync():
        values: list[float] = losses.tolist()
    for value in values:
        if not math.isfinite(value):
            raise Diverged(value)
        engine.last_finite = value
    return values


class DeviceEngine(Engine):
    """Masked updates and one loss read per epoch (GPU, built-in rules)."""

    def __init__(self, run: Run, last_finite: float | None) -> None:
        super().__init__(run, last_finite)
        self.ok = torch.ones((), dtype=torch.bool, device=run.device)  # sticky "all finite"

    def run_epoch(self, epoch: int) -> float:
        """Run one epoch's steps without a host read, then read its losses once."""
        run = self.run
        losses: list[Tensor] = []  # 0-d, on the device; stacked and read once per epoch
        rows: list[int] | None = None if run.loader is None else []  # else run.sizes
        for b, (xb, yb, last) in enumerate(run.epoch_batches()):
            out, loss = self.forward_loss(xb, yb, last)
            self.first_step(loss)
            detached = loss.detach()
            losses.append(detached)
            if rows is not None:
                rows.append(xb.shape[0])
            torch.logical_and(self.ok, torch.isfinite(detached), out=self.ok)
            loss.backward()
            if run.hooked:
                self.finish_step(self.ok, Step(b, xb, yb, out, detached, last))
            else:
                self.finish(self.ok)
            self.check_interrupt()
        return run.mean_loss(read_losses(self, torch.stack(losses)), rows)
