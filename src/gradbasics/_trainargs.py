"""train_loop's argument checks: every one runs before anything is changed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from gradbasics._device import sanctioned_sync
from gradbasics._preflight import check_schedule_length, length
from gradbasics._validate import _describe, check_batch_size, check_data, check_int, check_lr
from gradbasics.callbacks import (
    ActivationRecording,
    Callback,
    Checkpointing,
    EarlyStopping,
    GradientClip,
    MixedPrecision,
    ProgressBar,
    Schedule,
    TrainMetrics,
    Validation,
)
from gradbasics.recording import check_names, default_names
from gradbasics.steps import manual_sgd_step

__all__: list[str] = []


def check_rule(
    lr: object, optimizer: object, update: object
) -> tuple[float, torch.optim.Optimizer | None]:
    """Exactly one of ``lr`` and ``optimizer``, and an update rule that fits."""
    if (lr is None) == (optimizer is None):
        raise ValueError(
            "Exactly one of lr and optimizer must be given, got "
            f"lr={lr!r} and optimizer={type(optimizer).__name__ if optimizer else None}."
        )
    if lr is not None:
        rate = check_lr(lr)
        if not callable(update):
            raise TypeError(f"update must be callable, got {_describe(update)}.")
        return rate, None
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {_describe(optimizer)}.")
    if update is not manual_sgd_step:
        raise ValueError("update applies only with lr; the optimizer makes its own updates.")
    return 0.0, optimizer


def check_source(
    inputs: object, targets: object, batch_size: object, dtype: torch.dtype | None, mse: bool
) -> tuple[Tensor, Tensor, int | None, Iterable[Any] | None]:
    """The training data: two tensors (``x, y, batch size, None``) or a loader.

    A loader is a ``DataLoader`` or any re-iterable of ``(inputs, targets)`` batches,
    given as ``inputs`` with ``targets`` omitted; it brings its own batch size.
    """
    if isinstance(inputs, DataLoader) and targets is not None:
        raise ValueError(
            "targets must be omitted with a DataLoader (its batches hold them), got "
            f"{_describe(targets)}."
        )
    if isinstance(inputs, Tensor) or targets is not None:
        with sanctioned_sync():
            x, y = check_data(inputs, targets, model_dtype=dtype, float_targets=mse)
        return x, y, check_batch_size(batch_size, x.shape[0]), None
    if not isinstance(inputs, Iterable):
        raise TypeError(
            "inputs must be a tensor (with targets) or a DataLoader of (inputs, targets) "
            f"batches, got {_describe(inputs)}."
        )
    if isinstance(inputs, Iterator):  # iter() of a DataLoader would draw from its generator
        raise TypeError(
            "inputs must be re-iterable (a DataLoader, a list of batches), got a one-shot "
            f"iterator {_describe(inputs)} that could serve only one epoch."
        )
    if batch_size is not None:
        raise ValueError(
            f"batch_size must be None with a DataLoader (it has its own), got {batch_size!r}."
        )
    empty = torch.empty(0)
    return empty, empty, None, inputs


def check_val(
    val: object, dtype: torch.dtype | None, mse: bool, x: Tensor
) -> tuple[Tensor, Tensor] | Iterable[Any] | None:
    """``val``: None, ``(inputs, targets)`` shaped like the training data, or a loader."""
    if val is None:
        return None
    pair = (isinstance(val, tuple) and len(val) == 2) or (  # a list may be of batches
        isinstance(val, list) and len(val) == 2 and all(isinstance(v, Tensor) for v in val)
    )
    if isinstance(val, DataLoader) or (
        not pair and isinstance(val, Iterable) and not isinstance(val, Tensor | str)
    ):
        if isinstance(val, Iterator):
            raise TypeError(
                "val must be re-iterable (a DataLoader, a list of batches), got a one-shot "
                f"iterator {_describe(val)} that could serve only one epoch."
            )
        return val  # its batches are checked as they come
    if not isinstance(val, tuple | list) or len(val) != 2:
        raise TypeError(
            "val must be a pair (inputs, targets) of tensors or a DataLoader, got "
            f"{_describe(val)}."
        )
    try:
        with sanctioned_sync():
            vx, vy = check_data(val[0], val[1], model_dtype=dtype, float_targets=mse)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"val: {exc}") from None
    if x.numel() and vx.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"val inputs must have the training inputs' row shape {tuple(x.shape[1:])}, "
            f"got rows of shape {tuple(vx.shape[1:])}."
        )
    return vx, vy


def check_metric_use(metrics: dict[str, Any], has_val: bool, train: object) -> dict[str, Any]:
    """Metrics need rows to run on: ``val=``, or the training batches.

    Returns the metrics to try on the training rows before training: the training
    metrics when no validation tries them first.
    """
    if metrics and not has_val and not train:
        raise ValueError("metrics are computed on the validation rows: pass val=(inputs, targets).")
    if not isinstance(train, bool) or (train and not metrics):
        raise ValueError(f"train_metrics=True needs metrics=, got train_metrics={train!r}.")
    return metrics if train and not has_val else {}


def check_record(
    record: object,
    probe: object,
    core: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype | None,
    x: Tensor,
) -> tuple[tuple[str, ...] | None, Tensor | None]:
    """``record`` (a bool or submodule names) and ``probe`` (None or a batch of inputs)."""
    if isinstance(record, bool):
        names = default_names(core) if record else None
    elif isinstance(record, str) or not isinstance(record, Sequence):
        raise TypeError(
            f"record must be True, False or a list of submodule names, got {_describe(record)}."
        )
    else:
        names = check_names(core, record, what="record")
    if probe is None:
        return names, None
    if names is None:
        raise ValueError("probe needs record=True or a list of names to record, got record=False.")
    if not isinstance(probe, Tensor):
        raise TypeError(f"probe must be a torch.Tensor of inputs or None, got {_describe(probe)}.")
    if not probe.is_floating_point() or (dtype is not None and probe.dtype != dtype):
        raise TypeError(f"probe must have the model's dtype {dtype}, got {_describe(probe)}.")
    if probe.dim() == 0 or probe.shape[0] == 0:
        raise ValueError(f"probe must hold at least one row of inputs, got {_describe(probe)}.")
    if x.numel() and probe.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"probe must have the inputs' row shape {tuple(x.shape[1:])}, got rows of shape "
            f"{tuple(probe.shape[1:])} (a probe of shape {tuple(probe.shape)})."
        )
    if probe.device.type != "cpu" and probe.device != device:
        raise ValueError(
            f"probe must be on the CPU or on the model's device {device}, got a probe on "
            f"{probe.device}."
        )
    with sanctioned_sync():
        if not bool(torch.isfinite(probe).all()):
            raise ValueError("probe must be finite, got NaN or infinite value(s).")
    return names, probe.detach()


def loader_data(loader: object) -> tuple[int | None, tuple[Tensor, Tensor] | None, int | None]:
    """A loader's rows, its data (a ``TensorDataset`` of two tensors) and batch size."""
    dataset = getattr(loader, "dataset", None)
    rows = None if dataset is None else length(dataset)  # an IterableDataset may have none
    tensors = getattr(dataset, "tensors", None)
    data = None
    if isinstance(dataset, TensorDataset) and isinstance(tensors, tuple) and len(tensors) == 2:
        data = (tensors[0], tensors[1])
    return rows, data, getattr(loader, "batch_size", None)


