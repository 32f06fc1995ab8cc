"""Train your own model: split, validate, stop early, schedule, save, load, plot
=============================================================================

A small network on 600 rows of synthetic data: a fifth held out for validation, Adam with
a step schedule, early stopping that keeps the best weights, a checkpoint, the weights
loaded back for inference, and the loss chart.

Run: ``python examples/12_train_your_own_model.py [--device cpu|cuda] [--out losses.png]``
"""

import tempfile

import torch
from _common import parse_args
from torch import nn

from gradbasics import (
    EarlyStopping,
    evaluate,
    load_checkpoint,
    plot_losses,
    save_checkpoint,
    train_loop,
)

args = parse_args(__doc__, out="losses.png")
g = torch.Generator().manual_seed(0)
x = torch.randn(600, 4, generator=g)
y = torch.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3] + 0.1 * torch.randn(600, 1, generator=g)
order = torch.randperm(600, generator=g)
x_train, y_train = x[order[:480]].to(args.device), y[order[:480]].to(args.device)
x_val, y_val = x[order[480:]].to(args.device), y[order[480:]].to(args.device)


def make_model() -> nn.Module:
    """The network: 4 features, 32 hidden ReLU units with dropout, 1 output."""
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))


torch.manual_seed(0)
model = make_model().to(args.device)
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
history = train_loop(
    model,
    x_train,
    y_train,
    epochs=200,
    optimizer=optimizer,
    batch_size=32,
    generator=torch.Generator().manual_seed(1),
    val=(x_val, y_val),
    metrics={"mae": lambda out, target: (out - target).abs().mean()},
    early_stopping=EarlyStopping(patience=10),
    scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5),
    clip_grad_norm=5.0,
)
best = history.best_epoch
assert best is not None and history.stopped_epoch is not None
print(f"stopped after epoch {history.stopped_epoch + 1}; best epoch {best + 1}")
mae = history.metrics["mae"][best]
print(f"best validation loss {history.val_losses[best]:.4f}, mae {mae:.4f}")

path = tempfile.mkdtemp() + "/run.pt"
save_checkpoint(path, model, epoch=len(history.losses), history=history, optimizer=optimizer)
fresh = make_model().to(args.device)
print(f"loaded for inference; ignored: {load_checkpoint(path, fresh).ignored}")
again = evaluate(fresh, x_val, y_val, batch_size=32)["loss"]  # batched as in training
same = again == history.val_losses[best]
print(f"loaded model's validation loss equals the best epoch's: {same}")
plot_losses(history, log_scale=True, title="Your model").savefig(args.out, dpi=100)
print(f"figure written to {args.out}")
