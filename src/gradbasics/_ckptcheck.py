"""Checks behind checkpoints: plain values, a whole payload, a run's settings, a path.

Every check here runs before a checkpoint changes anything, and says what it refused.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics._ckptio import CheckpointError
from gradbasics._device import sanctioned_sync
from gradbasics._validate import _describe
from gradbasics.rules import Rule

__all__: list[str] = []

_KEYS = ("model", "epoch", "losses", "activations", "settings", "generator")
_GENERATOR_BYTES = torch.Generator().get_state().numel()


def plain(value: object, key: str) -> Any:
    """``value`` as plain Python (NumPy and Fraction numbers become int or float).

    Raises:
        TypeError: Naming ``key``, for a value that would not load back safely.
    """
    if value is None or type(value) in (bool, str, Tensor, torch.nn.Parameter):
        return value
    if isinstance(value, str):  # a str subclass (an enum) would not load back: plain text
        return str.__add__(value, "")
    if isinstance(value, Tensor):
        return value.detach().as_subclass(Tensor)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list | tuple):
        items = [plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        for k in value:
            if type(k) not in (str, int, float, bool) and k is not None:
                raise TypeError(
                    f"{key} must have keys that are strings, numbers, bools or None (what a "
                    f"checkpoint loads back safely), got the key {_describe(k)}."
                )
        return {k: plain(v, f"{key}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"{key} must hold only numbers, strings, bools, None, tensors, lists, tuples and "
        f"dicts (what a checkpoint loads back safely), got {_describe(value)}."
    )


def check_epoch(epoch: object) -> int:
    """``epoch``: a non-negative int (not a bool, a float or a string)."""
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        raise TypeError(f"epoch must be a non-negative int, got {_describe(epoch)}.")
    return int(epoch)


def run_settings(
    *,
    lr: float | None,
    optimizer: torch.optim.Optimizer | None,
    update: Callable[..., object],
    rows: int | None,
    batch_size: int | None,
    loss_fn: Callable[..., object] | None = None,
    data: tuple[Tensor, Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> LazySettings:
    """Describe a run in plain values, so a resumed run can be checked against it.

    The data's fingerprint (``data``) is taken only when a checkpoint asks for it.
    """
    if optimizer is not None:
        rule = f"optimizer {type(optimizer).__module__}.{type(optimizer).__qualname__}"
    elif isinstance(update, Rule):  # the rule and its hyperparameters
        rule = repr(update)
    else:
        rule = f"{getattr(update, '__module__', '?')}.{getattr(update, '__qualname__', '?')}"
    rate = None if lr is None else float(lr)
    plain_settings = {"update": rule, "lr": rate, "rows": rows, "batch_size": batch_size}
    if loss_fn is not None:
        plain_settings["loss"] = describe_loss(loss_fn)
    # Which RNG draws the batches: resumed from a generator's state, the global one's
    # would draw other batches.
    plain_settings["batch_rng"] = "the global RNG" if generator is None else "a generator"
    return LazySettings(plain_settings, data)


class LazySettings(dict[str, Any]):
    """A run's settings; the data's fingerprint is added on first use (it reads the data)."""

    def __init__(self, settings: dict[str, Any], data: tuple[Tensor, Tensor] | None) -> None:
        super().__init__(settings)
        self.data = data

    def complete(self) -> dict[str, Any]:
        """The settings with the data's fingerprint (taken once)."""
        if self.data is not None:
            with sanctioned_sync():
                self["data"] = fingerprint(*self.data)
            self.data = None
        return dict(self)


def describe_loss(loss_fn: Callable[..., object]) -> str:
    """A loss as plain text: its name, and an ``nn`` loss's plain settings."""
    kind = loss_fn if not isinstance(loss_fn, nn.Module) else type(loss_fn)
    name = (
        f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(kind).__name__)}"
    )
    if isinstance(loss_fn, nn.Module):
        plain_attrs = {k: v for k, v in sorted(vars(loss_fn).items())
                       if not k.startswith("_") and k != "training"
                       and (v is None or isinstance(v, bool | int | float | str))}  # fmt: skip
        tensors = {k: tuple(v.shape) for k, v in loss_fn.named_buffers()}
        name += f"({plain_attrs}, buffers {tensors})" if tensors else f"({plain_attrs})"
    return name


