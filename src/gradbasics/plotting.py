"""Charts of a training run. matplotlib is imported inside the functions only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gradbasics._validate import _describe
from gradbasics.history import TrainHistory

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_activations", "plot_losses"]


def _new_figure(what: str) -> tuple[Figure, Any, Any]:
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            f"{what} needs matplotlib; install it with: pip install 'gradbasics[plot]'"
        ) from exc
    # A bare Figure (no pyplot): no global state, no GUI backend, safe in scripts and tests.
    fig = Figure(figsize=(8, 5), layout="constrained")
    return fig, fig.add_subplot(), matplotlib.colormaps["viridis"]


def _check_history(history: object) -> TrainHistory:
    if not isinstance(history, TrainHistory):
        raise TypeError(f"history must be a TrainHistory, got {_describe(history)}.")
    return history


def plot_activations(
    history: TrainHistory,
    *,
    names: Sequence[str] | None = None,
    label_every: int = 5,
    title: str | None = None,
) -> Figure:
    r"""Draw the notes' chart: neurons on x, activation on y, one line per epoch.

    Each recorded name is one position on the x axis (Input, Hidden, Output for
    :class:`~gradbasics.FrozenFirstModel`). The value plotted for epoch :math:`e` and
    neuron :math:`k` is the mean of that activation's elements,

    .. math::

        a_{e,k} = \frac{1}{|A_{e,k}|} \sum_j A_{e,k,j},

    which is the activation itself for a single input, as in the notes.

    Args:
        history: A history from ``train_loop(..., record=True)``.
        names: Which recorded names to draw, in order (default: all, as recorded).
        label_every: Put epoch 1 and every ``label_every``-th epoch in the legend.
        title: The chart's title.

    Returns:
        A matplotlib ``Figure``; save it with ``fig.savefig(path)``.

    Raises:
        TypeError: If ``history`` is not a :class:`~gradbasics.TrainHistory`.
        ValueError: If it holds no recorded activations, or a name was not recorded.
        ImportError: If matplotlib is not installed.
    """
    hist = _check_history(history)
    if not hist.activations:
        raise ValueError(
            "history must hold recorded activations (train with record=True), got none."
        )
    chosen = list(hist.activations) if names is None else list(names)
    unknown = [n for n in chosen if n not in hist.activations]
    if unknown:
        raise ValueError(f"names must be recorded names {list(hist.activations)}, got {unknown}.")
    if isinstance(label_every, bool) or not isinstance(label_every, int) or label_every < 1:
        raise ValueError(f"label_every must be an int >= 1, got {label_every!r}.")
    fig, ax, cmap = _new_figure("plot_activations")
    # (epochs, neurons): the mean over each activation's elements
    values = [hist.activations[n].flatten(1).double().mean(1).tolist() for n in chosen]
    epochs = len(values[0]) if values else 0
    xs = list(range(1, len(chosen) + 1))
    for e in range(epochs):
        label = f"Epoch {e + 1}" if e == 0 or (e + 1) % label_every == 0 else None
        color = cmap(e / max(epochs - 1, 1))  # early epochs dark, late epochs light
        ax.plot(xs, [v[e] for v in values], marker="o", color=color, label=label)
    ax.set_xticks(xs, [f"{n.capitalize()} neuron" for n in chosen])
    ax.set_xlabel("Neuron")
    ax.set_ylabel("Activation value")
    ax.set_title(title or "Activations per epoch")
    ax.grid(True)
    if epochs:
        ax.legend()
    return fig


def plot_losses(
    history: TrainHistory, *, log_scale: bool = False, title: str | None = None
) -> Figure:
    """Draw the per-epoch loss of a run, and its validation loss when it has one.

    With early stopping, the best epoch is marked.

    Args:
        history: A history from :func:`~gradbasics.train_loop`.
        log_scale: Use a logarithmic loss axis.
        title: The chart's title.

    Returns:
        A matplotlib ``Figure``: epoch (1-based) against the training loss, and against
        the validation loss when ``history.val_losses`` is not empty.

    Raises:
        TypeError: If ``history`` is not a :class:`~gradbasics.TrainHistory`.
        ImportError: If matplotlib is not installed.
    """
    hist = _check_history(history)
    fig, ax, _ = _new_figure("plot_losses")
    ax.plot(range(1, len(hist.losses) + 1), hist.losses, marker=".", label="training")
    if hist.val_losses:
        epochs = range(1, len(hist.val_losses) + 1)
        ax.plot(epochs, hist.val_losses, marker=".", label="validation")
        if hist.best_epoch is not None:
            ax.axvline(hist.best_epoch + 1, color="grey", linestyle=":", label="best epoch")
        ax.legend()
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Mean loss")
    ax.set_title(title or "Loss per epoch")
    ax.grid(True)
    return fig
