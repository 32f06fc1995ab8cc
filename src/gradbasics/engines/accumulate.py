r"""The accumulating engine: one update from the gradients of ``k`` consecutive batches.

Each batch's loss is read as it comes (as in the eager engine); its backward pass adds
:math:`|B|\,\nabla L_B` to the gradients, and after every ``k`` batches (or the epoch's
last) the sum is divided by the group's rows and one update is made:

.. math::

    g_G = \frac{1}{|G|} \sum_{B \in G} |B|\, \nabla_\theta L_B, \qquad
    \theta \leftarrow \mathrm{update}(\theta, g_G)

the row-weighted mean gradient of the group, so ``batch_size=b, accumulate=k`` is
``batch_size=k*b`` up to rounding. A non-finite loss stops the run before its backward
pass (the group's partial gradients are cleared, no update is made); Ctrl-C is honoured
only between two updates.
"""

from __future__ import annotations

import math

import torch

from gradbasics.callbacks.base import Step
from gradbasics.engines.base import Diverged, Engine, Interrupted

__all__ = ["AccumulateEngine"]


class AccumulateEngine(Engine):
    """Read each batch loss; update once every ``run.accumulate`` batches."""

    # Step hooks run once per update, on its group's last batch: a callback that must see
    # every batch (training metrics) is refused.
    serves = frozenset({"on_before_update", "on_after_update", "lr_change", "autocast"})

    def run_epoch(self, epoch: int) -> float:
        """Run one epoch's steps; raise :class:`Diverged` before any bad update."""
        run = self.run
        params, k = run.params, run.accumulate
        scale = None if run.scaler is None else run.scaler.scale
        values: list[float] = []
        rows: list[int] = []
        in_group = group_rows = 0
        for b, (xb, yb, last) in enumerate(run.epoch_batches()):
            out, loss = self.forward_loss(xb, yb, last)
            self.first_step(loss)
            value = loss.item()
            if not math.isfinite(value):
                for p in params:  # the group's partial sums are not an update
                    p.grad = None
                raise Diverged(value)
            self.last_finite = value
            values.append(value)
            rows.append(xb.shape[0])
            weighted = loss * xb.shape[0]
            (weighted if scale is None else scale(weighted)).backward()
            in_group, group_rows = in_group + 1, group_rows + xb.shape[0]
            if in_group < k and not last:
                continue
            with torch.no_grad():
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(group_rows)
            if run.hooked:
                self.finish_step(None, Step(b, xb, yb, out, loss.detach(), last))
            else:
                self.finish(None)
            in_group = group_rows = 0
            if run.interrupts.pending:  # only ever between two complete updates
                raise Interrupted
        return run.mean_loss(values, rows)
