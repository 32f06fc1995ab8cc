"""The DDP engine: this rank's shard of every global batch, one all-reduce per epoch.

Every rank draws the same permutation and takes rows ``rank::world`` of each global batch
(see :mod:`gradbasics._distributed`); each step reads its loss, since DDP's gradient
all-reduce already synchronises the ranks, and the epoch's global mean loss takes one
more collective.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gradbasics._distributed import Ranks, backward_shard, global_sum, shard
from gradbasics.callbacks.base import Step
from gradbasics.engines.base import Diverged, Engine, Run

__all__ = ["DDPEngine"]


class DDPEngine(Engine):
    """Sharded steps with a consistent stop on every rank (each sees its shard only)."""

    serves = frozenset({"on_before_update", "on_after_update", "lr_change"})

    def __init__(self, run: Run, last_finite: float | None, ranks: Ranks) -> None:
        super().__init__(run, last_finite)
        self.ranks = ranks
        self.rows = torch.arange(run.rows, device=run.device)  # (N,): the full batch's order

    def run_epoch(self, epoch: int) -> float:
        """Run this rank's steps; all ranks stop together on a non-finite gradient."""
        run = self.run
        perm = self.rows if run.size == run.rows else run.permutation()  # (N,)
        mine: list[Tensor] = [shard(c, self.ranks) for c in perm.split(run.size)]
        world = self.ranks.world
        values: list[float] = []
        for b, rows in enumerate(mine):
            xb, yb = run.x.index_select(0, rows), run.y.index_select(0, rows)
            out = self.forward(xb, b == len(mine) - 1)
            self.first_step(None)
            scale = len(rows) * world / run.sizes[b]
            value, finite = backward_shard(out, yb, run.loss_fn, scale, run.params)
            if not finite:
                raise Diverged(value if not math.isfinite(value) else math.nan)
            self.last_finite = value
            values.append(value)
            if run.hooked:
                self.finish_step(
                    None, Step(b, xb, yb, out, torch.tensor(value), b == len(mine) - 1)
                )
            else:
                self.finish(None)
            self.check_interrupt()
        local = sum(v * len(r) for v, r in zip(values, mine, strict=True))
        return global_sum(local, run.device) / run.rows