def fingerprint(inputs: Tensor, targets: Tensor) -> str:
    """Shapes, dtypes and a SHA-256 of up to 64 evenly spaced rows of the data."""
    n = inputs.shape[0]
    rows = torch.linspace(0, n - 1, min(n, 64)).round().long().unique()
    digest = hashlib.sha256()
    for t in (inputs, targets):
        sample = t.detach().index_select(0, rows.to(t.device)).cpu().contiguous()
        digest.update(sample.view(-1).view(torch.uint8).numpy().tobytes())
    shapes = f"{tuple(inputs.shape)} {inputs.dtype}, {tuple(targets.shape)} {targets.dtype}"
    return f"{shapes}, sha256 {digest.hexdigest()[:16]}"


def check_writable(path: Path, name: str) -> None:
    """Refuse, before any epoch, a checkpoint path that no save could write."""
    folder = Path(os.path.realpath(path)).parent
    if path.is_dir():
        raise ValueError(f"{name} must be a file path, got the directory {path}.")
    if not folder.is_dir():
        raise ValueError(f"{name}'s folder must exist, got {path} (no folder {folder}).")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{name}'s folder must be writable, got {path} ({folder} is not).")


def check_payload(data: dict[str, Any], path: Path) -> None:
    """Refuse a well-formed file that lacks a key or holds a value of the wrong kind."""
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path} is not a complete checkpoint: it lacks {missing}.")
    epoch, losses = data["epoch"], data["losses"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CheckpointError(f"{path} holds a bad epoch count {epoch!r}.")
    if not isinstance(losses, list) or not all(isinstance(v, float) for v in losses):
        raise CheckpointError(f"{path} holds a bad loss history.")
    for key in ("model", "activations"):
        if not isinstance(data[key], dict) or not all(
            isinstance(v, Tensor) for v in data[key].values()
        ):
            raise CheckpointError(f"{path} holds a bad {key} state (not a dict of tensors).")
    stats = data.get("activation_stats") or {}
    if not isinstance(stats, dict) or not all(
        isinstance(v, Tensor) and v.dim() == 3 and v.shape[0] == 3 for v in stats.values()
    ):
        raise CheckpointError(f"{path} holds bad activation statistics.")
    gen = data["generator"]
    if not isinstance(gen, Tensor) or gen.dtype != torch.uint8 or gen.numel() != _GENERATOR_BYTES:
        raise CheckpointError(f"{path} holds a bad generator state: {_describe(gen)}.")
    if not isinstance(data["settings"], dict):
        raise CheckpointError(f"{path} holds bad settings.")


def check_model_state(path: Path, model: nn.Module, saved: dict[str, Tensor]) -> None:
    """Keys, shapes and dtypes of ``saved`` must be the model's."""
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


def _groups(state: object) -> list[dict[str, Any]] | None:
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups
    ):
        return None
    return groups


def check_optimizer(
    path: Path,
    data: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    hyper: bool,
    skip: tuple[str, ...] = (),
) -> None:
    """The saved optimizer state must fit ``optimizer`` (with ``hyper``: same values)."""
    saved_class = data.get("optimizer_class")
    if saved_class != type(optimizer).__name__:  # None: written without one
        raise CheckpointError(
            f"{path} was written with optimizer {saved_class}, but this run uses "
            f"{type(optimizer).__name__}."
        )
    groups = _groups(data.get("optimizer"))
    if groups is None:
        raise CheckpointError(f"{path} holds a bad optimizer state.")
    saved_sizes = [len(g["params"]) for g in groups]
    own_sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes != own_sizes:
        raise CheckpointError(
            f"{path} has optimizer parameter groups of sizes {saved_sizes}, "
            f"this optimizer {own_sizes}."
        )
    if not hyper:
        return
    for i, (old, new) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        diff = [
            f"{k}: saved {old.get(k)!r}, now {new.get(k)!r}"
            for k in sorted((set(old) | set(new)) - {"params", *skip})
            if not _same(old.get(k), plain(new.get(k), k))
        ]
        if diff:
            raise CheckpointError(
                f"{path} is from a run whose optimizer had other hyperparameters "
                f"(param group {i}: {'; '.join(diff)}); resuming would silently use the "
                "saved ones."
            )


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and torch.equal(a, b)
    return a == b


def check_settings(path: Path, saved: dict[str, Any], settings: dict[str, Any]) -> None:
    """Each saved setting must equal this run's (``data`` only when both have it)."""
    keys = set(saved) | set(settings)
    for late in ("data", "loss", "batch_rng"):  # written before these were kept
        if late not in saved:
            keys.discard(late)
    diff = [
        f"{k}: saved {saved.get(k)!r}, now {settings.get(k)!r}"
        for k in sorted(keys)
        if saved.get(k) != settings.get(k)
    ]
    if diff:
        raise CheckpointError(f"{path} is from a different run: {'; '.join(diff)}.")
