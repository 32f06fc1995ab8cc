"""Loading a checkpoint: every check first, then the model, optimizer, rule and RNGs.

What each callback kept is checked here (settings, and whether its state fits) and
returned by key; the caller loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from gradbasics._ckptcheck import (
    check_model_state,
    check_optimizer,
    check_payload,
    check_settings,
)
from gradbasics._ckptio import CheckpointError, read
from gradbasics._ckptstate import check_callbacks, saved_history, set_rng_state, upgrade
from gradbasics.history import TrainHistory
from gradbasics.rules import Rule

if TYPE_CHECKING:  # the callbacks package imports this module
    from gradbasics.callbacks.base import Callback

__all__ = ["Checkpoint", "restore"]


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` restored besides the model and optimizer.

    Attributes:
        epoch: The number of epochs completed when it was written.
        history: The history of those epochs.
        settings: The run's settings (plain values) it was written with.
        ignored: What the file holds but was not restored, e.g. ``("optimizer",)`` when
            weights are loaded for inference without the optimizer they trained with.
        extra: What ``save_checkpoint(extra=...)`` kept.
        callbacks: Each callback's ``{"settings": ..., "state": ...}``, by key (e.g. the
            best weights of ``callbacks["EarlyStopping"]["state"]["weights"]``).
    """

    epoch: int
    history: TrainHistory = field(default_factory=TrainHistory)
    settings: dict[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)


def restore(
    source: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator | None,
    settings: dict[str, Any] | None,
    *,
    max_epoch: int | None,
    rule: Rule | None = None,
    rng: bool = True,
    strict: bool = True,
    callbacks: Sequence[Callback] = (),
    volatile: set[str] | frozenset[str] = frozenset(),
    weights: str | None = None,
) -> Checkpoint:
    """Check everything in the checkpoint at ``source``, then restore it (see above).

    ``strict`` (resuming a run) also refuses an optimizer state left unused, any change
    of the optimizer's hyperparameters but those in ``volatile`` (driven by a callback),
    and callbacks whose settings differ or whose state is added or missing; their states
    are checked here and loaded by the caller (:attr:`Checkpoint.callbacks`).
    """
    data = read(source)
    check_payload(data, source)
    upgrade(data, source)
    if weights is not None:
        data["model"] = _weights_of(source, data, weights)
    if max_epoch is not None and data["epoch"] > max_epoch:
        raise CheckpointError(
            f"{source} holds {data['epoch']} epochs, more than the epochs={max_epoch} asked for."
        )
    check_model_state(source, model, data["model"])
    history = saved_history(source, data, strict=strict)
    ignored: tuple[str, ...] = ()
    if optimizer is not None:
        check_optimizer(source, data, optimizer, hyper=strict, skip=tuple(volatile))
    elif data.get("optimizer_class") is not None:
        if strict:
            raise CheckpointError(
                f"{source} was written with optimizer {data['optimizer_class']}, but this "
                "run uses None."
            )
        ignored = ("optimizer",)
    if settings is not None:
        check_settings(source, data["settings"], settings)
    if strict:
        check_callbacks(source, data, callbacks)
    saved_rule = data.get("rule")
    params = [p for p in model.parameters() if p.requires_grad]
    if rule is not None:
        if saved_rule is None:
            raise CheckpointError(f"{source} holds no update rule state, but {rule!r} was given.")
        try:
            rule.check_state_dict(saved_rule, params)
        except ValueError as exc:
            raise CheckpointError(f"{source} does not fit the update rule: {exc}") from exc
    elif saved_rule is not None:
        ignored += ("rule",)
    # Every check passed: now change things.
    model.load_state_dict(data["model"])
    if optimizer is not None:
        optimizer.load_state_dict(data["optimizer"])
    if rule is not None and saved_rule is not None:
        rule.load_state_dict(saved_rule, params)
    if generator is not None:
        generator.set_state(data["generator"])
    if rng:
        set_rng_state(data, global_too=generator is not None)
    return Checkpoint(
        data["epoch"], history, dict(data["settings"]), ignored, dict(data.get("extra") or {}),
        dict(data["callbacks"]),
    )  # fmt: skip


def _weights_of(source: Path, data: dict[str, Any], key: str) -> Any:
    """The weights kept in the state of callback ``key`` (e.g. the best ones)."""
    entry = data["callbacks"].get(key)
    state = entry.get("state") if entry is not None else None
    found = state.get("weights") if isinstance(state, dict) else None
    if not isinstance(found, dict) or not all(isinstance(v, Tensor) for v in found.values()):
        keys = sorted(
            k for k, v in data["callbacks"].items()
            if isinstance(v.get("state"), dict) and v["state"].get("weights") is not None
        )  # fmt: skip
        raise CheckpointError(
            f"{source} holds no weights in the state of callback {key!r}; callbacks with "
            f"weights: {keys}."
        )
    return found
