"""Figures of the docs, drawn from gradbasics at build time (never pasted images)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from gradbasics import (
    ChainModel,
    DivergenceError,
    FrozenFirstModel,
    plot_activations,
    plot_losses,
    rules,
    train_loop,
)


def task2_activations() -> object:
    """The notes' task-2 chart: only w2 trains, x=1, target 2, lr 0.01, 20 epochs."""
    model = FrozenFirstModel(w1=1.0, w2=1.0)
    one = torch.tensor([1.0])
    history = train_loop(model, one, 2 * one, epochs=20, lr=0.01, record=True)
    return plot_activations(history, title="Task 2: only w2 trains (w1 fixed at 1.0)")


def chain_losses() -> object:
    """The chain at lr=1e-4 converging: loss per epoch on a log scale."""
    history = train_loop(
        ChainModel(), torch.tensor([2.0]), torch.tensor([1.0]), epochs=100, lr=1e-4
    )
    return plot_losses(history, log_scale=True, title="ChainModel, lr=1e-4")


def adaptive_rules() -> object:
    """The chain at the notes' lr 0.01: SGD diverges, AdaGrad, RMSprop and Adam do not."""
    from matplotlib.figure import Figure

    x, t = torch.tensor([2.0]), torch.tensor([1.0])
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    try:
        train_loop(ChainModel(), x, t, epochs=300, lr=0.01)
    except DivergenceError as err:  # the expected end: plot what it reached
        ax.plot([1, 2], err.history.losses, marker="o", label="SGD (diverges at epoch 3)")
    for rule in (rules.Adagrad(), rules.RMSprop(), rules.Adam()):
        losses = train_loop(ChainModel(), x, t, epochs=300, lr=0.01, update=rule).losses
        ax.plot(range(1, len(losses) + 1), losses, label=type(rule).__name__)
    ax.set_yscale("log")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.set_title("The chain at lr = 0.01")
    ax.grid(True)
    ax.legend()
    return fig


def guide_losses() -> object:
    """The guide's run: a small MLP with validation and early stopping."""
    from torch import nn

    from gradbasics import EarlyStopping

    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 4, generator=g)
    y = torch.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3] + 0.1 * torch.randn(600, 1, generator=g)
    order = torch.randperm(600, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    history = train_loop(
        model, x[order[:480]], y[order[:480]], epochs=200, optimizer=optimizer,
        batch_size=32, generator=torch.Generator().manual_seed(1),
        val=(x[order[480:]], y[order[480:]]), early_stopping=EarlyStopping(patience=10),
        scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5),
        clip_grad_norm=5.0,
    )  # fmt: skip
    return plot_losses(history, log_scale=True, title="Your model")


def _mlp_history() -> object:
    """The tutorial's MLP at lr 0.2, recorded on a fixed probe (some ReLU units die)."""
    import warnings

    from torch import nn

    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 3, generator=g)
    t = (x**2).sum(1, keepdim=True) + 0.1 * torch.randn(512, 1, generator=g)
    probe = torch.randn(64, 3, generator=g)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dead units are the point of the figure
        return train_loop(mlp, x, t, epochs=30, lr=0.2, batch_size=32,
                          generator=torch.Generator().manual_seed(1),
                          record=["0", "1"], probe=probe)  # fmt: skip


def mlp_activation_stats() -> object:
    """The MLP's layers: mean, one-std band and share of zeros per epoch."""
    return plot_activations(_mlp_history(), kind="stats")  # type: ignore[arg-type]


def mlp_unit_means() -> object:
    """The MLP's ReLU units as a heat map: dead units are rows stuck at 0."""
    return plot_activations(_mlp_history(), kind="units", names=["1"])  # type: ignore[arg-type]


@functools.cache
def _digits_run() -> tuple[object, object]:
    """The digits chapter's run: its range test and the validation confusion matrix."""
    import warnings

    from sklearn.datasets import load_digits
    from torch import nn

    from gradbasics import EarlyStopping, lr_find, predict

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16  # (1797, 64)
    y = torch.tensor(digits.target)  # (1797,)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = order[:1437], order[1437:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    loss_fn = nn.CrossEntropyLoss()
    found = lr_find(model, x[train], y[train], batch_size=64, loss_fn=loss_fn, start_lr=1e-4,
                    end_lr=10.0, generator=torch.Generator().manual_seed(1))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the chapter shows the dead-units warning
        train_loop(model, x[train], y[train], epochs=100, lr=found.suggestion, batch_size=64,
                   loss_fn=loss_fn, generator=torch.Generator().manual_seed(2),
                   val=(x[val], y[val]), metrics={"accuracy": _accuracy},
                   early_stopping=EarlyStopping(monitor="accuracy", mode="max", patience=5),
                   )  # fmt: skip
    predicted = predict(model, x[val]).argmax(dim=1)  # (360,)
    confusion = torch.bincount(10 * y[val] + predicted, minlength=100).reshape(10, 10)
    return found, confusion


def _accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(dim=1) == targets).float().mean()


def digits_lr_find() -> object:
    """The digits chapter's range test, its suggestion marked."""
    from gradbasics import plot_lr_find

    found, _ = _digits_run()
    return plot_lr_find(found, title="Digits: learning-rate range test")  # type: ignore[arg-type]


def digits_confusion() -> object:
    """The digits chapter's confusion matrix: counts, true digit by predicted digit."""
    from matplotlib.figure import Figure

    _, confusion = _digits_run()
    counts = confusion.tolist()  # type: ignore[attr-defined]
    fig = Figure(figsize=(5.6, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    for row in range(10):
        for col in range(10):
            if counts[row][col]:
                dark = counts[row][col] > 20
                ax.text(col, row, counts[row][col], ha="center", va="center",
                        color="white" if dark else "black", fontsize=8)  # fmt: skip
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("Predicted digit")
    ax.set_ylabel("True digit")
    ax.set_title("Digits: validation confusion matrix")
    return fig


def build_all(folder: Path) -> None:
    """Write every figure as a PNG into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    makers = (task2_activations, chain_losses, adaptive_rules, guide_losses,
              mlp_activation_stats, mlp_unit_means, digits_lr_find, digits_confusion)  # fmt: skip
    for make in makers:
        make().savefig(folder / f"{make.__name__}.png", dpi=100)  # type: ignore[attr-defined]
