"""The type of a learning-rate schedule given as a function (see :class:`callbacks.Schedule`)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LRSchedule"]

LRSchedule = Callable[[int], float]
"""A schedule for ``train_loop(lr=..., scheduler=...)``: ``schedule(epoch) -> lr``."""
