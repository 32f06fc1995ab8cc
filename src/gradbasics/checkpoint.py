"""Checkpoints: atomic writes, safe loads (tensors and plain values only), strict checks."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics._validate import _describe, check_model
from gradbasics._version import __version__
from gradbasics.history import TrainHistory
from gradbasics.rules import Rule

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint"]

_FORMAT = "gradbasics.checkpoint"
_VERSION = 1
PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A checkpoint file was refused: unsafe, corrupted, or not for this model or run."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` restored besides the model and optimizer.

    Attributes:
        epoch: The number of epochs completed when it was written.
        history: The history of those epochs.
        settings: The run's settings (plain values) it was written with.
    """

    epoch: int
    history: TrainHistory = field(default_factory=TrainHistory)
    settings: dict[str, Any] = field(default_factory=dict)


def check_path(path: object, *, name: str = "path") -> Path:
    """Return ``path`` as a ``Path`` after checking it is a str or ``os.PathLike``."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike, got {_describe(path)}.")
    return Path(path)


def run_settings(
    *,
    lr: float | None,
    optimizer: torch.optim.Optimizer | None,
    update: Callable[..., object],
    rows: int,
    batch_size: int,
) -> dict[str, Any]:
    """Describe a run in plain values, so a resumed run can be checked against it."""
    if optimizer is not None:
        rule = f"optimizer {type(optimizer).__module__}.{type(optimizer).__qualname__}"
    elif isinstance(update, Rule):  # the rule and its hyperparameters
        rule = repr(update)
    else:
        rule = f"{getattr(update, '__module__', '?')}.{getattr(update, '__qualname__', '?')}"
    return {"update": rule, "lr": lr, "rows": rows, "batch_size": batch_size}


def _atomic_write(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` so that a kill at any instant leaves the old or new file."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for stale in folder.glob(f".{path.name}.*.tmp"):  # left by writers killed mid-write
        stale.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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
) -> None:
    """Write a checkpoint atomically: a temporary file, flush, fsync, then ``os.replace``.

    It holds only tensors and plain Python values: the model's ``state_dict``, the
    optimizer's or update rule's state (if any), the generator's state (or the global CPU
    RNG's when None), the epoch count, the history and ``settings``, serialised with
    ``torch.save`` and wrapped with a SHA-256 checksum of those bytes, so a flipped bit is
    refused on load.

    Args:
        path: The file to write; its folder must exist.
        model: The model whose ``state_dict`` is saved.
        epoch: The number of epochs completed.
        history: The history so far.
        optimizer: An optimizer whose state is saved.
        generator: The CPU generator drawing the batches (None: the global CPU RNG).
        settings: Plain values describing the run (e.g. the update rule and lr), checked
            for equality by :func:`load_checkpoint`.
        rule: A rule object of :mod:`gradbasics.rules` whose state is saved.

    Raises:
        TypeError: On arguments of the wrong type.

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
    hist = history if history is not None else TrainHistory()
    if rule is not None and not isinstance(rule, Rule):
        raise TypeError(f"rule must be a gradbasics.rules.Rule or None, got {_describe(rule)}.")
    payload: dict[str, Any] = {
        "gradbasics": __version__,
        "model_class": type(model).__name__,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_class": type(optimizer).__name__ if optimizer is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rule": rule.state_dict() if rule is not None else None,
        "generator": (generator.get_state() if generator is not None else torch.get_rng_state()),
        "epoch": int(epoch),
        "losses": [float(v) for v in hist.losses],
        "activations": {k: v.detach().cpu() for k, v in hist.activations.items()},
        "settings": dict(settings or {}),
    }
    inner = io.BytesIO()
    torch.save(payload, inner)
    blob = inner.getvalue()
    # zip (torch.save's format) leaves tensor bytes unchecked: a checksum catches bit rot.
    outer = {
        "format": _FORMAT,
        "version": _VERSION,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "payload": blob,
    }
    _atomic_write(outer, target)


