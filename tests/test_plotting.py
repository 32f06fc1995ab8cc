from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.lines import Line2D

from gradbasics import FrozenFirstModel, TrainHistory, plot_activations, plot_losses, train_loop


def _xy(line: Line2D) -> tuple[list[float], list[float]]:
    x = np.asarray(line.get_xdata(), dtype=np.float64).tolist()
    y = np.asarray(line.get_ydata(), dtype=np.float64).tolist()
    return x, y


def _history(epochs: int = 20) -> TrainHistory:
    model = FrozenFirstModel(w1=1.0, w2=1.0)
    one = torch.tensor([1.0])
    return train_loop(model, one, 2 * one, epochs=epochs, lr=0.01, record=True)


def test_plot_activations_draws_one_line_per_epoch(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    history = _history()
    fig = plot_activations(history)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 20
    # Epoch e's line goes through (input, hidden, output) = (1, 1, 2 - 0.98**e).
    for e, line in enumerate(ax.lines):
        xs, ys = _xy(line)
        assert xs == [1, 2, 3]
        assert ys[:2] == [1.0, 1.0]
        assert ys[2] == pytest.approx(2 - 0.98**e, rel=1e-6)
    legend = ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["Epoch 1", "Epoch 5", "Epoch 10", "Epoch 15", "Epoch 20"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "Input neuron",
        "Hidden neuron",
        "Output neuron",
    ]
    out = tmp_path / "chart.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_losses() -> None:
    history = _history(5)
    fig = plot_losses(history, log_scale=True)
    (line,) = fig.axes[0].lines
    assert _xy(line) == ([1, 2, 3, 4, 5], history.losses)
    assert fig.axes[0].get_yscale() == "log"


def test_plot_errors() -> None:
    with pytest.raises(ValueError, match="record=True"):
        plot_activations(TrainHistory(losses=[1.0]))
    with pytest.raises(ValueError, match=r"names must be recorded names .* \['x'\]"):
        plot_activations(_history(2), names=["x"])
    with pytest.raises(TypeError, match="history must be a TrainHistory, got"):
        plot_losses([1.0, 2.0])  # type: ignore[arg-type]


def test_missing_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'gradbasics\[plot\]'"):
        plot_losses(TrainHistory(losses=[1.0]))


def test_plot_activations_averages_units_of_wide_layers() -> None:
    # Two names with several units each: each point is the mean over the units (and rows),
    # computed here in float64 from the recorded tensors.
    rows = {
        "a": torch.tensor([[[1.0, 2.0, 6.0]], [[0.0, 0.0, 3.0]]]),  # (epochs, rows, units)
        "b": torch.tensor([[[4.0, -4.0]], [[10.0, 0.0]]]),
    }
    fig = plot_activations(TrainHistory([1.0, 0.5], rows))
    (ax,) = fig.axes
    for e, line in enumerate(ax.lines):
        _, ys = _xy(line)
        want = [rows[k][e].double().mean().item() for k in ("a", "b")]
        assert ys == pytest.approx(want)
    assert _xy(ax.lines[0])[1] == pytest.approx([3.0, 0.0])


def test_plot_losses_draws_the_validation_loss_and_the_best_epoch() -> None:
    history = TrainHistory(losses=[3.0, 2.0, 1.0], val_losses=[3.5, 2.5, 2.8], best_epoch=1)
    (ax,) = plot_losses(history).axes
    train, val = ax.lines[0], ax.lines[1]
    assert _xy(train) == ([1, 2, 3], [3.0, 2.0, 1.0])
    assert _xy(val) == ([1, 2, 3], [3.5, 2.5, 2.8])
    assert _xy(ax.lines[2])[0] == [2, 2]  # a vertical line at the best epoch, 1-based
