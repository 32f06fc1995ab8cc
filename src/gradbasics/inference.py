"""Inference: a model's outputs over many rows, in eval mode, without gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics._validate import (
    _describe,
    check_int,
    check_model,
    model_device_dtype,
    modes,
    restore_modes,
)

__all__ = ["predict"]


def predict(
    model: nn.Module, inputs: Tensor | Iterable[Any], *, batch_size: int | None = None
) -> Tensor:
    r"""Return ``model``'s outputs for every row, concatenated: :math:`f(x_1), \dots, f(x_N)`.

    The model runs in eval mode (dropout off, batch-norm statistics frozen) under
    ``torch.no_grad()``, and ends in the mode it was in, also on errors. Rows go through
    in batches of ``batch_size`` (all at once when None), or as a ``DataLoader`` gives
    them (a batch may be a tensor or a tuple whose first item is the inputs, so a loader
    of ``(inputs, targets)`` works too). Each batch is moved to the model's device; the
    outputs stay there.

    Args:
        model: The model :math:`f`.
        inputs: Inputs, rows are samples: ``(N, ...)``; or a ``DataLoader`` (any
            iterable of batches).
        batch_size: Rows per batch, >= 1; None for one batch (tensors only).

    Returns:
        The outputs, ``(N, ...)``, on the model's device.

    Raises:
        TypeError: On a model, inputs or batch of the wrong type or dtype.
        ValueError: On a bad batch size, or a loader with no batches.

    Example:
        >>> import torch
        >>> from gradbasics import predict
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5))
        >>> x = torch.randn(5, 3)
        >>> out = predict(net, x, batch_size=2)
        >>> out.shape, torch.allclose(out, net.eval()(x)), out.requires_grad
        (torch.Size([5, 2]), True, False)
    """
    check_model(model)
    device, dtype = model_device_dtype(model)
    if isinstance(inputs, Tensor):
        _check_batch(inputs, dtype, "inputs")
        if inputs.shape[0] == 0:
            raise ValueError("inputs must hold at least one row (sample), got 0 rows.")
        size = inputs.shape[0] if batch_size is None else batch_size
        size = check_int(size, name="batch_size", minimum=1)
        batches: Iterable[Any] = inputs.split(size)
    elif isinstance(inputs, Iterable) and not isinstance(inputs, str):
        if batch_size is not None:
            raise ValueError(
                f"batch_size must be None with a DataLoader (it has its own), got {batch_size!r}."
            )
        batches = inputs
    else:
        raise TypeError(
            f"inputs must be a tensor or a DataLoader of batches, got {_describe(inputs)}."
        )
    was_training = modes(model)
    model.eval()
    try:
        outs: list[Tensor] = []
        with torch.no_grad():
            for i, batch in enumerate(batches):
                xb = batch[0] if isinstance(batch, tuple | list) and batch else batch
                _check_batch(xb, dtype, f"batch {i}")
                outs.append(model(xb.to(device)))
    finally:
        restore_modes(was_training)
    if not outs:
        raise ValueError("inputs must hold at least one batch, got none.")
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def _check_batch(xb: object, dtype: torch.dtype | None, what: str) -> None:
    if not isinstance(xb, Tensor) or xb.dim() == 0:
        raise TypeError(f"{what} must be a tensor of rows (N, ...), got {_describe(xb)}.")
    if not xb.is_floating_point() or (dtype is not None and xb.dtype != dtype):
        raise TypeError(f"{what} must have the model's dtype {dtype}, got {_describe(xb)}.")
