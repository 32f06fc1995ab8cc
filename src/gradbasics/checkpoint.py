"""Checkpoints: atomic writes, safe loads (tensors and plain values only), strict checks."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gradbasics._ckptcheck import check_epoch, check_payload, plain
from gradbasics._ckptio import FORMAT, CheckpointError, read, same_file, serialise, write_atomic
from gradbasics._ckptload import Checkpoint, restore
from gradbasics._ckptstate import callback_entries, rng_state
from gradbasics._validate import _describe, check_model
from gradbasics._version import __version__
from gradbasics.history import TrainHistory
from gradbasics.rules import Rule

if TYPE_CHECKING:  # the callbacks package imports this module
    from gradbasics.callbacks.base import Callback

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "export_state_dict",
    "load_checkpoint",
    "save_checkpoint",
]

PathLike = str | os.PathLike[str]
CheckpointError.__module__ = __name__  # documented here, defined with the file format
Checkpoint.__module__ = __name__


def check_path(path: object, *, name: str = "path") -> Path:
    """Return ``path`` as a ``Path`` after checking it is a str or ``os.PathLike``."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {_describe(path)}.")
    return Path(path)


def _compact(t: Tensor) -> Tensor:
    """``t`` on the CPU owning just its elements (a view would save its whole buffer).

    A CPU tensor that already owns exactly its elements is saved as it is: no copy.
    """
    t = t.detach()
    whole = t.untyped_storage().nbytes() == t.numel() * t.element_size()
    if t.device.type == "cpu" and whole and t.is_contiguous() and t.storage_offset() == 0:
        return t
    return t.to("cpu", copy=True).contiguous()


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state = optimizer.state_dict()
    groups = [
        {k: v if k == "params" else plain(v, f"optimizer param_groups[{i}][{k!r}]")
         for k, v in g.items()}
        for i, g in enumerate(state["param_groups"])
    ]  # fmt: skip
    more = {
        k: plain(v, f"optimizer {k!r}")
        for k, v in state.items()
        if k not in ("state", "param_groups")
    }  # e.g. a RuleOptimizer's rule states
    return {"state": state["state"], "param_groups": groups, **more}


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    epoch: int,
    history: TrainHistory | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    settings: dict[str, Any] | None = None,
    rule: Rule | None = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
) -> None:
    """Write a checkpoint atomically: a temporary file, flush, fsync, then ``os.replace``.

    It holds only tensors and plain Python values (format 3): the model's ``state_dict``,
    the optimizer's or update rule's state (if any), the generator's state (or the global
    CPU RNG's when None), the global CPU RNG's state (and CUDA's, once CUDA is in use), the
    epoch count, the history, ``settings``, and for each callback with settings or state
    ``{key: {"settings": ..., "state": ...}}``. The file is a short
    header with a SHA-256 checksum of every byte after it, then what ``torch.save`` wrote,
    so a flipped bit anywhere (tensor data included) is refused on load, and the file is
    about the size of the tensors it holds. NumPy or ``Fraction`` numbers are stored as
    Python ``float`` or ``int``. A symbolic link at ``path`` is written through.

    Args:
        path: The file to write; its folder must exist.
        model: The model whose ``state_dict`` is saved.
        epoch: The number of epochs completed, a non-negative int.
        history: The history so far.
        optimizer: An optimizer whose state is saved.
        generator: The CPU generator drawing the batches (None: the global CPU RNG).
        settings: Plain values describing the run (e.g. the update rule and lr), checked
            for equality by :func:`load_checkpoint`.
        rule: A rule object of :mod:`gradbasics.rules` whose state is saved.
        scheduler: Deprecated: a learning-rate scheduler whose ``state_dict()`` is saved
            (under the callback key ``"scheduler"``); pass a
            :class:`~gradbasics.callbacks.Schedule` in ``callbacks`` instead.
        extra: More plain values and tensors to keep, returned as ``Checkpoint.extra``.
        callbacks: Callbacks whose settings and state are saved, by key.

    Raises:
        TypeError: On arguments of the wrong type, or a value in ``settings``, ``extra``
            or a callback's settings or state that would not load back (the message names
            its key).
        ValueError: On two callbacks with one key.
        OSError: If the file cannot be written (the message names ``path``; a full disk
            says so, and the previous checkpoint stays intact).

    Example:
        >>> import tempfile, torch
        >>> from gradbasics import ChainModel, load_checkpoint, save_checkpoint
        >>> path = tempfile.mkdtemp() + "/run.pt"
        >>> save_checkpoint(path, ChainModel(w1=1.5), epoch=3)
        >>> model = ChainModel()
        >>> load_checkpoint(path, model).epoch, model.w1.item()
        (3, 1.5)
    """
    target = check_path(path)
    check_model(model)
    count = check_epoch(epoch)
    hist = history if history is not None else TrainHistory()
    if rule is not None and not isinstance(rule, Rule):
        raise TypeError(f"rule must be a gradbasics.rules.Rule or None, got {_describe(rule)}.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {_describe(generator)}.")
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict or None, got {_describe(settings)}.")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict or None, got {_describe(extra)}.")
    entries = callback_entries(callbacks)
    if scheduler is not None:
        warnings.warn(
            "save_checkpoint(scheduler=...) is deprecated: pass "
            "callbacks=[gradbasics.callbacks.Schedule(scheduler)] instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        entries["scheduler"] = {"settings": None,
                                "state": plain(scheduler.state_dict(), "scheduler")}  # fmt: skip
    payload: dict[str, Any] = {
        "format": FORMAT,
        "gradbasics": __version__,
        "model_class": type(model).__name__,
        "model": {k: _compact(v) for k, v in model.state_dict().items()},
        "optimizer_class": type(optimizer).__name__ if optimizer is not None else None,
        "optimizer": _optimizer_state(optimizer) if optimizer is not None else None,
        "rule": rule.state_dict() if rule is not None else None,
        "generator": (generator.get_state() if generator is not None else torch.get_rng_state()),
        "rng": rng_state(),
        "epoch": count,
        "losses": [float(v) for v in hist.losses],
        "activations": {k: _compact(v) for k, v in hist.activations.items()},
        "activation_stats": {
            k: torch.stack(tuple(v)).to("cpu") for k, v in hist.activation_stats.items()
        },
        "settings": {str(k): plain(v, f"settings[{k!r}]") for k, v in (settings or {}).items()},
        "history_extra": plain(hist.extras(), "history"),
        "extra": plain(dict(extra or {}), "extra"),
        "callbacks": entries,
    }
    write_atomic(serialise(payload), target)


