"""The training loop: forward, loss, backward, update, clear gradients, record, report."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics._device import sanctioned_sync, to_device
from gradbasics._distributed import backward_shard, ddp_ranks, global_sum, shard, unwrap
from gradbasics._interrupts import DeferredInterrupt
from gradbasics._validate import (
    _describe,
    check_batch_size,
    check_data,
    check_generator,
    check_int,
    check_lr,
    check_model,
    model_device_dtype,
    trainable_params,
)
from gradbasics.checkpoint import check_path, restore, run_settings, save_checkpoint
from gradbasics.data import LossFn, check_loss_fn, check_loss_value
from gradbasics.history import Callback, DivergenceError, TrainHistory, TrainingInterrupted
from gradbasics.recording import ActivationRecorder
from gradbasics.steps import (
    legacy_data_step,
    legacy_update,
    manual_sgd_step,
    sgd_update,
    use_foreach,
)

__all__ = ["UpdateRule", "train_loop"]

UpdateRule = Callable[[Sequence[Tensor], float], None]
"""An update rule: ``update(params, lr)`` changes the parameters in place from ``p.grad``."""


def _check_callbacks(callbacks: object) -> list[Callback]:
    if not isinstance(callbacks, Iterable) or callable(callbacks):
        raise TypeError(f"callbacks must be a sequence of callables, got {_describe(callbacks)}.")
    checked = list(callbacks)
    for i, cb in enumerate(checked):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}] must be callable, got {_describe(cb)}.")
    return checked


def _progress_bar(epochs: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "progress=True needs tqdm; install it with: pip install 'gradbasics[progress]'"
        ) from exc
    return tqdm(total=epochs, unit="epoch")


def _losses_stay_on_device(
    device: torch.device, optimizer: torch.optim.Optimizer | None, update: UpdateRule
) -> bool:
    """Whether losses are read once per epoch, non-finite steps masked on the device.

    Off the CPU, reading a loss waits for the device; the built-in rules can instead mask
    a non-finite step there. On the CPU a read is cheaper than the mask.
    """
    builtin = optimizer is None and update in (manual_sgd_step, legacy_data_step)
    return builtin and device.type != "cpu"


def _update_and_clear(
    params: list[Tensor],
    lr: float,
    optimizer: torch.optim.Optimizer | None,
    update: UpdateRule,
) -> Callable[[Tensor | None], None]:
    """Return ``finish(mask)``: apply the update, then clear the gradients.

    ``mask`` (a 0-d bool tensor or None) masks the built-in rules' update. The function is
    chosen once, so a step pays for no dispatch of its own.
    """
    if optimizer is not None:
        opt = optimizer

        def finish(mask: Tensor | None) -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)

        return finish
    if update is manual_sgd_step:
        foreach = use_foreach(params)

        def finish_sgd(mask: Tensor | None) -> None:
            sgd_update(params, lr, mask, foreach=foreach)  # checked once, by train_loop
            for p in params:
                p.grad = None

        return finish_sgd

    def finish_rule(mask: Tensor | None) -> None:
        if update is legacy_data_step:
            legacy_update(params, lr, mask)
        else:
            update(params, lr)
        for p in params:
            p.grad = None

    return finish_rule


def train_loop(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    epochs: int,
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    update: UpdateRule = manual_sgd_step,
    batch_size: int | None = None,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
    record: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
) -> TrainHistory:
    r"""Train ``model`` by mini-batch gradient descent and return its history.

    Each epoch draws a permutation :math:`\pi` of the :math:`N` rows on the CPU
    ``generator`` and walks it in batches :math:`B` of ``batch_size`` rows (the last may
    be smaller). For each batch: forward, loss, backward, update, clear the gradients:

    .. math::

        L_B = \ell\bigl(f_\theta(x_B), t_B\bigr), \qquad
        \theta \leftarrow \theta - \eta\, \nabla_\theta L_B
        \quad\text{(with } \texttt{lr} = \eta\text{)}

    or ``optimizer.step()`` with ``optimizer``. The epoch's loss is the mean per-sample
    loss :math:`\sum_B |B|\, L_B / N`, each :math:`L_B` taken before its update. With
    ``batch_size=None`` (or :math:`N`) an epoch is one full batch of all rows in order:
    no permutation is drawn, since it could only change the rounding.

    The data are moved to the model's device once. A NaN or infinite loss raises
    :class:`DivergenceError`, and its update is never applied. On the CPU each loss is
    read as it comes. On a GPU, with ``lr`` and a built-in update rule, the losses stay
    on the device and are read once per epoch: a non-finite loss masks its update (and
    every later one) on the device, so no step waits for the GPU. With an optimizer or a
    custom update rule, each loss is read before its update (a synchronisation per step).

    Args:
        model: The model; its parameters that require grad are trained.
        inputs: Inputs, rows are samples: shape ``(N, ...)``.
        targets: Targets with ``N`` rows.
        epochs: Number of passes over the data, >= 0.
        lr: Learning rate :math:`\eta` for ``update``. Exactly one of ``lr`` and
            ``optimizer`` must be given.
        optimizer: Any ``torch.optim.Optimizer`` over the model's parameters.
        update: The update rule used with ``lr``: :func:`manual_sgd_step` (default),
            :func:`legacy_data_step`, or any ``update(params, lr)``.
        batch_size: Rows per batch, ``1 <= batch_size <= N``; None for full batches.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch's mean loss as a 0-d
            tensor (default :func:`mse_loss`).
        generator: CPU ``torch.Generator`` for the permutations (default: the global one).
        record: Record the activations of each epoch's last forward pass into
            ``history.activations`` (see :class:`ActivationRecorder` for the names).
        callbacks: Each is called as ``callback(epoch, history)`` after every epoch.
        progress: Show a tqdm progress bar (needs ``pip install 'gradbasics[progress]'``).
        checkpoint: A file to write a checkpoint to (see :func:`save_checkpoint`) every
            ``checkpoint_every`` epochs and after the last one, atomically.
        checkpoint_every: Epochs between checkpoints, >= 1.
        resume: Continue from ``checkpoint`` when the file exists (up to ``epochs`` in
            total), bit-identically to a run that was never stopped; start fresh when it
            does not. The model, optimizer, generator and history are restored from it.

    Returns:
        The :class:`TrainHistory` of the run.

    Raises:
        TypeError: On arguments of the wrong type or dtype.
        ValueError: On invalid values (see the argument list); nothing is changed then.
        DivergenceError: When a loss is NaN or infinite.
        TrainingInterrupted: On Ctrl-C, once the step in progress has completed; the
            history of the completed epochs is its ``.history``.
        CheckpointError: If ``resume`` finds a checkpoint that is unsafe, corrupted, or
            from another model or run (nothing is changed then).
        ImportError: If ``progress=True`` and tqdm is not installed.

    Example:
        >>> import torch
        >>> from gradbasics import FrozenFirstModel, train_loop
        >>> model = FrozenFirstModel(w1=1.0, w2=1.0)
        >>> history = train_loop(model, torch.tensor([1.0]), torch.tensor([2.0]),
        ...                      epochs=20, lr=0.01)
        >>> round(model.w2.item(), 6), round(2 - 0.98 ** 20, 6)
        (1.332392, 1.332392)
        >>> history.losses[0]
        1.0
    """
    # 1. Check everything before anything is changed.
    check_model(model)
    n_epochs = check_int(epochs, name="epochs", minimum=0)
    if (lr is None) == (optimizer is None):
        raise ValueError(
            "Exactly one of lr and optimizer must be given, got "
            f"lr={lr!r} and optimizer={type(optimizer).__name__ if optimizer else None}."
        )
    rate = 0.0
    if lr is not None:
        rate = check_lr(lr)
        if not callable(update):
            raise TypeError(f"update must be callable, got {_describe(update)}.")
    elif not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {_describe(optimizer)}.")
    elif update is not manual_sgd_step:
        raise ValueError("update applies only with lr; the optimizer makes its own updates.")
    params = trainable_params(model)
    device, dtype = model_device_dtype(model)
    fn = check_loss_fn(loss_fn)
    with sanctioned_sync():
        x, y = check_data(inputs, targets, model_dtype=dtype, float_targets=loss_fn is None)
    n = x.shape[0]
    size = check_batch_size(batch_size, n)
    gen = check_generator(generator)
    hooks = _check_callbacks(callbacks)
    ckpt = None if checkpoint is None else check_path(checkpoint, name="checkpoint")
    every = check_int(checkpoint_every, name="checkpoint_every", minimum=1)
    if resume and ckpt is None:
        raise ValueError("resume=True needs a checkpoint path, got checkpoint=None.")
    settings = run_settings(lr=lr, optimizer=optimizer, update=update, rows=n, batch_size=size or n)
    ranks = ddp_ranks(model)  # None unless a process group is up and the model is DDP
    lead = ranks is None or ranks.rank == 0  # the one rank that records, reports and saves
    core = unwrap(model)
    history = TrainHistory()
    start = 0
    if resume and ckpt is not None and ckpt.exists():
        restored = restore(ckpt, core, optimizer, gen, settings, max_epoch=n_epochs)
        start, history = restored.epoch, restored.history
    bar = _progress_bar(n_epochs) if progress and lead else None

    # 2. Set up: data on the model's device once; how to update and clear.
    with sanctioned_sync():
        x, y = to_device(x, device), to_device(y, device)
    if size is None or size == n:
        size = n
    sizes = [size] * (n // size) + ([n % size] if n % size else [])  # rows per batch
    on_device = ranks is None and _losses_stay_on_device(device, optimizer, update)
    recorder = ActivationRecorder(core) if record and lead else None
    rows: dict[str, Tensor] = {}
    last_finite: float | None = history.losses[-1] if history.losses else None
    ok = torch.ones((), dtype=torch.bool, device=device)  # sticky "all losses finite"
    step_losses: Tensor | None = None  # (batches,) on the device, read once per epoch

    finish = _update_and_clear(params, rate, optimizer, update)

    def diverged(epoch: int, value: float) -> DivergenceError:
        done = TrainHistory(list(history.losses), {k: v[:epoch] for k, v in rows.items()})
        return DivergenceError(epoch, done, value, last_finite)

    def clear_stale() -> None:  # gradients left from before would leak into the first step
        for p in params:
            p.grad = None
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)

    def keep_row(name: str, act: Tensor, epoch: int) -> None:
        if name not in rows:  # once: (epochs, *shape), pinned so a GPU copies without a sync
            shape = (n_epochs, *act.shape)
            rows[name] = torch.empty(shape, dtype=act.dtype, pin_memory=device.type == "cuda")
        rows[name][epoch].copy_(act, non_blocking=True)

    for name, saved in history.activations.items():  # resumed rows
        for e in range(start):
            keep_row(name, saved[e], e)
    first = True
    if bar is not None:
        bar.update(start)
    interrupts = DeferredInterrupt().__enter__()
    try:
        for epoch in range(start, n_epochs):
            # 3. One epoch: forward, loss, backward, update, clear, for every batch.
            weights = sizes  # rows behind each batch loss
            if ranks is not None:  # this rank's shard of every global batch
                perm = (  # (N,): all rows in order for a full batch, else a fresh permutation
                    torch.arange(n, device=device)
                    if size == n
                    else to_device(torch.randperm(n, generator=gen), device)
                )
                mine = [shard(c, ranks) for c in perm.split(size)]
                batches: Sequence[tuple[Tensor, Tensor]] = [
                    (x.index_select(0, i), y.index_select(0, i)) for i in mine
                ]
                weights = [len(i) for i in mine]
                scales = [len(i) * ranks.world / s for i, s in zip(mine, sizes, strict=True)]
            elif size == n:
                batches = ((x, y),)
            else:
                perm = to_device(torch.randperm(n, generator=gen), device)  # (N,)
                batches = [(x.index_select(0, i), y.index_select(0, i)) for i in perm.split(size)]
            values: list[float] = []
            for b, (xb, yb) in enumerate(batches):
                if recorder is not None and b == len(batches) - 1:
                    with recorder:
                        out = model(xb)
                else:
                    out = model(xb)
                if ranks is not None:  # DDP: scaled shard loss, a consistent stop on all ranks
                    if first:
                        clear_stale()
                        first = False
                    value, finite = backward_shard(out, yb, fn, scales[b], params)
                    if not finite:
                        raise diverged(epoch, value if not math.isfinite(value) else math.nan)
                    last_finite = value
                    values.append(value)
                    finish(None)
                else:
                    loss = fn(out, yb)
                    if first:  # checks and clearing wait until the loss is known to be valid
                        check_loss_value(loss)
                        clear_stale()
                        first = False
                    if on_device:
                        if step_losses is None:
                            step_losses = torch.empty(len(sizes), dtype=loss.dtype, device=device)
                        detached = loss.detach()
                        step_losses[b] = detached
                        torch.logical_and(ok, torch.isfinite(detached), out=ok)
                        loss.backward()
                        finish(ok)
                    else:
                        value = loss.item()
                        if not math.isfinite(value):
                            raise diverged(epoch, value)
                        last_finite = value
                        values.append(value)
                        loss.backward()
                        finish(None)
                if interrupts.pending:  # only ever between two complete steps
                    raise TrainingInterrupted(epoch, history)

            # 4. Record, then read the losses (the one sync of a GPU epoch), report.
            if recorder is not None:
                for name, act in recorder.activations.items():
                    keep_row(name, act, epoch)
            if on_device:
                assert step_losses is not None
                with sanctioned_sync():
                    values = step_losses.tolist()
                for value in values:
                    if not math.isfinite(value):
                        raise diverged(epoch, value)
                    last_finite = value
            if ranks is not None:  # the global mean: one all-reduce per epoch
                local = sum(v * w for v, w in zip(values, weights, strict=True))
                history.losses.append(global_sum(local, device) / n)
            elif len(values) == 1:
                history.losses.append(values[0])
            else:
                history.losses.append(sum(v * w for v, w in zip(values, weights, strict=True)) / n)
            if recorder is not None:
                history.activations = {k: v[: epoch + 1] for k, v in rows.items()}
            if ckpt is not None and lead and ((epoch + 1) % every == 0 or epoch + 1 == n_epochs):
                save_checkpoint(
                    ckpt,
                    core,
                    epoch=epoch + 1,
                    history=history,
                    optimizer=optimizer,
                    generator=gen,
                    settings=settings,
                )
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history.losses[-1]:.4g}", refresh=False)
            for cb in hooks:
                cb(epoch, history)
        if interrupts.pending:  # a Ctrl-C after the last step is not swallowed
            raise TrainingInterrupted(n_epochs, history)
    finally:
        interrupts.__exit__(None, None, None)
        if bar is not None:
            bar.close()
    return history
