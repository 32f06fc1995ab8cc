"""train_loop's argument checks: every one runs before anything is changed."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from gradbasics._device import sanctioned_sync
from gradbasics._validate import _describe, check_batch_size, check_data, check_lr
from gradbasics.engines import graph as graph_engine
from gradbasics.engines.base import UpdateRule
from gradbasics.history import Callback
from gradbasics.recording import check_names, default_names
from gradbasics.schedules import Schedule
from gradbasics.steps import manual_sgd_step
from gradbasics.validation import EarlyStopping

__all__: list[str] = []


def check_callbacks(callbacks: object) -> list[Callback]:
    """``callbacks``: a sequence of callables."""
    if not isinstance(callbacks, Iterable) or callable(callbacks):
        raise TypeError(f"callbacks must be a sequence of callables, got {_describe(callbacks)}.")
    checked = list(callbacks)
    for i, cb in enumerate(checked):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}] must be callable, got {_describe(cb)}.")
    return checked


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
) -> tuple[Tensor, Tensor] | None:
    """``val``: None or ``(inputs, targets)`` shaped like the training data."""
    if val is None:
        return None
    if not isinstance(val, tuple | list) or len(val) != 2:
        raise TypeError(f"val must be a pair (inputs, targets) of tensors, got {_describe(val)}.")
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
    """Metrics need rows to run on: ``val=``, or the training batches."""
    if metrics and not has_val and not train:
        raise ValueError("metrics are computed on the validation rows: pass val=(inputs, targets).")
    if not isinstance(train, bool) or (train and not metrics):
        raise ValueError(f"train_metrics=True needs metrics=, got train_metrics={train!r}.")
    return metrics


def check_clip(value: object) -> float | None:
    """``clip_grad_norm``: None or a finite number > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"clip_grad_norm must be a number or None, got {_describe(value)}.")
    if not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"clip_grad_norm must be a finite number > 0, got {value!r}.")
    return float(value)


def check_monitor(stopper: object, has_val: bool, metrics: Iterable[str], train: bool) -> str:
    """What early stopping (and ``ReduceLROnPlateau``) watch: a name the run records."""
    names = list(metrics)
    known = ["loss", *(["val_loss", *names] if has_val else [])]
    known += [f"train_{m}" for m in names] if train else []
    if stopper is None:
        return "val_loss" if has_val else "loss"
    if not isinstance(stopper, EarlyStopping):
        raise TypeError(
            f"early_stopping must be an EarlyStopping or None, got {_describe(stopper)}."
        )
    if stopper.monitor not in known:
        raise ValueError(
            f"early_stopping monitors {stopper.monitor!r}, which this run does not record; "
            f"known: {known}" + ("" if has_val else " (val_loss and metrics need val=)") + "."
        )
    return stopper.monitor


def progress_bar(epochs: int) -> Any:
    """A tqdm bar over the epochs."""
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "progress=True needs tqdm; install it with: pip install 'gradbasics[progress]'"
        ) from exc
    return tqdm(total=epochs, unit="epoch")


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


def refuse_combinations(
    device: torch.device,
    opt: torch.optim.Optimizer | None,
    update: UpdateRule,
    ddp: bool,
    graph: bool,
    loader: object,
    schedule: Schedule,
    train_metrics: bool,
) -> None:
    """Refuse, with the reason, options that cannot run together."""
    why = graph_engine.refusal(device, opt, update, ddp) if graph else None
    if why is not None:
        raise ValueError(f"graph=True cannot serve this run: {why}.")
    if loader is not None and (ddp or graph):
        what = "distributed (DDP) runs" if ddp else "graph=True"
        raise ValueError(f"{what} need tensors, not a DataLoader: pass inputs and targets.")
    if graph and schedule.kind != "none":
        raise ValueError(
            "graph=True cannot serve this run: a captured step has its learning rate fixed."
        )
    if train_metrics and (ddp or graph):
        raise ValueError(
            "train_metrics=True needs the one-process, uncaptured step (not DDP, not graph)."
        )
