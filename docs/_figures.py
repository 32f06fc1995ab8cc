"""Figures of the docs, drawn from gradbasics at build time (never pasted images)."""

from __future__ import annotations

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


def build_all(folder: Path) -> None:
    """Write every figure as a PNG into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for make in (task2_activations, chain_losses, adaptive_rules):
        make().savefig(folder / f"{make.__name__}.png", dpi=100)  # type: ignore[attr-defined]
