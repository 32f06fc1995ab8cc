"""train_loop's first look at the run: a sample of the data, tried once before any change.

The training data are checked by their first rows (a loader's first batch, drawn with
every random state put back), and the model, the loss and the training metrics run once
on up to :data:`SAMPLE_ROWS` of them. A loss that is not a batch mean, targets of the
wrong kind, a batch that does not fit the model or a metric of the wrong kind is then
refused before the model, the optimizer, the generator or the global RNG change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import OneCycleLR

from gradbasics._device import sanctioned_sync, to_device
from gradbasics._validate import _describe, check_data, modes, restore_modes
from gradbasics.data import check_loss_value, loader_batch
from gradbasics.validation import check_class_targets, check_metric_value, check_row_mean

__all__: list[str] = []

SAMPLE_ROWS = 8
"""The most rows the loss, the model and the training metrics are tried on before training."""

_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)


def length(loader: object) -> int | None:
    """``len(loader)``, or None when it has none (an ``IterableDataset``'s loader)."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return None


def generators(loader: object) -> list[torch.Generator]:
    """The generators a loader and its samplers draw from (each once)."""
    batches = getattr(loader, "batch_sampler", None)
    owners = (loader, getattr(loader, "sampler", None), batches, getattr(batches, "sampler", None))
    found: list[torch.Generator] = []
    for owner in owners:
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def peek(loader: Iterable[Any]) -> object | None:
    """The loader's first batch (None when it has none), every random state put back.

    A shuffling loader draws its order from its generator (or the global one) when it is
    iterated: both are restored, so the run's first epoch sees the order it would have.
    """
    found = generators(loader)
    states = [g.get_state() for g in found]
    try:
        with torch.random.fork_rng(devices=[]):
            return next(iter(loader), None)
    finally:
        for g, state in zip(found, states, strict=True):
            g.set_state(state)


def sample(
    x: Tensor, y: Tensor, loader: Iterable[Any] | None, dtype: torch.dtype | None, mse: bool
) -> tuple[Tensor, Tensor]:
    """Rows to try the run on: the tensors' first, or a loader's first batch, checked.

    A loader's first batch is checked as tensors are (dtype, rows, finite values); a
    loader without batches is refused. :func:`probe` checks class targets on all of them.
    """
    if loader is None:
        return x, y
    first = peek(loader)
    if first is None:
        raise ValueError(
            f"inputs must hold at least one batch, got a loader with none ({_describe(loader)})."
        )
    try:
        with sanctioned_sync():  # reads before training, as the tensors' checks are
            xb, yb = loader_batch(first, torch.device("cpu"))
            check_data(xb, yb, model_dtype=dtype, float_targets=mse)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"inputs' first batch: {exc}") from None
    return xb, yb


def check_class_shape(loss_fn: object, out: Tensor, targets: Tensor, *, name: str) -> None:
    """Class targets must fit the outputs: an index per row, or probabilities per class."""
    if not isinstance(loss_fn, _CLASS_LOSSES) or out.dim() < 2:
        return
    loss, rows = type(loss_fn).__name__, tuple(targets.shape[1:])
    if targets.is_floating_point():
        if rows != tuple(out.shape[1:]):
            raise ValueError(
                f"{name} as class probabilities for {loss} must have the outputs' row shape "
                f"{tuple(out.shape[1:])}, got rows of shape {rows}; class indices are int64 "
                f"with rows of shape {tuple(out.shape[2:])}."
            )
        return
    want = tuple(out.shape[2:])
    if rows != want:
        hint = f"; use {name}.squeeze(1)" if rows == (1, *want) else ""
        raise ValueError(
            f"{name} for {loss} must hold one class index per row (rows of shape {want} for "
            f"outputs with rows of shape {tuple(out.shape[1:])}), got rows of shape "
            f"{rows}{hint}."
        )


def check_class_range(loss_fn: object, out: Tensor, targets: Tensor, *, name: str) -> None:
    r"""Class indices must name one of the outputs' classes: :math:`0 \le t < C`."""
    if (
        not isinstance(loss_fn, _CLASS_LOSSES)
        or out.dim() < 2
        or targets.is_floating_point()
        or not targets.numel()
    ):
        return
    classes = out.shape[1]
    with sanctioned_sync():
        low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= classes:
        raise ValueError(
            f"{name} must be class indices from 0 to {classes - 1} (the outputs have "
            f"{classes} classes), got values from {low} to {high}."
        )


def probe(
    model: nn.Module,
    loss_fn: Any,
    rows: tuple[Tensor, Tensor],
    device: torch.device,
    metrics: Mapping[str, Any],
) -> None:
    """One forward pass, loss and metrics on up to :data:`SAMPLE_ROWS` rows; nothing kept.

    The model runs in train mode (as it will train) under ``torch.no_grad()``; its modes,
    its buffers (batch-norm statistics) and the global RNG are put back afterwards.
    """
    check_row_mean(loss_fn)
    check_class_targets(loss_fn, rows[1], name="targets")
    with sanctioned_sync():
        xb, yb = (to_device(t[:SAMPLE_ROWS], device) for t in rows)
    saved, buffers = modes(model), {k: b.clone() for k, b in model.named_buffers()}
    cuda = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda), sanctioned_sync():
            model.train()
            try:
                out = model(xb)
            except RuntimeError as exc:  # a wrong shape or dtype surfaces in torch
                raise ValueError(
                    f"inputs must fit the model, but its forward pass on the first {len(xb)} "
                    f"row(s) (of shape {tuple(xb.shape)}) failed: {exc}"
                ) from exc
            check_class_shape(loss_fn, out, yb, name="targets")
            check_class_range(loss_fn, out, rows[1], name="targets")
            check_loss_value(loss_fn(out, yb))
            for name, metric in metrics.items():
                check_metric_value(name, metric(out, yb))
    finally:
        restore_modes(saved)
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k in buffers and b.shape == buffers[k].shape:
                    b.copy_(buffers[k])


def check_schedule_length(schedule: Any, epochs: int, updates: int | None) -> None:
    """Refuse a ``OneCycleLR`` whose ``total_steps`` is shorter than this run's steps.

    ``updates`` is the number of updates per epoch (None when a loader has no length).
    """
    scheduler = getattr(schedule, "scheduler", None)
    if not isinstance(scheduler, OneCycleLR):
        return
    per_epoch = updates if schedule.interval == "batch" else 1
    if per_epoch is None:
        return
    taken = max(0, scheduler.last_epoch)
    needed = taken + epochs * per_epoch
    if needed > scheduler.total_steps:
        before = f", after the {taken} it has taken" if taken else ""
        raise ValueError(
            f"scheduler OneCycleLR has total_steps={scheduler.total_steps}, but this run "
            f"steps it {needed} times ({epochs} epoch(s) of {per_epoch} step(s), per "
            f"{schedule.interval}{before}); torch would stop the run mid-way. Build it with "
            f"total_steps={needed} (or epochs={epochs}, steps_per_epoch={per_epoch})."
        )


def updates_per_epoch(rows: int, size: int, loader: object, accumulate: int) -> int | None:
    """Updates in one epoch: batches (tensors, or a loader's length) over ``accumulate``."""
    batches = length(loader) if loader is not None else math.ceil(rows / size) if rows else 0
    return None if batches is None else math.ceil(batches / accumulate)