def _safe_load(source: Path | io.BytesIO, path: Path) -> Any:
    """``torch.load(..., weights_only=True)``, with its failures told apart and explained."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0])
        if "GLOBAL" in text:  # the file names a callable to import: it could run code
            raise CheckpointError(
                f"Refused to load {path}: it holds objects other than tensors and plain "
                f"values, and loading it could run code ({detail})"
            ) from exc
        raise CheckpointError(f"{path} is truncated or corrupted ({detail})") from exc
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupted: {exc}") from exc


def _read(path: Path) -> dict[str, Any]:
    outer = _safe_load(path, path)
    if not isinstance(outer, dict) or outer.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not a gradbasics checkpoint.")
    if outer.get("version") != _VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {outer.get('version')!r}; "
            f"this gradbasics reads version {_VERSION}."
        )
    payload = outer.get("payload")
    if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != outer.get("sha256"):
        raise CheckpointError(f"{path} is corrupted: its SHA-256 checksum does not match.")
    data = _safe_load(io.BytesIO(payload), path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a gradbasics checkpoint.")
    return data


def _check_model_state(path: Path, model: nn.Module, saved: dict[str, Tensor]) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    wrong = [
        f"{k}: saved {tuple(saved[k].shape)} {saved[k].dtype}, model {tuple(own[k].shape)} "
        f"{own[k].dtype}"
        for k in own
        if k in saved and (saved[k].shape != own[k].shape or saved[k].dtype != own[k].dtype)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"missing keys {missing}" if missing else "",
            f"unexpected keys {unexpected}" if unexpected else "",
            f"mismatched tensors [{'; '.join(wrong)}]" if wrong else "",
        ]
        raise CheckpointError(
            f"{path} does not match the model {type(model).__name__}: "
            + ", ".join(p for p in parts if p)
            + "."
        )


def load_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    settings: dict[str, Any] | None = None,
    rule: Rule | None = None,
) -> Checkpoint:
    """Restore a checkpoint into ``model`` (and ``optimizer``, ``generator``), safely.

    The file is read with ``torch.load(..., weights_only=True)``: only tensors and plain
    values, so a file crafted to run code when unpickled is refused without running it.
    Everything is checked before anything is changed: the model's keys, shapes and
    dtypes, the optimizer's class and parameter count, and ``settings`` (when given)
    against the saved settings. On any mismatch the model is left unchanged.

    Args:
        path: The checkpoint file.
        model: The model to restore into.
        optimizer: The optimizer to restore into; required if one was saved.
        generator: The CPU generator to restore (None: the global CPU RNG is restored).
        settings: The current run's settings; each saved setting must equal it.
        rule: The rule object of :mod:`gradbasics.rules` to restore; its hyperparameters
            must equal the saved ones.

    Returns:
        The epoch count, history and settings it holds.

    Raises:
        CheckpointError: If the file is unsafe, truncated, corrupted, or does not match.
        FileNotFoundError: If there is no file at ``path``.
        TypeError: On arguments of the wrong type.
    """
    if rule is not None and not isinstance(rule, Rule):
        raise TypeError(f"rule must be a gradbasics.rules.Rule or None, got {_describe(rule)}.")
    return restore(
        check_path(path),
        check_model(model),
        optimizer,
        generator,
        settings,
        max_epoch=None,
        rule=rule,
    )


def restore(
    source: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator | None,
    settings: dict[str, Any] | None,
    *,
    max_epoch: int | None,
    rule: Rule | None = None,
) -> Checkpoint:
    """Check everything in the checkpoint at ``source``, then restore it (see above)."""
    data = _read(source)
    if max_epoch is not None and int(data["epoch"]) > max_epoch:
        raise CheckpointError(
            f"{source} holds {data['epoch']} epochs, more than the epochs={max_epoch} asked for."
        )
    _check_model_state(source, model, data["model"])
    saved_opt = data.get("optimizer_class")
    given_opt = type(optimizer).__name__ if optimizer is not None else None
    if saved_opt != given_opt:
        raise CheckpointError(
            f"{source} was written with optimizer {saved_opt}, but this run uses {given_opt}."
        )
    if optimizer is not None:
        saved_groups = [len(g["params"]) for g in data["optimizer"]["param_groups"]]
        own_groups = [len(g["params"]) for g in optimizer.param_groups]
        if saved_groups != own_groups:
            raise CheckpointError(
                f"{source} has optimizer parameter groups of sizes {saved_groups}, "
                f"this optimizer {own_groups}."
            )
    if settings is not None:
        saved = data.get("settings", {})
        diff = [
            f"{k}: saved {saved.get(k)!r}, now {settings.get(k)!r}"
            for k in sorted(set(saved) | set(settings))
            if saved.get(k) != settings.get(k)
        ]
        if diff:
            raise CheckpointError(f"{source} is from a different run: {'; '.join(diff)}.")
    saved_rule = data.get("rule")
    if rule is not None:
        params = [p for p in model.parameters() if p.requires_grad]
        if saved_rule is None:
            raise CheckpointError(f"{source} holds no update rule state, but {rule!r} was given.")
        try:
            rule.check_state_dict(saved_rule, params)
        except ValueError as exc:
            raise CheckpointError(f"{source} does not fit the update rule: {exc}") from exc
    # Every check passed: now change things.
    model.load_state_dict(data["model"])
    if optimizer is not None:
        optimizer.load_state_dict(data["optimizer"])
    if rule is not None and saved_rule is not None:
        rule.load_state_dict(saved_rule, [p for p in model.parameters() if p.requires_grad])
    if generator is not None:
        generator.set_state(data["generator"])
    else:
        torch.set_rng_state(data["generator"])
    history = TrainHistory(list(data["losses"]), dict(data["activations"]))
    return Checkpoint(int(data["epoch"]), history, dict(data.get("settings", {})))
