"""Charts of a training run. matplotlib is imported inside the functions only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gradbasics._validate import _describe
from gradbasics.history import TrainHistory
from gradbasics.rangetest import LRFindResult
from gradbasics.unitstats import UnitStats, unit_stats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_activations", "plot_losses", "plot_lr_find", "plot_metrics"]


def _new_figure(what: str, rows: int = 1) -> tuple[Figure, list[Any], Any]:
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            f"{what} needs matplotlib; install it with: pip install 'gradbasics[plot]'"
        ) from exc
    # A bare Figure (no pyplot): no global state, no GUI backend, safe in scripts and tests.
    fig = Figure(figsize=(8, 5 if rows == 1 else 1 + 2.4 * rows), layout="constrained")
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return fig, axes, matplotlib.colormaps["viridis"]


def _check_history(history: object) -> TrainHistory:
    if not isinstance(history, TrainHistory):
        raise TypeError(f"history must be a TrainHistory, got {_describe(history)}.")
    return history


def plot_activations(
    history: TrainHistory,
    *,
    kind: str = "mean",
    names: Sequence[str] | None = None,
    label_every: int = 5,
    title: str | None = None,
) -> Figure:
    r"""Draw the recorded activations: the notes' chart, a heat map of units, or statistics.

    ``kind="mean"`` is the notes' chart: each recorded name is one position on the x axis
    (Input, Hidden, Output neuron for :class:`~gradbasics.FrozenFirstModel`), one line per
    epoch, at the mean of the activation's elements (the activation itself for a single
    input, as in the notes):

    .. math::

        a_{e,k} = \frac{1}{|A_{e,k}|} \sum_j A_{e,k,j}.

    ``kind="units"`` draws one heat map per name, units by epochs, of each unit's mean
    :math:`\mu_{e,u}` (see :func:`~gradbasics.unit_stats`): the view for wide layers.
    ``kind="stats"`` draws, per name, the layer's mean and a band of one standard deviation
    over all its rows and units, from the per-unit statistics,

    .. math::

        m_e = \frac{1}{U} \sum_u \mu_{e,u}, \qquad
        s_e^2 = \frac{1}{U} \sum_u \bigl(\sigma_{e,u}^2 + \mu_{e,u}^2\bigr) - m_e^2,

    with the share of activations that are exactly 0, :math:`\frac{1}{U} \sum_u d_{e,u}`,
    on a second axis (a dead layer climbs to 1). The labels come from the model
    (``history.activation_labels``: ``"0: Linear(3→16)"``).

    Args:
        history: A history from ``train_loop(..., record=...)``.
        kind: ``"mean"``, ``"units"`` or ``"stats"``.
        names: Which recorded names to draw, in order (default: all, as recorded).
        label_every: With ``kind="mean"``, put epoch 1 and every ``label_every``-th epoch
            in the legend.
        title: The chart's title.

    Returns:
        A matplotlib ``Figure``; save it with ``fig.savefig(path)``.

    Raises:
        TypeError: If ``history`` is not a :class:`~gradbasics.TrainHistory`.
        ValueError: If it holds no recorded activations, a name was not recorded, or
            ``kind`` or ``label_every`` is not one of the values above.
        ImportError: If matplotlib is not installed.
    """
    hist = _check_history(history)
    recorded = list(hist.activation_stats) or list(hist.activations)
    if not recorded:
        raise ValueError(
            "history must hold recorded activations (train with record=True), got none."
        )
    chosen = recorded if names is None else list(names)
    unknown = [n for n in chosen if n not in recorded]
    if unknown:
        raise ValueError(f"names must be recorded names {recorded}, got {unknown}.")
    if kind not in ("mean", "units", "stats"):
        raise ValueError(f"kind must be 'mean', 'units' or 'stats', got {kind!r}.")
    if isinstance(label_every, bool) or not isinstance(label_every, int) or label_every < 1:
        raise ValueError(f"label_every must be an int >= 1, got {label_every!r}.")
    labels = [hist.activation_labels.get(n) or f"{n.capitalize()} neuron" for n in chosen]
    if kind == "mean":
        return _plot_means(hist, chosen, labels, label_every, title)
    fig, axes, _ = _new_figure("plot_activations", rows=len(chosen))
    for ax, name, label in zip(axes, chosen, labels, strict=True):
        stats = _stats_of(hist, name)
        epochs = stats.mean.shape[0]
        if kind == "units":
            image = ax.imshow(
                stats.mean.T.cpu().numpy(),  # (units, epochs)
                aspect="auto",
                origin="lower",
                interpolation="nearest",
                extent=(0.5, epochs + 0.5, -0.5, stats.mean.shape[1] - 0.5),
            )
            fig.colorbar(image, ax=ax, label="unit mean")
            ax.set_ylabel("Unit")
        else:
            _draw_band(ax, stats)
        ax.set_title(label, fontsize="medium")
    axes[-1].set_xlabel("Epoch")
    fig.suptitle(title or ("Unit means per epoch" if kind == "units" else "Activation statistics"))
    return fig


def _plot_means(
    hist: TrainHistory, chosen: list[str], labels: list[str], label_every: int, title: str | None
) -> Figure:
    fig, (ax,), cmap = _new_figure("plot_activations")
    # (epochs,) per name: the mean over each activation's elements
    values = [
        hist.activations[n].flatten(1).double().mean(1).tolist()
        if n in hist.activations
        else hist.activation_stats[n].mean.mean(1).tolist()
        for n in chosen
    ]
    epochs = len(values[0]) if values else 0
    xs = list(range(1, len(chosen) + 1))
    for e in range(epochs):
        label = f"Epoch {e + 1}" if e == 0 or (e + 1) % label_every == 0 else None
        color = cmap(e / max(epochs - 1, 1))  # early epochs dark, late epochs light
        ax.plot(xs, [v[e] for v in values], marker="o", color=color, label=label)
    ax.set_xticks(xs, labels, rotation=20 if max(map(len, labels)) > 14 else 0)
    ax.set_xlabel("Neuron" if all(lb.endswith(" neuron") for lb in labels) else "Layer")
    ax.set_ylabel("Activation value")
    ax.set_title(title or "Activations per epoch")
    ax.grid(True)
    if epochs:
        ax.legend()
    return fig


def _stats_of(hist: TrainHistory, name: str) -> UnitStats:
    """A name's per-unit statistics: recorded, or computed from its recorded rows."""
    if name in hist.activation_stats:
        return hist.activation_stats[name]
    return UnitStats.stack([unit_stats(row) for row in hist.activations[name]])