def build_callbacks(
    *,
    val: tuple[Tensor, Tensor] | Iterable[Any] | None,
    metrics: dict[str, Any],
    train_metrics: bool,
    batch_size: int | None,
    early_stopping: object,
    scheduler: object,
    scheduler_interval: object,
    clip_grad_norm: object,
    record: tuple[tuple[str, ...] | None, Tensor | None],
    progress: object,
    checkpoint: object,
    checkpoint_every: object,
    resume: object,
    precision: object = None,
) -> list[Callback]:
    """train_loop's keywords as the callbacks they stand for (each checks its arguments)."""
    built: list[Callback] = []
    if precision is not None:
        built.append(MixedPrecision(precision))  # type: ignore[arg-type]
    if isinstance(val, tuple):
        built.append(Validation(*val, metrics=metrics, batch_size=batch_size))
    elif val is not None:
        built.append(Validation(val, metrics=metrics))
    if train_metrics:
        built.append(TrainMetrics(metrics))
    if early_stopping is not None:
        if not isinstance(early_stopping, EarlyStopping):
            raise TypeError(
                f"early_stopping must be an EarlyStopping or None, got {_describe(early_stopping)}."
            )
        built.append(early_stopping)
    if scheduler is not None:
        built.append(Schedule(scheduler, interval=str(scheduler_interval)))
    elif scheduler_interval not in ("epoch", "batch"):
        raise ValueError(
            f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}."
        )
    elif scheduler_interval == "batch":
        raise ValueError(
            "scheduler_interval='batch' needs a scheduler (a torch scheduler stepped after "
            "every update), got scheduler=None."
        )
    if clip_grad_norm is not None:
        built.append(GradientClip(clip_grad_norm))  # type: ignore[arg-type]
    names, probe = record
    if names is not None:
        built.append(ActivationRecording(names, probe))
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {_describe(progress)}.")
    if progress:
        built.append(ProgressBar())
    every = check_int(checkpoint_every, name="checkpoint_every", minimum=1)
    if checkpoint is not None:
        built.append(Checkpointing(checkpoint, every=every, resume=resume))  # type: ignore[arg-type]
    elif resume:
        raise ValueError("resume=True needs a checkpoint path, got checkpoint=None.")
    return built


def refuse_combinations(
    *, ddp: bool, graph: object, loader: object, opt: torch.optim.Optimizer | None,
    callbacks: Sequence[Callback], epochs: int, updates: int | None,
) -> None:  # fmt: skip
    """Refuse, with the reason, options that cannot run together (engines aside).

    ``updates`` is the number of updates per epoch (None when unknown): a ``OneCycleLR``
    must last the run's.
    """
    if not isinstance(graph, bool):
        raise TypeError(f"graph must be a bool, got {_describe(graph)}.")
    if loader is not None and (ddp or graph):
        what = "distributed (DDP) runs" if ddp else "graph=True"
        raise ValueError(f"{what} need tensors, not a DataLoader: pass inputs and targets.")
    for schedule in callbacks:
        if isinstance(schedule, Schedule):
            schedule.check_optimizer(opt)
            check_schedule_length(schedule, epochs, updates)
