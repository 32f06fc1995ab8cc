"""Data-parallel training with torchrun and DistributedDataParallel: one process's answer.

Run:
    torchrun --nproc-per-node=2 examples/ddp_train.py           # gloo on CPUs
    torchrun --nproc-per-node=NUM_GPUS examples/ddp_train.py    # nccl, one GPU per rank
    python examples/ddp_train.py                                # one process, to compare

The backend: nccl with one GPU per rank when this machine has a GPU for every local rank,
else gloo on the CPU (so two processes on a one-GPU machine train on the CPU).

On several machines, run on each (NODE_RANK 0 on the machine at HOST):
    torchrun --nnodes=2 --node-rank=NODE_RANK --nproc-per-node=8 \
        --master-addr=HOST --master-port=29500 examples/ddp_train.py

Every rank holds the data and draws the same permutation from the same seeded generator;
train_loop gives each rank its shard of every global batch of ``batch_size`` rows,
averages the gradients through DDP and the epoch losses with one all-reduce per epoch.
"""

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gradbasics import train_loop

distributed = "WORLD_SIZE" in os.environ  # set by torchrun
if distributed:
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = "nccl" if gpus >= local_ranks else "gloo"  # never two ranks on one GPU
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if backend == "nccl":
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
else:
    rank, world, device = 0, 1, torch.device("cpu")

# The same data and initial weights on every rank: y = 2 x0 - x1 + 0.5 on 1000 rows.
x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
y = x @ torch.tensor([[2.0], [-1.0]]) + 0.5
torch.manual_seed(0)
model: torch.nn.Module = torch.nn.Linear(2, 1).to(device)
if distributed:
    model = DistributedDataParallel(
        model, device_ids=[device.index] if device.index is not None else None
    )

history = train_loop(
    model, x, y, epochs=3, lr=0.02, batch_size=50, generator=torch.Generator().manual_seed(1)
)
if rank == 0:  # only rank 0 prints
    layer = model.module if distributed else model
    weights = [round(v, 9) for v in layer.weight.flatten().tolist() + layer.bias.tolist()]
    print(f"world size {world}, {len(history.losses)} epochs, global batch 50")
    print(f"losses: {' '.join(f'{v:.9e}' for v in history.losses)}")
    print(f"weights: {weights}")
if distributed:
    dist.barrier()  # no rank tears down while another still talks to it
    dist.destroy_process_group()
