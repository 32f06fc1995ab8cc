"""Checks of user input, shared by every public function.

Every check runs before anything is changed and raises a ``TypeError`` or ``ValueError``
whose message names the argument and the value received.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__: list[str] = []


def _describe(value: object) -> str:
    """Return a short, safe description of ``value`` for an error message."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype} on {value.device}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_lr(lr: object, *, name: str = "lr") -> float:
    """Return ``lr`` as a float after checking it is a finite real number >= 0."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        hint = " Pass a Python float, e.g. float(lr.item())." if isinstance(lr, Tensor) else ""
        raise TypeError(f"{name} must be a real number, got {_describe(lr)}.{hint}")
    value = float(lr)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {lr!r}.")
    return value


def check_int(value: object, *, name: str, minimum: int) -> int:
    """Return ``value`` after checking it is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_describe(value)}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    return int(value)


def check_params(params: object, *, name: str = "params") -> list[Tensor]:
    """Return ``params`` as a list of leaf tensors, refusing anything else."""
    if isinstance(params, Tensor) or not isinstance(params, Iterable):
        raise TypeError(
            f"{name} must be an iterable of tensors (e.g. model.parameters()), "
            f"got {_describe(params)}."
        )
    checked = list(params)
    for i, p in enumerate(checked):
        if not isinstance(p, Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {_describe(p)}.")
        # A Parameter is always a leaf; asking is_leaf of one costs ~0.15 us per tensor.
        if type(p) is not nn.Parameter and not p.is_leaf:
            raise ValueError(
                f"{name}[{i}] is not a leaf tensor (it was computed from others, "
                f"grad_fn={type(p.grad_fn).__name__}); only leaves can be updated in place."
            )
    return checked


def check_model(model: object, *, name: str = "model") -> nn.Module:
    """Return ``model`` after checking it is an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {_describe(model)}.")
    return model


def trainable_params(model: nn.Module, *, name: str = "model") -> list[Tensor]:
    """Return the parameters of ``model`` that require grad, refusing a model with none."""
    params: list[Tensor] = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            f"{name} has no trainable parameters (none with requires_grad=True), "
            f"got {type(model).__name__}."
        )
    return params


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    """Return the device and floating dtype of ``model``'s first parameter or buffer."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device, t.dtype if t.is_floating_point() else None
    return torch.device("cpu"), None


def check_generator(generator: object) -> torch.Generator | None:
    """Return ``generator`` after checking it is None or a CPU ``torch.Generator``."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {_describe(generator)}.")
    if generator.device.type != "cpu":
        raise ValueError(
            "generator must live on the CPU (batches are drawn on the CPU so every device "
            f"sees the same rows), got a generator on {generator.device}."
        )
    return generator


def check_data(
    inputs: object,
    targets: object,
    *,
    model_dtype: torch.dtype | None,
    float_targets: bool,
) -> tuple[Tensor, Tensor]:
    """Check that ``inputs`` and ``targets`` are finite tensors with matching rows.

    Rows (dim 0) are samples, so both need at least one dimension, the same number of
    rows, and at least one row.
    """
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {_describe(value)}.")
    assert isinstance(inputs, Tensor) and isinstance(targets, Tensor)
    for name, t in (("inputs", inputs), ("targets", targets)):
        if t.dim() == 0:
            raise ValueError(
                f"{name} must have at least one dimension (rows are samples), "
                f"got a 0-d tensor; use {name}.reshape(1) for a single sample."
            )
        if t.is_complex():
            raise TypeError(f"{name} must be real, got {_describe(t)}.")
    if not inputs.is_floating_point():
        raise TypeError(
            f"inputs must be a floating-point tensor, got {_describe(inputs)}; "
            "convert it with inputs.float()."
        )
    if model_dtype is not None and inputs.dtype != model_dtype:
        raise TypeError(
            f"inputs must have the model's dtype {model_dtype}, got {_describe(inputs)}; "
            f"convert it with inputs.to({model_dtype})."
        )
    if float_targets and not targets.is_floating_point():
        raise TypeError(
            f"targets must be a floating-point tensor for the default mean squared error, "
            f"got {_describe(targets)}; convert it with targets.float()."
        )
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            "inputs and targets must have the same number of rows (dim 0), got "
            f"{inputs.shape[0]} inputs and {targets.shape[0]} targets."
        )
    if inputs.shape[0] == 0:
        raise ValueError("inputs must hold at least one row (sample), got 0 rows.")
    if inputs.device != targets.device:
        raise ValueError(
            f"inputs and targets must be on the same device, got {inputs.device} "
            f"and {targets.device}."
        )
    for name, t in (("inputs", inputs), ("targets", targets)):
        if t.is_floating_point() and not all_finite(t):
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{name} must be finite, got {bad} NaN or infinite value(s).")
    return inputs, targets


CHUNK_ELEMENTS = 1 << 22
"""Elements per pass of :func:`all_finite` (16 MiB of float32): bounded, cache-friendly."""


def all_finite(t: Tensor) -> bool:
    r"""Whether every element of ``t`` is finite, read in chunks of rows, with no copy.

    Each chunk of about :data:`CHUNK_ELEMENTS` elements (whole rows) is reduced by
    ``torch.aminmax``, which propagates NaN, and an infinity is its own minimum or
    maximum: every element is finite exactly when every chunk's
    :math:`(\min, \max)` is. Cost: one read of ``t`` and no temporary of its size (no
    boolean mask, no copy of a non-contiguous ``t``); on a GPU, one host read at the end.
    """
    if t.numel() == 0:
        return True
    per_row = max(1, t[0].numel()) if t.dim() else 1
    rows = max(1, CHUNK_ELEMENTS // per_row)
    ends = [torch.stack(torch.aminmax(c)) for c in (t.split(rows) if t.dim() else (t,))]
    return bool(torch.isfinite(torch.cat(ends)).all())


def check_batch_size(batch_size: object, n: int) -> int | None:
    """Return ``batch_size`` after checking ``1 <= batch_size <= n`` (or None)."""
    if batch_size is None:
        return None
    size = check_int(batch_size, name="batch_size", minimum=1)
    if size > n:
        raise ValueError(f"batch_size must be <= the number of rows ({n}), got {size}.")
    return size


def modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Every submodule's train/eval mode, to put back with :func:`restore_modes`.

    ``model.train(was_training)`` alone would flip a submodule that was in the other mode
    (a frozen batch norm in a model in train mode).
    """
    return [(m, m.training) for m in model.modules()]


def restore_modes(saved: list[tuple[nn.Module, bool]]) -> None:
    """Put back the modes :func:`modes` saved."""
    for m, training in saved:
        m.training = training