def _draw_band(ax: Any, stats: UnitStats) -> None:
    """The layer's mean with a one-std band; the share of exact zeros on a second axis."""
    epochs = list(range(1, stats.mean.shape[0] + 1))
    m = stats.mean.mean(1)  # (epochs,)
    s = ((stats.std**2 + stats.mean**2).mean(1) - m**2).clamp(min=0).sqrt()  # (epochs,)
    ax.plot(epochs, m.tolist(), marker=".", label="mean")
    ax.fill_between(epochs, (m - s).tolist(), (m + s).tolist(), alpha=0.3, label="± 1 std")
    ax.set_ylabel("Activation")
    ax.grid(True)
    zeros = ax.twinx()
    zeros.plot(epochs, stats.dead.mean(1).tolist(), color="tab:red", linestyle="--")
    zeros.set_ylim(-0.05, 1.05)
    zeros.set_ylabel("Share of zeros", color="tab:red")


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
    fig, (ax,), _ = _new_figure("plot_losses")
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


def plot_metrics(
    history: TrainHistory, *, names: Sequence[str] | None = None, title: str | None = None
) -> Figure:
    """Draw each metric per epoch, training against validation, the best epoch marked.

    One panel per quantity: ``"loss"`` (``history.losses`` against ``history.val_losses``)
    and each metric ``m`` (``history.metrics["train_" + m]`` against
    ``history.metrics[m]``, whichever the run recorded). With early stopping, a dotted
    line marks ``history.best_epoch`` on every panel. Epochs are 1-based on the x axis.

    Args:
        history: A history from :func:`~gradbasics.train_loop`.
        names: The quantities to draw (``"loss"`` and metric names, without ``train_``);
            None for all.
        title: The figure's title.

    Returns:
        A matplotlib ``Figure`` with one axes per quantity, its lines labelled
        ``"training"`` and ``"validation"``.

    Raises:
        TypeError: If ``history`` is not a :class:`~gradbasics.TrainHistory`.
        ValueError: On a name the history does not hold, or a history with no epochs.
        ImportError: If matplotlib is not installed.

    Example:
        >>> import torch
        >>> from gradbasics import ChainModel, plot_metrics, train_loop
        >>> x, t = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 0.5])
        >>> h = train_loop(ChainModel(0.5, 0.5, 0.5), x, t, epochs=4, lr=0.1, val=(x, t))
        >>> fig = plot_metrics(h)
        >>> [line.get_label() for line in fig.axes[0].lines]
        ['training', 'validation']
    """
    hist = _check_history(history)
    if not hist.losses:
        raise ValueError("history must hold at least one epoch, got none.")
    found = ["loss", *dict.fromkeys(m.removeprefix("train_") for m in hist.metrics)]
    chosen = found if names is None else list(names)
    unknown = [n for n in chosen if n not in found]
    if unknown or not chosen:
        raise ValueError(f"names must be quantities the history holds {found}, got {chosen}.")
    fig, axes, _ = _new_figure("plot_metrics", rows=len(chosen))
    for ax, name in zip(axes, chosen, strict=True):
        train = hist.losses if name == "loss" else hist.metrics.get(f"train_{name}")
        val = hist.val_losses if name == "loss" else hist.metrics.get(name)
        for values, label in ((train, "training"), (val, "validation")):
            if values:
                ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        if hist.best_epoch is not None:
            ax.axvline(hist.best_epoch + 1, color="grey", linestyle=":", label="best epoch")
        ax.set_ylabel(name)
        ax.grid(True)
        ax.legend()
    axes[-1].set_xlabel("Epoch")
    fig.suptitle(title or "Per epoch: training and validation")
    return fig


