"""torch.distributed support for train_loop: shards of each global batch, global sums.

Every rank holds all the data and draws the same permutation from the same seeded
generator; each takes the rows ``rank, rank + world, ...`` of every global batch (the
stride of ``DistributedSampler``), so ``batch_size`` keeps meaning the global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from gradbasics.data import LossFn, check_loss_value

__all__: list[str] = []


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group."""

    rank: int
    world: int


def ddp_ranks(model: nn.Module) -> Ranks | None:
    """Return the rank and world size when a process group is up and ``model`` is DDP."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if not isinstance(model, DistributedDataParallel):
        return None
    return Ranks(dist.get_rank(), dist.get_world_size())


def unwrap(model: nn.Module) -> nn.Module:
    """Return the module inside a ``DistributedDataParallel`` wrapper (or ``model``)."""
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    assert isinstance(inner, nn.Module)
    return inner


def shard(rows: Tensor, ranks: Ranks) -> Tensor:
    """This rank's rows of a global batch: ``rows[rank::world]`` (may be empty)."""
    return rows[ranks.rank :: ranks.world]


def backward_shard(
    model_out: Tensor, targets: Tensor, loss_fn: LossFn, scale: float, params: list[Tensor]
) -> tuple[float, bool]:
    r"""Back-propagate this rank's share of the global batch loss.

    With :math:`n_r` of the batch's :math:`B` rows on rank :math:`r` of :math:`W`, the
    rank back-propagates :math:`L_r\, n_r W / B`; DDP averages the gradients over the
    ranks, which gives :math:`\sum_r (n_r / B) \nabla L_r = \nabla L_B`, the gradient of
    the global batch mean, however unevenly the rows fall. A rank without rows still runs
    backward (DDP needs every rank), with a zero loss. A non-finite local loss poisons the
    gradients with NaN, so after DDP's all-reduce every rank sees it and all stop together.

    Returns:
        The local loss value (0.0 for an empty shard) and whether every gradient, the same
        on every rank after the all-reduce, is finite.
    """
    if targets.shape[0]:
        loss = check_loss_value(loss_fn(model_out, targets))
        value = loss.item()
    else:
        loss, value = model_out.sum() * 0.0, 0.0
    (loss * (scale if math.isfinite(value) else math.nan)).backward()
    grads = [p.grad for p in params if p.grad is not None]
    finite = all(bool(torch.isfinite(g).all()) for g in grads)
    return value, finite


def global_sum(value: float, device: torch.device) -> float:
    """All-reduce one float over the ranks (one collective per call)."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())
