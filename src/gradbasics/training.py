"""The training loop: check, pick an engine, run epochs, record, report, save.

Everything path-specific (how a step reads its loss, masks a bad update, replays a
captured graph or shards a distributed batch) lives in one engine of
:mod:`gradbasics.engines`, chosen once before the first step; this loop reads top to bottom.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics._ckptcheck import check_writable, fingerprint, run_settings
from gradbasics._device import sanctioned_sync, to_device
from gradbasics._distributed import Ranks, ddp_ranks, unwrap
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
from gradbasics.checkpoint import check_path, restore, save_checkpoint
from gradbasics.data import LossFn, check_loss_fn
from gradbasics.engines import (
    DDPEngine,
    DeviceEngine,
    Diverged,
    EagerEngine,
    Engine,
    GraphEngine,
    Interrupted,
    Run,
)
from gradbasics.engines import graph as graph_engine
from gradbasics.engines.base import UpdateRule
from gradbasics.history import Callback, DivergenceError, TrainHistory, TrainingInterrupted
from gradbasics.recording import ActivationRecorder, EpochRows, check_record_memory
from gradbasics.rules import Rule
from gradbasics.steps import legacy_data_step, manual_sgd_step

__all__ = ["UpdateRule", "train_loop"]


def _check_callbacks(callbacks: object) -> list[Callback]:
    if not isinstance(callbacks, Iterable) or callable(callbacks):
        raise TypeError(f"callbacks must be a sequence of callables, got {_describe(callbacks)}.")
    checked = list(callbacks)
    for i, cb in enumerate(checked):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}] must be callable, got {_describe(cb)}.")
    return checked


def _check_rule(
    lr: object, optimizer: object, update: object
) -> tuple[float, torch.optim.Optimizer | None]:
    """Check that exactly one of ``lr`` and ``optimizer`` is given, and the rule fits."""
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


def _pick_engine(run: Run, ranks: Ranks | None, graph: bool, last: float | None) -> Engine:
    """The one engine for this run, chosen before the first step."""
    if ranks is not None:
        return DDPEngine(run, last, ranks)
    if graph:
        return GraphEngine(run, last)
    if _losses_stay_on_device(run.device, run.optimizer, run.update):
        return DeviceEngine(run, last)
    return EagerEngine(run, last)


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
    graph: bool = False,
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
    With ``graph=True`` the whole step is captured once in a CUDA graph and replayed.

    Args:
        model: The model; its parameters that require grad are trained.
        inputs: Inputs, rows are samples: shape ``(N, ...)``.
        targets: Targets with ``N`` rows.
        epochs: Number of passes over the data, >= 0.
        lr: Learning rate :math:`\eta` for ``update``. Exactly one of ``lr`` and
            ``optimizer`` must be given.
        optimizer: Any ``torch.optim.Optimizer`` over the model's parameters.
        update: The update rule used with ``lr``: :func:`manual_sgd_step` (default),
            :func:`legacy_data_step`, a rule object of :mod:`gradbasics.rules` (e.g.
            ``rules.Adam()``, whose state is saved in checkpoints), or any
            ``update(params, lr)``.
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
        graph: Capture each training step once in a CUDA graph and replay it (CUDA, ``lr``
            and a built-in update rule only). The results are bit-identical to
            ``graph=False``, at a fraction of the launch overhead of small steps. The
            captured Python runs only while capturing: hooks, prints or counters in the
            model's forward or in ``loss_fn`` do not run on every step.

    Returns:
        The :class:`TrainHistory` of the run.

    Raises:
        TypeError: On arguments of the wrong type or dtype.
        ValueError: On invalid values (see the argument list), or when ``graph=True``
            cannot serve the run (the message says why); nothing is changed then.
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
    rate, opt = _check_rule(lr, optimizer, update)
    params = trainable_params(model)
    device, dtype = model_device_dtype(model)
    fn = check_loss_fn(loss_fn)
    with sanctioned_sync():
        x, y = check_data(inputs, targets, model_dtype=dtype, float_targets=loss_fn is None)
    n = x.shape[0]
    size = check_batch_size(batch_size, n) or n
    gen = check_generator(generator)
    hooks = _check_callbacks(callbacks)
    ckpt = None if checkpoint is None else check_path(checkpoint, name="checkpoint")
    if ckpt is not None:
        check_writable(ckpt, "checkpoint")
    every = check_int(checkpoint_every, name="checkpoint_every", minimum=1)
    if resume and ckpt is None:
        raise ValueError("resume=True needs a checkpoint path, got checkpoint=None.")
    if not isinstance(graph, bool):
        raise TypeError(f"graph must be a bool, got {_describe(graph)}.")
    ranks = ddp_ranks(model)  # None unless a process group is up and the model is DDP
    why = graph_engine.refusal(device, opt, update, ranks is not None) if graph else None
    if why is not None:
        raise ValueError(f"graph=True cannot serve this run: {why}.")
    settings = run_settings(lr=lr, optimizer=opt, update=update, rows=n, batch_size=size)
    if ckpt is not None:  # resuming on other data of the same length is refused
        with sanctioned_sync():
            settings["data"] = fingerprint(x, y)
    rule = update if opt is None and isinstance(update, Rule) else None  # its state is saved
    lead = ranks is None or ranks.rank == 0  # the one rank that records, reports and saves
    core = unwrap(model)
    history, start = TrainHistory(), 0
    if resume and ckpt is not None and ckpt.exists():
        restored = restore(ckpt, core, opt, gen, settings, max_epoch=n_epochs, rule=rule)
        start, history = restored.epoch, restored.history

    # 2. Set up: data on the model's device once, the activation rows, one engine.
    with sanctioned_sync():  # detached: the user's tensors never collect a .grad
        x, y = to_device(x.detach(), device), to_device(y.detach(), device)
    sizes = [size] * (n // size) + ([n % size] if n % size else [])  # rows per batch
    recorder = ActivationRecorder(core) if record and lead else None
    if recorder is not None:
        check_record_memory(recorder, x[: sizes[-1]], n_epochs)
    rows = EpochRows(n_epochs, pinned=device.type == "cuda")
    for name, saved in history.activations.items():  # resumed rows
        for e in range(start):
            rows.keep(name, saved[e], e)
    interrupts = DeferredInterrupt()
    run = Run(model, params, fn, x, y, size, sizes, gen, opt, update, rate, recorder, interrupts)
    last_finite = history.losses[-1] if history.losses else None
    engine = _pick_engine(run, ranks, graph, last_finite)
    bar = _progress_bar(n_epochs) if progress and lead else None
    if bar is not None:
        bar.update(start)

    # 3. Epochs: the engine runs the steps; record, save, report and call back here.
    with interrupts:
        try:
            for epoch in range(start, n_epochs):
                try:
                    history.losses.append(engine.run_epoch(epoch))
                except Diverged as bad:
                    done = TrainHistory(list(history.losses), rows.upto(epoch))
                    raise DivergenceError(epoch, done, bad.value, engine.last_finite) from None
                except Interrupted:
                    raise TrainingInterrupted(epoch, history) from None
                if recorder is not None:
                    for name, act in recorder.activations.items():
                        rows.keep(name, act, epoch)
                    history.activations = rows.upto(epoch + 1)
                if (
                    ckpt is not None
                    and lead
                    and ((epoch + 1) % every == 0 or epoch + 1 == n_epochs)
                ):
                    save_checkpoint(
                        ckpt,
                        core,
                        epoch=epoch + 1,
                        history=history,
                        optimizer=opt,
                        generator=gen,
                        settings=settings,
                        rule=rule,
                    )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{history.losses[-1]:.4g}", refresh=False)
                for cb in hooks:
                    cb(epoch, history)
            if interrupts.pending:  # a Ctrl-C after the last step is not swallowed
                raise TrainingInterrupted(n_epochs, history)
        finally:
            if bar is not None:
                bar.close()
    return history
