"""A run's callbacks: plain callables wrapped, keys checked, ordered, refused up front."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gradbasics._validate import _describe
from gradbasics.callbacks.base import Callback, hooks_of, needs, uses
from gradbasics.history import TrainHistory

__all__: list[str] = []


class FunctionCallback(Callback):
    """A plain ``fn(epoch, history)`` called at the end of each epoch (no state).

    It runs after the checkpoint of its epoch is saved, as ``train_loop`` always did.
    """

    order = 95

    def __init__(self, fn: Callable[[int, TrainHistory], Any], index: int) -> None:
        self.fn = fn
        self.key = f"callbacks[{index}] ({getattr(fn, '__qualname__', type(fn).__name__)})"

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> bool | None:
        """Call the function; it stops the run with ``history.stop()``."""
        self.fn(epoch, history)
        return None


def check_callbacks(callbacks: object) -> list[Callback]:
    """``callbacks``: Callback objects or callables ``fn(epoch, history)``."""
    if not isinstance(callbacks, Iterable) or callable(callbacks) or isinstance(callbacks, str):
        raise TypeError(
            "callbacks must be a sequence of Callback objects or callables, got "
            f"{_describe(callbacks)}."
        )
    checked: list[Callback] = []
    for i, cb in enumerate(callbacks):
        if isinstance(cb, Callback):
            checked.append(cb)
        elif callable(cb):
            checked.append(FunctionCallback(cb, i))
        else:
            raise TypeError(f"callbacks[{i}] must be a Callback or callable, got {_describe(cb)}.")
    return checked


def ordered(callbacks: Sequence[Callback]) -> list[Callback]:
    """The callbacks by ``order`` (stable), after checking their keys are unique."""
    seen: dict[str, Callback] = {}
    for cb in callbacks:
        key = cb.key
        if not isinstance(key, str) or not key:
            raise TypeError(f"{type(cb).__name__}.key must be a non-empty str, got {key!r}.")
        if key in seen:
            raise ValueError(
                f"two callbacks share the key {key!r} ({seen[key]!r} and {cb!r}); a key names "
                "a callback's state in checkpoints: give one another key (cb.key = '...')."
            )
        seen[key] = cb
    return sorted(callbacks, key=lambda cb: cb.order)


REASONS = {
    "on_before_update": "runs no Python between backward and update",
    "on_after_update": "runs no Python after each update",
    "lr_change": "has its learning rate fixed",
    "whole_batches": "does not see whole batches",
    "autocast": "does not run under autocast",
}


def refuse_unserved(engine: str, serves: frozenset[str], callbacks: Sequence[Callback]) -> None:
    """Refuse, naming the callback, what the chosen engine cannot serve."""
    for cb in callbacks:
        missing = sorted(needs(cb) - serves)
        if missing:
            why = "; ".join(f"its step {REASONS.get(m, 'lacks ' + m)} ({m})" for m in missing)
            raise ValueError(f"{engine} cannot serve this run's callback {cb.key!r}: {why}.")


class Hooks:
    """The bound hooks of a run's callbacks, looked up once."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)
        self.begin = hooks_of(callbacks, "on_epoch_begin")
        self.before = hooks_of(callbacks, "on_before_update")
        self.after = hooks_of(callbacks, "on_after_update")
        self.end = [(cb, cb.on_epoch_end) for cb in callbacks if uses(cb, "on_epoch_end")]


def named(cb: Callback, hook: str, exc: BaseException) -> None:
    """Add a note to ``exc`` naming the callback and hook it came from (Python 3.11+)."""
    note = getattr(exc, "add_note", None)
    if note is not None:
        note(f"(raised in callback {cb.key!r}, {hook})")
