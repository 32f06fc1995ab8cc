"""The eager engine: each loss is read as it comes (the CPU path, and any custom rule).

On the CPU a read costs nothing to wait for, so the simplest loop is also the fastest:
forward, loss, read and check the loss, backward, update, clear. A non-finite loss stops
the run before its backward pass, so its update is never applied.
"""

from __future__ import annotations

import math

from gradbasics.engines.base import Diverged, Engine

__all__ = ["EagerEngine"]


class EagerEngine(Engine):
    """Read each batch loss before its update; one host read per step."""

    def run_epoch(self, epoch: int) -> float:
        """Run one epoch's steps; raise :class:`Diverged` before any bad update."""
        values: list[float] = []
        rows: list[int] = []
        for xb, yb, last in self.run.epoch_batches():
            out = self.forward(xb, last)
            loss = self.run.loss_fn(out, yb)
            self.first_step(loss)
            self.track(out, yb)
            value = loss.item()
            if not math.isfinite(value):
                raise Diverged(value)
            self.last_finite = value
            values.append(value)
            rows.append(xb.shape[0])
            loss.backward()
            self.finish(None)
            self.check_interrupt()
        return self.run.mean_loss(values, rows)
