"""The training loop: check, pick an engine, run epochs, validate, record, report, save.

Everything path-specific (how a step reads its loss, masks a bad update, replays a
captured graph or shards a distributed batch) lives in one engine of
:mod:`gradbasics.engines`, chosen once before the first step; this loop reads top to bottom.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics import _trainargs as args
from gradbasics._activationlog import Recording
from gradbasics._ckptcheck import check_writable, fingerprint, run_settings
from gradbasics._device import sanctioned_sync, to_device
from gradbasics._distributed import Ranks, ddp_ranks, unwrap
from gradbasics._epochend import EpochEnd
from gradbasics._interrupts import DeferredInterrupt
from gradbasics._validate import (
    _describe,
    check_generator,
    check_int,
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
from gradbasics.engines.base import UpdateRule
from gradbasics.history import Callback, DivergenceError, TrainHistory, TrainingInterrupted
from gradbasics.recording import ActivationRecorder
from gradbasics.rules import Rule
from gradbasics.schedules import Schedule
from gradbasics.steps import legacy_data_step, manual_sgd_step
from gradbasics.validation import BestWeights, EarlyStopping, Metric, check_metrics, validate_sums

__all__ = ["UpdateRule", "train_loop"]


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
    inputs: Tensor | Iterable[Any],
    targets: Tensor | None = None,
    *,
    epochs: int,
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    update: UpdateRule = manual_sgd_step,
    batch_size: int | None = None,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
    record: bool | Sequence[str] = False,
    probe: Tensor | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    graph: bool = False,
    val: tuple[Tensor, Tensor] | None = None,
    metrics: Mapping[str, Metric] | None = None,
    early_stopping: EarlyStopping | None = None,
    scheduler: object = None,
    scheduler_interval: str = "epoch",
    clip_grad_norm: float | None = None,
    train_metrics: bool = False,
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

    The model trains in train mode (dropout on, batch-norm statistics updated) and ends in
    the mode it was in, also on errors. After each epoch, with ``val``, the validation
    loss and ``metrics`` are computed in eval mode without gradients (see
    :func:`evaluate`), ``early_stopping`` decides whether to go on, and a ``scheduler``
    steps. A ``DataLoader`` can replace the tensors: ``train_loop(model, loader, ...)``.
    Epochs are 0-based in the history and callbacks, 1-based in messages ("epoch 3 of
    100").

    Args:
        model: The model; its parameters that require grad are trained.
        inputs: Inputs, rows are samples: shape ``(N, ...)``; or a ``DataLoader`` (any
            re-iterable of ``(inputs, targets)`` batches, moved to the model's device as
            they come), with ``targets`` omitted. Resume is bit-identical with a loader
            when its sampler draws from the ``generator`` passed here (its state is in
            the checkpoint); the loader's own state (workers, prefetched batches) is not.
        targets: Targets with ``N`` rows (omitted with a loader).
        epochs: Number of passes over the data, >= 0.
        lr: Learning rate :math:`\eta` for ``update``. Exactly one of ``lr`` and
            ``optimizer`` must be given.
        optimizer: Any ``torch.optim.Optimizer`` over the model's parameters.
        update: The update rule used with ``lr``: :func:`manual_sgd_step` (default),
            :func:`legacy_data_step`, a rule object of :mod:`gradbasics.rules` (e.g.
            ``rules.Adam()``, whose state is saved in checkpoints), or any
            ``update(params, lr)``.
        batch_size: Rows per batch, ``1 <= batch_size <= N``; None for full batches.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch's *mean* loss as a 0-d
            tensor (default :func:`mse_loss`); a ``torch.nn`` loss with another
            ``reduction`` is refused, since the epoch loss weights batch means by rows.
        generator: CPU ``torch.Generator`` for the permutations (default: the global one).
        record: Record activations after every epoch: ``True`` for the default names
            (see :class:`ActivationRecorder`), or a list of submodule names (``["0",
            "2"]`` for an ``nn.Sequential``). The per-unit statistics go to
            ``history.activation_stats``, units dead for 3 epochs in a row to
            ``history.dead_units`` (with a :class:`DeadUnitsWarning`), and whole rows to
            ``history.activations`` while they fit in 64 MiB (decided before training;
            above it, a warning says so once). Without ``probe`` the rows are those of
            each epoch's last batch, before its update: a different random batch every
            epoch.
        probe: A fixed batch of inputs, shaped like the inputs' rows, on the CPU or the
            model's device. After each epoch's updates it runs once under
            ``torch.no_grad()`` in eval mode (mode restored), and its activations are the
            ones recorded, so epochs compare like with like. Needs ``record``.
        callbacks: Each is called as ``callback(epoch, history)`` after every epoch; one
            stops the run cleanly by calling ``history.stop()``.
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
        val: Validation data ``(inputs, targets)``, evaluated after every epoch into
            ``history.val_losses`` (batched by ``batch_size``, weighted by rows).
        metrics: Named ``metric(outputs, targets) -> 0-d tensor`` (batch means), computed
            on ``val`` after every epoch into ``history.metrics[name]``.
        early_stopping: An :class:`EarlyStopping`: stop when its monitored value stops
            improving, and (``restore_best``) end with the best epoch's weights.
        scheduler: A ``torch.optim.lr_scheduler`` scheduler of ``optimizer`` (stepped per
            epoch, ``ReduceLROnPlateau`` with the monitored value), or with ``lr`` a
            callable ``epoch -> lr``. ``history.lrs`` records each epoch's rate.
        scheduler_interval: ``"epoch"`` or ``"batch"`` (a torch scheduler stepped after
            every update).
        clip_grad_norm: Clip the gradients' total norm to this between backward and
            update (``torch.nn.utils.clip_grad_norm_``; no host synchronisation).
        train_metrics: Also compute ``metrics`` on every training batch (its outputs
            before the update, weighted by rows) into ``history.metrics["train_" + name]``;
            read once per epoch.

    Returns:
        The :class:`TrainHistory` of the run.

    Raises:
        TypeError: On arguments of the wrong type or dtype.
        ValueError: On invalid values (see the argument list), or when ``graph=True``
            cannot serve the run (the message says why); nothing is changed then.
        DivergenceError: When a loss is NaN or infinite.
        TrainingInterrupted: On Ctrl-C or SIGTERM, once the step in progress has
            completed; the history of the completed epochs is its ``.history``.
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
    rate, opt = args.check_rule(lr, optimizer, update)
    params = trainable_params(model)
    device, dtype = model_device_dtype(model)
    fn = check_loss_fn(loss_fn)
    x, y, size, loader = args.check_source(inputs, targets, batch_size, dtype, loss_fn is None)
    n = x.shape[0]
    size = size or n
    val_data = args.check_val(val, dtype, loss_fn is None, x)
    named = args.check_metric_use(check_metrics(metrics), val_data is not None, train_metrics)
    monitor = args.check_monitor(early_stopping, val_data is not None, named, train_metrics)
    schedule = Schedule(scheduler, interval=scheduler_interval, optimizer=opt, lr=rate)
    clip = args.check_clip(clip_grad_norm)
    gen = check_generator(generator)
    hooks = args.check_callbacks(callbacks)
    ckpt = None if checkpoint is None else check_path(checkpoint, name="checkpoint")
    if ckpt is not None:
        check_writable(ckpt, "checkpoint")
    every = check_int(checkpoint_every, name="checkpoint_every", minimum=1)
    if resume and ckpt is None:
        raise ValueError("resume=True needs a checkpoint path, got checkpoint=None.")
    if not isinstance(graph, bool):
        raise TypeError(f"graph must be a bool, got {_describe(graph)}.")
    ranks = ddp_ranks(model)  # None unless a process group is up and the model is DDP
    args.refuse_combinations(device, opt, update, ranks is not None, graph, loader, schedule,
                             train_metrics)  # fmt: skip
    rows_of = n if loader is None else len(getattr(loader, "dataset", ())) or None
    settings = run_settings(lr=lr, optimizer=opt, update=update, rows=rows_of, batch_size=size)
    if ckpt is not None and loader is None:  # resuming on other data is refused
        with sanctioned_sync():
            settings["data"] = fingerprint(x, y)
    rule = update if opt is None and isinstance(update, Rule) else None  # its state is saved
    lead = ranks is None or ranks.rank == 0  # the one rank that records, reports and saves
    core = unwrap(model)
    names, probe = args.check_record(record, probe, core, device, dtype, x)
    x, y = _placed(device, x, y)
    sizes = [size] * (n // size) + ([n % size] if n % size else []) if n else []
    recording = None
    if names is not None and lead:  # measured now: a probe that does not fit changes nothing
        on_device = None if probe is None else to_device(probe, device)
        last = None if loader is not None else x[: sizes[-1]]
        recording = Recording.start(ActivationRecorder(core, names), on_device, last, n_epochs)
    if val_data is not None:  # the loss and metrics on a few rows, before any change
        k = min(size or val_data[0].shape[0], 8)
        validate_sums(core, *_placed(device, val_data[0][:k], val_data[1][:k]), fn, named, k)
    best = BestWeights(early_stopping, core) if early_stopping is not None else None
    history, start = TrainHistory(), 0
    if resume and ckpt is not None and ckpt.exists():
        restored = restore(ckpt, core, opt, gen, settings, max_epoch=n_epochs, rule=rule,
                           scheduler=schedule)  # fmt: skip
        start, history = restored.epoch, restored.history
        if best is not None:
            best.load(restored.extra.get("early_stopping"))

    # 2. Set up: data on the model's device once, the activation log, one engine.
    val_data = None if val_data is None else _placed(device, *val_data)
    if recording is not None:
        recording.restore(history, start)
    in_steps = None if recording is None else recording.in_steps
    interrupts = DeferredInterrupt()
    run = Run(model, params, fn, x, y, size, sizes, gen, opt, update, rate, in_steps, interrupts,
              loader, clip, schedule.after_step, named if train_metrics else None)  # fmt: skip

    # 3. Epochs: the engine runs the steps; validate, record, stop, save, report here.
    def save(epoch: int) -> None:
        assert ckpt is not None
        report.publish(history)
        save_checkpoint(
            ckpt, core, epoch=epoch + 1, history=history, optimizer=opt, generator=gen,
            settings=settings, rule=rule, scheduler=schedule,
            extra={"early_stopping": None if best is None else best.state()},
        )  # fmt: skip

    report = EpochEnd(core, fn, named, size, train_metrics, val_data, recording, best,
                       schedule, monitor)  # fmt: skip
    end = start if history.stopped_epoch is not None else n_epochs  # a resumed early stop
    was_training, bar = model.training, None
    model.train()
    try:
        engine = _pick_engine(run, ranks, graph, history.losses[-1] if history.losses else None)
        bar = args.progress_bar(n_epochs) if progress and lead else None
        if bar is not None:
            bar.update(start)
        with interrupts:
            for epoch in range(start, end):
                if schedule.kind == "callable":
                    run.lr = schedule.begin_epoch(epoch)
                rate_now = run.lr if opt is None else opt.param_groups[0]["lr"]
                try:
                    history.losses.append(engine.run_epoch(epoch))
                except Diverged as bad:
                    report.publish(history)
                    done = replace(history, losses=list(history.losses))
                    raise DivergenceError(
                        epoch, done, bad.value, engine.last_finite, n_epochs
                    ) from None
                except Interrupted:
                    report.publish(history)
                    raise TrainingInterrupted(epoch, history, n_epochs) from None
                history.lrs.append(rate_now)
                stop = report.after(epoch, engine, history)
                due = (epoch + 1) % every == 0 or stop or epoch + 1 == n_epochs
                if ckpt is not None and lead and due:
                    save(epoch)
                if bar is not None:
                    bar.set_postfix(_postfix(history), refresh=False)
                    bar.update(1)
                if hooks:
                    report.publish(history)
                for cb in hooks:
                    cb(epoch, history)
                if history.stop_requested and not stop:  # a callback's stop: saved with it
                    history.stopped_epoch, stop = epoch, True
                    if ckpt is not None and lead:
                        save(epoch)
                if stop:
                    break
            report.publish(history)
            if interrupts.pending:  # a Ctrl-C after the last step is not swallowed
                raise TrainingInterrupted(n_epochs, history, n_epochs)
            if best is not None and best.rule.restore_best:
                best.restore()
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return history


def _placed(device: torch.device, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Data detached (the user's tensors never collect a ``.grad``) and on ``device``."""
    with sanctioned_sync():
        return to_device(inputs.detach(), device), to_device(targets.detach(), device)


def _postfix(history: TrainHistory) -> dict[str, str]:
    """The progress bar's numbers: the epoch just finished."""
    shown = {"loss": f"{history.losses[-1]:.4g}"}
    if history.val_losses:
        shown["val_loss"] = f"{history.val_losses[-1]:.4g}"
    return shown
