"""What a format-3 checkpoint adds: callbacks by key, the global RNGs, a checked history.

The checkpoint code names no feature: it stores what each callback's ``settings()`` and
``state_dict()`` give, under its ``key``, and on resume compares them field by field
before anything changes. Files of formats 1 and 2 are upgraded on reading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from gradbasics._ckptcheck import _same, plain
from gradbasics._ckptio import CheckpointError
from gradbasics.history import TrainHistory
from gradbasics.unitstats import UnitStats

if TYPE_CHECKING:  # the callbacks package imports this module
    from gradbasics.callbacks.base import Callback

__all__: list[str] = []

_HISTORY = {f.name for f in fields(TrainHistory)} - {"losses", "activations", "stop_requested"}


def callback_entries(callbacks: Sequence[Callback]) -> dict[str, dict[str, Any]]:
    """``{key: {"settings", "state"}}`` of the callbacks with settings or state."""
    entries: dict[str, dict[str, Any]] = {}
    for cb in callbacks:
        key = cb.key
        if key in entries:
            raise ValueError(f"two callbacks share the key {key!r}; keys must be unique.")
        try:
            settings, state = cb.settings(), cb.state_dict()
        except Exception as exc:
            note = getattr(exc, "add_note", None)
            if note is not None:
                note(f"(raised in callback {key!r}, settings() or state_dict())")
            raise
        if not isinstance(settings, dict):
            raise TypeError(f"callback {key!r}: settings() must return a dict, got "
                            f"{type(settings).__name__}.")  # fmt: skip
        if settings or state is not None:
            entries[key] = {
                "settings": plain(settings, f"callback {key!r} settings()"),
                "state": plain(state, f"callback {key!r} state_dict()"),
            }
    return entries


def rng_state() -> dict[str, Any]:
    """The global CPU RNG's state, and every CUDA device's once CUDA is in use."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(data: dict[str, Any], *, global_too: bool) -> None:
    """Restore the saved RNGs: the global CPU one (from ``generator`` in older files)."""
    rng = data.get("rng")
    if rng is None:  # formats 1, 2: "generator" was the global RNG's when none was given
        if not global_too:
            torch.set_rng_state(data["generator"])
        return
    torch.set_rng_state(rng["cpu"])
    cuda = rng.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def upgrade(data: dict[str, Any], path: Path) -> None:
    """Check the format-3 entries; give a format 1 or 2 payload their shape."""
    if "callbacks" not in data:  # formats 1, 2: two features kept their state by name
        extra = data["extra"] if isinstance(data.get("extra"), dict) else {}
        found = {"EarlyStopping": extra.pop("early_stopping", None),
                 "Schedule": data.pop("scheduler", None)}  # fmt: skip
        data["callbacks"] = {k: {"settings": None, "state": v} for k, v in found.items()
                             if v is not None}  # fmt: skip
    entries, rng = data["callbacks"], data.get("rng")
    if not isinstance(entries, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) and set(v) == {"settings", "state"}
        for k, v in entries.items()
    ):
        raise CheckpointError(f"{path} holds bad callback entries.")
    if rng is not None and not _rng_ok(rng):
        raise CheckpointError(f"{path} holds a bad RNG state.")
    if not isinstance(data.get("extra", {}), dict | None):
        raise CheckpointError(f"{path} holds a bad extra entry (not a dict).")


def _rng_ok(rng: object) -> bool:
    def state(t: object) -> bool:
        return isinstance(t, Tensor) and t.dtype == torch.uint8 and t.dim() == 1

    if not isinstance(rng, dict) or set(rng) != {"cpu", "cuda"} or not state(rng["cpu"]):
        return False
    cpu_bytes = torch.get_rng_state().numel()
    cuda = rng["cuda"]
    return rng["cpu"].numel() == cpu_bytes and (
        cuda is None or (isinstance(cuda, list) and all(state(t) for t in cuda))
    )


def _floats(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(f, float) for f in v)


