"""Activation statistics of a small MLP: a fixed probe, per-unit statistics, dead units
====================================================================================

Run: ``python examples/13_activation_stats.py [--device cpu|cuda] [--out stats.png]``

An ``nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))`` trained on
mini-batches at a learning rate high enough to kill some of its ReLU units. The layers are
recorded on a fixed probe batch after every epoch; the statistics show which units died,
and a ``DeadUnitsWarning`` names those still dead at the end of the run.
"""

import warnings

import torch
from _common import parse_args
from torch import nn

from gradbasics import DeadUnitsWarning, plot_activations, train_loop

args = parse_args(__doc__, out="activation-stats.png")
g = torch.Generator().manual_seed(0)
x = torch.randn(512, 3, generator=g)  # (512, 3)
t = (x**2).sum(1, keepdim=True) + 0.1 * torch.randn(512, 1, generator=g)  # (512, 1)
probe = torch.randn(64, 3, generator=g)  # a fixed batch, the same every epoch
torch.manual_seed(0)
mlp = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1)).to(args.device)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", DeadUnitsWarning)
    history = train_loop(mlp, x, t, epochs=30, lr=0.2, batch_size=32,
                         generator=torch.Generator().manual_seed(1),
                         record=["0", "1"], probe=probe)  # fmt: skip
for w in caught:
    print(f"{w.category.__name__}: {w.message}")
print(f"loss: epoch 1 {history.losses[0]:.4f}, epoch 30 {history.losses[-1]:.4f}")
stats = history.activation_stats["1"]  # (epochs, units) each
print(f"layer {history.activation_labels['1']}: {stats.mean.shape[1]} units")
print(f"share of zeros after the ReLU: epoch 1 {stats.dead[0].mean():.2f}, "
      f"epoch 30 {stats.dead[-1].mean():.2f}")  # fmt: skip
dead = history.dead_units["1"]
print(f"dead units: {dead}")
# The same units from the recorded probe rows: 0 for every probe row, last 3 epochs.
rows = history.activations["1"][-3:]  # (3, probe rows, units)
by_rows = (rows == 0).all(1).all(0).nonzero().flatten().tolist()
print(f"dead units confirmed from the recorded rows: {by_rows == dead}")
fig = plot_activations(history, kind="stats", title="MLP at lr 0.2: per-layer statistics")
fig.savefig(args.out, dpi=120)
print(f"figure written to {args.out}")