def plot_lr_find(result: LRFindResult, *, title: str | None = None) -> Figure:
    r"""Draw a range test: loss against learning rate, on a log axis, the suggestion marked.

    The raw losses :math:`L_i` are drawn faintly, the smoothed :math:`s_i` as a line,
    and the suggested rate :math:`\eta^\star` (see :func:`~gradbasics.lr_find`) as a
    dotted vertical line with a point on the smoothed curve.

    Args:
        result: What :func:`~gradbasics.lr_find` returned.
        title: The chart's title.

    Returns:
        A matplotlib ``Figure``, its lines labelled ``"loss"``, ``"smoothed"`` and
        ``"suggestion"`` (when there is one).

    Raises:
        TypeError: If ``result`` is not an :class:`~gradbasics.LRFindResult`.
        ImportError: If matplotlib is not installed.

    Example:
        >>> from gradbasics import LRFindResult, plot_lr_find
        >>> result = LRFindResult(lrs=[0.01, 0.1, 1.0], losses=[3.0, 1.0, 5.0],
        ...                       smoothed=[3.0, 2.0, 3.0], suggestion=0.01)
        >>> labels = [line.get_label() for line in plot_lr_find(result).axes[0].lines]
        >>> [label for label in labels if not label.startswith("_")]  # "_": not in the legend
        ['loss', 'smoothed', 'suggestion']
    """
    if not isinstance(result, LRFindResult):
        raise TypeError(f"result must be an LRFindResult, got {_describe(result)}.")
    fig, (ax,), _ = _new_figure("plot_lr_find")
    ax.plot(result.lrs, result.losses, color="lightgrey", label="loss")
    ax.plot(result.lrs, result.smoothed, label="smoothed")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="grey", linestyle=":", label="suggestion")
        if result.suggestion in result.lrs:  # lr_find's always is; a hand-made one may not be
            at = result.lrs.index(result.suggestion)
            ax.plot([result.suggestion], [result.smoothed[at]], "o", color="red")
        ax.set_title(title or f"Learning-rate range test: suggestion {result.suggestion:.2g}")
    else:
        ax.set_title(title or "Learning-rate range test: no descent found")
    ax.set_xscale("log")
    ax.set_xlabel("Learning rate")
    ax.set_ylabel("Batch loss")
    ax.grid(True)
    ax.legend()
    return fig
