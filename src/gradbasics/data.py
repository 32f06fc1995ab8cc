"""Losses and batches: the mean squared error and random mini-batches of rows.

Rows (dim 0) of ``inputs`` and ``targets`` are samples. Random batches are drawn as a
permutation on a CPU generator and only then moved to the data's device, so the CPU and a
GPU see the same rows for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gradbasics._validate import (
    _describe,
    check_batch_size,
    check_data,
    check_generator,
    check_model,
    model_device_dtype,
)

__all__ = ["LossFn", "batched_loss", "mse_loss"]

_MEAN = 1  # torch.nn._reduction.get_enum("mean")

LossFn = Callable[[Tensor, Tensor], Tensor]
"""A loss: ``loss_fn(outputs, targets)`` returns the batch's mean loss as a 0-d tensor."""


def mse_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    r"""Return the mean squared error over every element.

    .. math::

        L = \frac{1}{n} \sum_{i=1}^{n} (y_i - t_i)^2

    Unlike ``torch.nn.functional.mse_loss``, which only warns, a shape mismatch raises,
    because broadcasting ``(N, 1)`` against ``(N,)`` silently computes an ``(N, N)`` loss.
    With the shapes known equal it calls the same ATen kernel directly, skipping the
    Python-side checks and ``broadcast_tensors`` of ``F.mse_loss`` (about 5-7 us a call
    on the 2-core development machine, as ``make bench`` measures it): the result is
    bit-for-bit the same.

    Args:
        outputs: Model outputs :math:`y`.
        targets: Targets :math:`t`, the same shape as ``outputs``.

    Returns:
        The 0-d mean of the squared differences.

    Raises:
        TypeError: If ``outputs`` or ``targets`` is not a tensor.
        ValueError: If the shapes differ.

    Example:
        >>> import torch
        >>> from gradbasics import mse_loss
        >>> mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
        tensor(5.)
    """
    for name, value in (("outputs", outputs), ("targets", targets)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {_describe(value)}.")
    if outputs.shape != targets.shape:
        raise ValueError(
            f"targets must have the shape of the model's outputs {tuple(outputs.shape)}, "
            f"got {tuple(targets.shape)}."
        )
    if type(outputs) is Tensor and type(targets) is Tensor:
        # What F.mse_loss ends in, without its Python-side broadcasting. The stub types
        # reduction as str, but the binding takes the enum (an int).
        return torch._C._nn.mse_loss(outputs, targets, _MEAN)  # type: ignore[arg-type]
    return torch.nn.functional.mse_loss(outputs, targets)  # tensor subclasses


def check_loss_fn(loss_fn: object) -> LossFn:
    """Return ``loss_fn``, or :func:`mse_loss` when it is None, after checking it is callable."""
    if loss_fn is None:
        return mse_loss
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable or None, got {_describe(loss_fn)}.")
    reduction = getattr(loss_fn, "reduction", "mean") if isinstance(loss_fn, nn.Module) else "mean"
    if reduction != "mean":  # never guess: a sum would silently change every number
        raise ValueError(
            f"loss_fn must return the batch mean, got {type(loss_fn).__name__} with "
            f"reduction={reduction!r}: the epoch loss (batch means weighted by rows) would be "
            "wrong, and a sum makes the step grow with the batch. Use reduction='mean'."
        )
    return loss_fn


def check_loss_value(loss: object) -> Tensor:
    """Return ``loss`` after checking it is a 0-d floating tensor."""
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        raise ValueError(
            f"loss_fn must return a 0-d floating-point tensor (the batch's mean loss), "
            f"got {_describe(loss)}."
        )
    return loss


def random_rows(n: int, batch_size: int, generator: torch.Generator | None) -> Tensor:
    """Return a permutation of ``range(n)`` drawn on the CPU, truncated to ``batch_size``."""
    return torch.randperm(n, generator=generator)[:batch_size]  # (batch_size,) int64, CPU


def batched_loss(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    batch_size: int | None = None,
    *,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Return the loss of ``model`` on all rows or on a random batch of distinct rows.

    .. math::

        L_B = \ell\bigl(f(x_B), t_B\bigr), \qquad
        B = \pi_{1:b}, \quad \pi \sim \text{uniform permutation of } \{1..N\}

    With ``batch_size=None`` the batch is every row, in order. Otherwise ``batch_size``
    distinct rows are drawn: a permutation is drawn on the CPU ``generator`` (the global
    CPU generator when None), truncated, and moved to the data's device, so the CPU and
    CUDA see the same batch for the same seed. With the default mean squared error the
    batch loss is the mean over the batch's samples, an unbiased estimate of the full loss.

    Args:
        model: The model :math:`f`; must be on the data's device.
        inputs: Inputs, rows are samples: shape ``(N, ...)``.
        targets: Targets with ``N`` rows.
        batch_size: Number of distinct random rows, ``1 <= batch_size <= N``; None for all.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch mean (default
            :func:`mse_loss`).
        generator: A CPU ``torch.Generator`` for the draw.

    Returns:
        The 0-d loss, attached to the autograd graph.

    Raises:
        TypeError: On arguments of the wrong type or dtype.
        ValueError: On mismatched rows, empty or non-finite data, a ``batch_size``
            outside ``[1, N]``, a generator off the CPU, or data on another device than
            the model.

    Example:
        >>> import torch
        >>> from gradbasics import ChainModel, batched_loss
        >>> x = torch.tensor([[2.0], [1.0]])
        >>> t = torch.tensor([[1.0], [1.0]])
        >>> batched_loss(ChainModel(), x, t)  # ((120 - 1)^2 + (60 - 1)^2) / 2
        tensor(8821., grad_fn=<MseLossBackward0>)
        >>> torch.randperm(2, generator=torch.Generator().manual_seed(0))[:1]  # the row drawn
        tensor([0])
        >>> batched_loss(ChainModel(), x, t, 1, generator=torch.Generator().manual_seed(0))
        tensor(14161., grad_fn=<MseLossBackward0>)
    """
    check_model(model)
    device, dtype = model_device_dtype(model)
    fn = check_loss_fn(loss_fn)
    x, y = check_data(inputs, targets, model_dtype=dtype, float_targets=loss_fn is None)
    gen = check_generator(generator)
    size = check_batch_size(batch_size, x.shape[0])
    if x.device != device:
        raise ValueError(
            f"inputs must be on the model's device {device}, got {x.device}; "
            f"move them with inputs.to({str(device)!r})."
        )
    if size is not None:
        rows = random_rows(x.shape[0], size, gen).to(x.device)
        x, y = x.index_select(0, rows), y.index_select(0, rows)  # (batch_size, ...)
    return check_loss_value(fn(model(x), y))


def loader_batch(batch: object, device: torch.device) -> tuple[Tensor, Tensor]:
    """A loader's ``(inputs, targets)`` on ``device`` (without blocking, when pinned)."""
    if (
        not isinstance(batch, tuple | list)
        or len(batch) != 2
        or not all(isinstance(t, Tensor) for t in batch)
    ):
        raise TypeError(
            "each batch of the loader must be a pair (inputs, targets) of tensors, got "
            f"{type(batch).__name__} of {len(batch) if isinstance(batch, tuple | list) else '?'}."
        )
    xb, yb = batch
    if xb.shape[:1] != yb.shape[:1] or xb.dim() == 0:
        raise ValueError(
            f"each batch must hold as many target rows as input rows, got inputs of shape "
            f"{tuple(xb.shape)} and targets of shape {tuple(yb.shape)}."
        )
    return (
        xb.to(device, non_blocking=xb.is_pinned()).detach(),
        yb.to(device, non_blocking=yb.is_pinned()).detach(),
    )