_KINDS: dict[str, Any] = {
    "val_losses": _floats,
    "lrs": _floats,
    "metrics": lambda v: (
        isinstance(v, dict) and all(isinstance(k, str) and _floats(f) for k, f in v.items())
    ),
    "activation_labels": lambda v: (
        isinstance(v, dict) and all(isinstance(k, str) and isinstance(f, str) for k, f in v.items())
    ),
    "dead_units": lambda v: (
        isinstance(v, dict)
        and all(
            isinstance(k, str) and isinstance(f, list) and all(type(u) is int for u in f)
            for k, f in v.items()
        )
    ),
    "best_epoch": lambda v: v is None or type(v) is int,
    "stopped_epoch": lambda v: v is None or type(v) is int,
    "activation_stats": lambda v: True,  # checked with the payload
}


def saved_history(path: Path, data: dict[str, Any], *, strict: bool) -> TrainHistory:
    """The saved history, built and checked before anything changes (``strict``: resume)."""
    extras = data.get("history_extra") or {}
    if not isinstance(extras, dict) or not set(extras) <= _HISTORY:
        unknown = sorted(set(extras) - _HISTORY) if isinstance(extras, dict) else extras
        raise CheckpointError(f"{path} holds an unexpected history field: {unknown!r}.")
    bad = sorted(k for k, v in extras.items() if not _KINDS[k](v))
    losses = data["losses"]
    epochs = len(losses)
    ends = [extras.get("best_epoch"), extras.get("stopped_epoch")]
    if any(e is not None and type(e) is int and not 0 <= e < epochs for e in ends):
        bad.append("best_epoch or stopped_epoch (not an epoch of the history)")
    if not all(math.isfinite(v) for v in losses):
        bad.append("losses (not finite)")
    if strict and epochs != data["epoch"]:  # what train_loop writes: one loss an epoch
        bad.append(f"losses ({epochs} for {data['epoch']} epochs)")
    if bad:
        raise CheckpointError(f"{path} holds a bad history: {', '.join(bad)}.")
    try:
        history = TrainHistory(list(data["losses"]), dict(data["activations"]), **extras)
        history.activation_stats = {
            k: UnitStats(*v) for k, v in (data.get("activation_stats") or {}).items()
        }
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} holds a bad history: {exc}") from exc
    return history


def check_callbacks(path: Path, data: dict[str, Any], callbacks: Sequence[Callback]) -> None:
    """Every callback with settings or state in both runs, same settings, loadable state."""
    saved: dict[str, dict[str, Any]] = data["callbacks"]
    legacy = data.get("format") is None
    own = {cb.key: cb for cb in callbacks}
    for key, cb in own.items():
        settings, state = plain(cb.settings(), key), cb.state_dict()
        if key not in saved:
            joins = (legacy and state is None) or cb.may_join
            if (settings or state is not None) and not joins:
                raise CheckpointError(
                    f"{path} is from a run without the callback {key!r}, which cannot join a "
                    "run in its middle. Remove it, or start a new run."
                )
            continue
        old = saved[key]["settings"]
        fields = [] if old is None else [*old, *(k for k in settings if k not in old)]
        for field in fields:
            if not _same(old.get(field), settings.get(field)):
                raise CheckpointError(
                    f"{path} is from a run whose callback {key!r} had another {field!r}: "
                    f"saved {old.get(field)!r}, now {settings.get(field)!r}."
                )
        saved_state = saved[key]["state"]
        if (saved_state is None) != (state is None):
            raise CheckpointError(
                f"{path} holds {'no' if saved_state is None else 'a'} state for the callback "
                f"{key!r}, which {'has' if state is not None else 'has none'} now."
            )
        why = None if saved_state is None else cb.check_state(saved_state)
        if why is not None:
            raise CheckpointError(f"{path} holds a state of the callback {key!r} that does not "
                                  f"fit it: {why}.")  # fmt: skip
    for key in saved.keys() - own.keys():
        raise CheckpointError(
            f"{path} holds the callback {key!r}, which this run does not have; pass it again "
            "to resume the same run."
        )
