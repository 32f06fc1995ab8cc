"""Worker for the multi-process tests: one rank of a gloo process group on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gradbasics import ChainModel, DivergenceError, legacy_data_step, manual_sgd_step, train_loop

# (name, rows, batch_size, rule): full and mini batches, even and uneven shards, and one
# global batch (the last, of 2 rows) that leaves a rank of 3 without rows.
CONFIGS = [
    ("full-lr", 12, None, "lr"),
    ("full-sgd", 12, None, "sgd"),
    ("mini-lr", 23, 5, "lr"),
    ("mini-sgd", 23, 5, "sgd"),
    ("mini-momentum", 24, 6, "momentum"),
    ("empty-shard", 10, 4, "lr"),
]


def data(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same inputs and targets on every rank."""
    x = torch.randn(rows, 3, generator=torch.Generator().manual_seed(rows))
    return x, x @ torch.tensor([[0.5], [-1.0], [2.0]]) + 0.25


def train(
    name: str, rows: int, batch_size: int | None, rule: str, ddp: bool
) -> tuple[list[float], dict[str, torch.Tensor]]:
    """One configuration, in this process (ddp=False) or on this rank (ddp=True)."""
    torch.manual_seed(0)
    core = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model: torch.nn.Module = DistributedDataParallel(core) if ddp else core
    x, t = data(rows)
    kw: dict[str, object] = {"lr": 0.05}
    if rule == "sgd":
        kw = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.05)}
    elif rule == "momentum":
        kw = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)}
    history = train_loop(
        model,
        x,
        t,
        epochs=4,
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(7),
        **kw,  # type: ignore[arg-type]
    )
    return history.losses, {k: v.detach().clone() for k, v in core.state_dict().items()}


def diverge(ddp: bool) -> tuple[int, dict[str, torch.Tensor]]:
    """Row 1 (rank 1's shard) has an overflowing target: only that rank's loss is inf."""
    torch.manual_seed(0)
    core = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model: torch.nn.Module = DistributedDataParallel(core) if ddp else core
    x, t = data(12)
    t[1] = 1e30
    epoch = -1
    try:
        train_loop(model, x, t, epochs=3, lr=0.05)
    except DivergenceError as err:
        epoch = err.epoch
    return epoch, {k: v.detach().clone() for k, v in core.state_dict().items()}


def main() -> None:
    """Usage: _ddp_worker.py RANK WORLD PORT OUT_DIR."""
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        results = {name: train(name, r, b, u, ddp=True) for name, r, b, u in CONFIGS}
        # The update rules on a DDP-wrapped model, whose gradients DDP has averaged.
        torch.manual_seed(1)
        model = DistributedDataParallel(ChainModel(0.5, 0.5, 0.5))
        xs = torch.linspace(0.1, 1.0, 6)[rank::world]
        ((model(xs) - 1.0) ** 2).sum().backward()
        manual_sgd_step(model.parameters(), 0.1)
        legacy_data_step(model.parameters(), 0.1)
        steps = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
        stops: list[object] = [None] * world
        dist.all_gather_object(stops, diverge(ddp=True))  # every rank's stop, on rank 0
        if rank == 0:
            torch.save({"results": results, "steps": steps, "stops": stops}, out / "rank0.pt")
        dist.barrier()  # no rank leaves while another still talks to it
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
