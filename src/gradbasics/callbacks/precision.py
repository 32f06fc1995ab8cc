"""Mixed precision: forward and loss under ``torch.autocast``, fp16 with a gradient scaler."""

from __future__ import annotations

from typing import Any

import torch

from gradbasics._validate import check_lr
from gradbasics.callbacks.base import Callback

__all__ = ["MixedPrecision"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision(Callback):
    r"""Run each forward pass and loss under ``torch.autocast`` in bf16 or fp16.

    The model stays in float32; autocast runs the operations that gain from it (matrix
    products, convolutions) in the lower precision and the rest in float32. With
    ``"fp16"``, whose range is narrow, a ``torch.amp.GradScaler`` multiplies the loss by
    a scale :math:`s` before backward and divides the gradients by it before the update:

    .. math::

        g = \frac{1}{s} \nabla_\theta (s \cdot L), \qquad
        s \leftarrow \begin{cases}
            s / 2 & \text{if } g \text{ is not finite (the step is skipped)} \\
            2 s & \text{after 2000 finite steps in a row}
        \end{cases}

    A step the scaler skips is not a divergence; a non-finite loss still is. Step hooks
    see the gradients unscaled. This is torch's AMP recipe, written once; the scaler's
    state is saved in checkpoints. ``train_loop(precision="bf16" | "fp16")`` builds it.
    ``"fp16"`` needs ``optimizer=`` (the scaler steps an optimizer; ``rules.as_optimizer``
    makes one of a rule).

    Args:
        precision: ``"bf16"`` or ``"fp16"``.
        init_scale: The scaler's first :math:`s` (fp16), a finite number > 0.

    Raises:
        ValueError: On another precision; at the start of a run, on a device that cannot
            autocast to it, a model that is not float32, or ``"fp16"`` without an
            optimizer.
    """

    order = 5
    reads_history = False
    requires = frozenset({"autocast"})

    def __init__(self, precision: str, *, init_scale: float = 65536.0) -> None:
        if precision not in _DTYPES:
            raise ValueError(f"precision must be 'bf16', 'fp16' or None, got {precision!r}.")
        self.init_scale = check_lr(init_scale, name="init_scale")
        if self.init_scale == 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}.")
        self.precision = precision
        self.scaler: Any = None

    def settings(self) -> dict[str, Any]:
        """The precision (and, for fp16, the first scale)."""
        if self.precision == "bf16":
            return {"precision": self.precision}
        return {"precision": self.precision, "init_scale": self.init_scale}

    def state_dict(self) -> dict[str, Any] | None:
        """The gradient scaler's state (fp16), else None."""
        return None if self.precision == "bf16" else {"scaler": self._scaler().state_dict()}

    def check_state(self, state: object) -> str | None:
        """A scaler's state for fp16."""
        if self.precision == "bf16":
            return None if state is None else "bf16 has no state"
        ok = isinstance(state, dict) and isinstance(state.get("scaler"), dict)
        return None if ok else "expected {'scaler': the GradScaler's state}"

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scaler."""
        self._scaler().load_state_dict(state["scaler"])

    def _scaler(self) -> Any:
        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(self.loop.device.type, init_scale=self.init_scale)
        return self.scaler

    def on_train_begin(self) -> None:
        """Check the device, the model and the optimizer; hand the engine autocast."""
        loop, dtype = self.loop, _DTYPES[self.precision]
        device = loop.device
        if not torch.amp.autocast_mode.is_autocast_available(device.type):
            raise ValueError(f"precision={self.precision!r} cannot run on {device}: no autocast.")
        if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision='bf16' cannot run on {device}: no bfloat16 support.")
        wrong = sorted({str(p.dtype) for p in loop.params if p.dtype != torch.float32})
        if wrong:
            raise ValueError(
                f"precision={self.precision!r} needs a float32 model (autocast lowers what "
                f"gains from it), got parameters of {wrong}."
            )
        if self.precision == "fp16" and loop.optimizer is None:
            raise ValueError(
                "precision='fp16' needs optimizer= (its GradScaler steps an optimizer), got "
                "lr=; use precision='bf16', or rules.as_optimizer(rule, params, lr=...)."
            )
        self.scaler = None
        loop.autocast = lambda: torch.autocast(device.type, dtype=dtype)
        loop.scaler = None if self.precision == "bf16" else self._scaler()