def export_state_dict(checkpoint: PathLike, out: PathLike) -> None:
    """Write the model weights of a checkpoint as a plain ``state_dict`` file.

    The output is what ``torch.save(model.state_dict(), out)`` writes: anyone can read it
    with ``torch.load(out, weights_only=True)`` and ``model.load_state_dict(...)``, with no
    gradbasics installed. The checkpoint is verified (checksum, safe load) first. ``out``
    is written as :func:`save_checkpoint` writes: atomically, fsynced, through a link.

    Args:
        checkpoint: A checkpoint written by :func:`save_checkpoint` or ``train_loop``.
        out: The file to write (atomically; its folder must exist); not the checkpoint.

    Raises:
        CheckpointError: If the checkpoint is unsafe, truncated, corrupted, or of a newer
            format.
        TypeError: If a path is not a str or ``os.PathLike``.
        ValueError: If ``out`` is the checkpoint itself (or a link to it): nothing is
            written.
        OSError: If ``out`` cannot be written (the message names it, and its folder when
            that is missing; a previous file at ``out`` stays intact).

    Example:
        >>> import tempfile, torch
        >>> from gradbasics import ChainModel, export_state_dict, save_checkpoint
        >>> folder = tempfile.mkdtemp()
        >>> save_checkpoint(folder + "/run.pt", ChainModel(w1=1.5), epoch=3)
        >>> export_state_dict(folder + "/run.pt", folder + "/weights.pt")
        >>> torch.load(folder + "/weights.pt", weights_only=True)["w1"]
        tensor([1.5000])
    """
    source, target = check_path(checkpoint, name="checkpoint"), check_path(out, name="out")
    if same_file(source, target):
        raise ValueError(
            f"out must be another file than checkpoint, got {target}, which is the checkpoint "
            f"{source}: exporting would replace it with bare weights."
        )
    data = read(source)
    check_payload(data, source)
    write_atomic(serialise(data["model"]), target, sealed=False, what="weights file")


def load_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    settings: dict[str, Any] | None = None,
    rule: Rule | None = None,
    restore_rng: bool = False,
    weights: str | None = None,
) -> Checkpoint:
    """Restore a checkpoint into ``model`` (and ``optimizer``, ``generator``), safely.

    The file is read with ``torch.load(..., weights_only=True)``: only tensors and plain
    values, so a file crafted to run code when unpickled is refused without running it.
    Everything is checked before anything is changed: the arguments, every key of the
    file, the model's keys, shapes and dtypes, the optimizer's class and parameter count,
    and ``settings`` (when given) against the saved settings. On any mismatch nothing is
    changed. Loading weights for inference needs only the model: an optimizer state in
    the file is then left unused (``ignored`` in the result says so), and no random number
    generator is touched unless ``generator`` or ``restore_rng`` asks for it.

    Args:
        path: The checkpoint file.
        model: The model to restore into.
        optimizer: The optimizer to restore into (the file must hold one's state).
        generator: A CPU generator to restore the saved generator state into.
        settings: The current run's settings; each saved setting must equal it.
        rule: The rule object of :mod:`gradbasics.rules` to restore; its hyperparameters
            must equal the saved ones.
        restore_rng: Restore the saved global RNG states (CPU, and CUDA where saved):
            what resuming a run by hand needs.
        weights: Load the weights a callback kept in its state instead of the last
            epoch's: ``weights="EarlyStopping"`` loads the best epoch's weights of a run
            with early stopping (``restore_best=True``).

    Returns:
        The epoch count, history and settings it holds, and what it did not restore.

    Raises:
        CheckpointError: If the file is unsafe, truncated, corrupted, incomplete, or does
            not match.
        FileNotFoundError: If there is no file at ``path``.
        TypeError: On arguments of the wrong type.
    """
    source = check_path(path)
    check_model(model)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {_describe(optimizer)}.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {_describe(generator)}.")
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict or None, got {_describe(settings)}.")
    if rule is not None and not isinstance(rule, Rule):
        raise TypeError(f"rule must be a gradbasics.rules.Rule or None, got {_describe(rule)}.")
    if not isinstance(restore_rng, bool):
        raise TypeError(f"restore_rng must be a bool, got {_describe(restore_rng)}.")
    if weights is not None and not isinstance(weights, str):
        raise TypeError(f"weights must be a callback key (str) or None, got {_describe(weights)}.")
    return restore(
        source, model, optimizer, generator, settings, max_epoch=None, rule=rule,
        rng=restore_rng, strict=False, weights=weights,
    )  # fmt: skip
