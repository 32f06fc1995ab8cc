"""Gradient clipping: the gradients' total norm clipped between backward and update."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from gradbasics._validate import _describe
from gradbasics.callbacks.base import Callback, Step

__all__ = ["GradientClip"]


class GradientClip(Callback):
    r"""Clip the gradients' total norm to ``max_norm`` before every update.

    .. math::

        g \leftarrow g \cdot \min\Bigl(1, \frac{c}{\lVert g \rVert_2 + 10^{-6}}\Bigr)

    over all trainable parameters' gradients :math:`g` together, with :math:`c` =
    ``max_norm``: ``torch.nn.utils.clip_grad_norm_``, with no host synchronisation.
    ``train_loop(clip_grad_norm=c)`` builds it; this is its whole code.

    Args:
        max_norm: The largest total norm, a finite number > 0.

    Raises:
        TypeError: If ``max_norm`` is not a number.
        ValueError: If it is not finite or not > 0.

    Example:
        >>> from gradbasics.callbacks import GradientClip
        >>> GradientClip(1.0).settings()
        {'max_norm': 1.0}
    """

    order = 30
    reads_history = False

    def __init__(self, max_norm: float) -> None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
            raise TypeError(f"clip_grad_norm must be a number or None, got {_describe(max_norm)}.")
        if not math.isfinite(float(max_norm)) or max_norm <= 0:
            raise ValueError(f"clip_grad_norm must be a finite number > 0, got {max_norm!r}.")
        self.max_norm: float = float(max_norm)

    def settings(self) -> dict[str, Any]:
        """The largest norm."""
        return {"max_norm": self.max_norm}

    def on_before_update(self, step: Step) -> None:
        """Clip in place (the norm stays on the device)."""
        torch.nn.utils.clip_grad_norm_(self.loop.params, self.max_norm)
