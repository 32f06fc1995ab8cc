"""The eager engine: each loss is read as it comes (the CPU path, and any custom rule).

On the CPU a read costs nothing to wait for, so the simplest loop is also the fastest:
forward, loss, read and check the loss, backward, update, clear. A non-finite loss stops
the run before its backward pass, so its update is never applied.
"""

from __future__ import annotations

import math

from gradbasics.callbacks.base import Step
from gradbasics.engines.base import Diverged, Engine, Interrupted

__all__ = ["EagerEngine"]


class EagerEngine(Engine):
    """Read each batch loss before its update; one host read per step."""

    def run_epoch(self, epoch: int) -> float:
        """Run one epoch's steps; raise :class:`Diverged` before any bad update."""
        run = self.run
        model, loss_fn, finish, interrupts = run.model, run.loss_fn, self.finish, run.interrupts
        watched, hooked, amp = run.watch is not None, run.hooked, run.autocast is not None
        scale = None if run.scaler is None else run.scaler.scale
        values: list[float] = []
        rows: list[int] | None = None if run.loader is None else []  # else run.sizes
        for b, (xb, yb, last) in enumerate(run.epoch_batches()):
            if amp:
                out, loss = self.forward_loss(xb, yb, last)
            else:
                out = self.forward(xb, last) if watched else model(xb)
                loss = loss_fn(out, yb)
            if self._first:
                self.first_step(loss)
            value = loss.item()
            if not math.isfinite(value):
                raise Diverged(value)
            self.last_finite = value
            values.append(value)
            if rows is not None:
                rows.append(xb.shape[0])
            (loss if scale is None else scale(loss)).backward()
            if hooked:
                self.finish_step(None, Step(b, xb, yb, out, loss.detach(), last))
            else:
                finish(None)
            if interrupts.pending:  # only ever between two complete steps
                raise Interrupted
        return run.mean_loss(values, rows)
