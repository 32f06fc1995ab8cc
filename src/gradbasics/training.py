"""The training loop: check, build the callbacks, pick an engine, run the epochs.

Everything path-specific (how a step reads its loss, masks a bad update, replays a
captured graph or shards a distributed batch) lives in one engine of
:mod:`gradbasics.engines`; every feature (validation, early stopping, schedules,
clipping, recording, the progress bar, checkpoints) is one callback of
:mod:`gradbasics.callbacks`. This loop names neither, and reads top to bottom.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics import _preflight as preflight
from gradbasics import _trainargs as args
from gradbasics._ckptcheck import run_settings
from gradbasics._device import sanctioned_sync, to_device
from gradbasics._distributed import Ranks, ddp_ranks, unwrap
from gradbasics._interrupts import DeferredInterrupt
from gradbasics._validate import (
    check_generator,
    check_int,
    check_model,
    model_device_dtype,
    modes,
    restore_modes,
    trainable_params,
)
from gradbasics.callbacks import Callback, EarlyStopping, Loop
from gradbasics.callbacks._chain import Hooks, check_callbacks, named, ordered, refuse_unserved
from gradbasics.data import LossFn, check_loss_fn
from gradbasics.engines import (
    AccumulateEngine,
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
from gradbasics.history import DivergenceError, EpochFn, TrainHistory, TrainingInterrupted
from gradbasics.steps import legacy_data_step, manual_sgd_step
from gradbasics.validation import Metric, check_metrics

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


def _engine_class(loop: Loop, ranks: Ranks | None, graph: bool, accumulate: int) -> type[Engine]:
    """The one engine for this run, chosen (and its refusals made) before any change."""
    if accumulate > 1:
        if ranks is not None or graph:
            what = "distributed (DDP) runs" if ranks is not None else "graph=True"
            raise ValueError(f"accumulate={accumulate} needs the one-process, uncaptured step; "
                             f"{what} update after every batch.")  # fmt: skip
        return AccumulateEngine
    if ranks is not None:
        return DDPEngine
    if graph:
        why = graph_engine.refusal(loop.device, loop.optimizer, loop.update, False)
        if why is not None:
            raise ValueError(f"graph=True cannot serve this run: {why}.")
        return GraphEngine
    if _losses_stay_on_device(loop.device, loop.optimizer, loop.update):
        return DeviceEngine
    return EagerEngine


def _engine_name(kind: type[Engine]) -> str:
    names = {GraphEngine: "graph=True", DDPEngine: "distributed (DDP) training",
             AccumulateEngine: "accumulate"}  # fmt: skip
    return names.get(kind, kind.__name__)


def _pick_engine(kind: type[Engine], run: Run, ranks: Ranks | None, last: float | None) -> Engine:
    """Build the chosen engine, once the callbacks have begun (and a resume restored)."""
    if kind is DDPEngine:
        assert ranks is not None
        return DDPEngine(run, last, ranks)
    return kind(run, last)


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
    callbacks: Sequence[Callback | EpochFn] = (),
    progress: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    graph: bool = False,
    val: tuple[Tensor, Tensor] | Iterable[Any] | None = None,
    metrics: Mapping[str, Metric] | None = None,
    early_stopping: EarlyStopping | None = None,
    scheduler: object = None,
    scheduler_interval: str = "epoch",
    clip_grad_norm: float | None = None,
    train_metrics: bool = False,
    accumulate: int = 1,
    precision: str | None = None,
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
            they come; an epoch is one pass, its first batch checked before training),
            with ``targets`` omitted. Resume is bit-identical when its sampler draws from
            the ``generator`` passed here (saved); the loader's own state is not.
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
            ``history.activation_stats``, units dead in the last 3 epochs to
            ``history.dead_units`` (a :class:`DeadUnitsWarning` at the end), and whole rows to
            ``history.activations`` while they fit in 64 MiB (decided before training;
            above it, a warning says so once). Without ``probe`` the rows are those of
            each epoch's last batch, before its update: a different random batch every
            epoch.
        probe: A fixed batch of inputs, shaped like the inputs' rows, on the CPU or the
            model's device. After each epoch's updates it runs once under
            ``torch.no_grad()`` in eval mode (mode restored), and its activations are the
            ones recorded, so epochs compare like with like. Needs ``record``.
        callbacks: :class:`~gradbasics.callbacks.Callback` objects (your own, or the
            built-in features of :mod:`gradbasics.callbacks`), or plain callables
            ``fn(epoch, history)`` called after every epoch. Either stops the run cleanly
            with ``history.stop()``.
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
            ``history.val_losses`` (batched by ``batch_size``, weighted by rows); or a
            ``DataLoader`` of ``(inputs, targets)`` batches.
        metrics: Named ``metric(outputs, targets) -> 0-d tensor`` (batch means), computed
            on ``val`` after every epoch into ``history.metrics[name]``.
        early_stopping: An :class:`EarlyStopping`: stop when its monitored value stops
            improving, and (``restore_best``) end with the best epoch's weights. The
            ``checkpoint`` file keeps the last epoch's weights (what a resume continues
            from); ``load_checkpoint(path, model, weights="EarlyStopping")`` loads the best.
        scheduler: A ``torch.optim.lr_scheduler`` scheduler of ``optimizer`` (stepped per
            epoch; ``ReduceLROnPlateau`` with ``val_loss``, or ``loss`` without ``val``:
            pass a :class:`~gradbasics.callbacks.Schedule` with ``monitor=`` for another),
            or with ``lr`` a callable ``epoch -> lr``. ``history.lrs`` records each
            epoch's rate.
        scheduler_interval: ``"epoch"`` or ``"batch"`` (a torch scheduler stepped after
            every update).
        clip_grad_norm: Clip the gradients' total norm to this between backward and
            update (``torch.nn.utils.clip_grad_norm_``; no host synchronisation).
        train_metrics: Also compute ``metrics`` on every training batch (its outputs
            before the update, weighted by rows) into ``history.metrics["train_" + name]``;
            read once per epoch.
        accumulate: Batches whose gradients make one update, >= 1: the update uses the
            row-weighted mean gradient of ``accumulate`` consecutive batches (a last,
            partial group too), so ``batch_size=b, accumulate=k`` trains as
            ``batch_size=k*b`` up to rounding, in the memory of ``b`` rows. Step hooks and
            per-batch schedules run once per update; the epoch's loss keeps its meaning.
            One process, uncaptured (not DDP, not ``graph=True``), no ``train_metrics``.
        precision: ``"bf16"`` or ``"fp16"``: forward and loss under ``torch.autocast``
            on the model's device, the model staying float32; ``"fp16"`` scales the loss
            with a ``torch.amp.GradScaler`` (saved in checkpoints; a step it skips is not
            a divergence) and needs ``optimizer=``. See
            :class:`~gradbasics.callbacks.MixedPrecision`.

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
    params, fn = trainable_params(model), check_loss_fn(loss_fn)
    device, dtype = model_device_dtype(model)
    x, y, size, loader = args.check_source(inputs, targets, batch_size, dtype, loss_fn is None)
    n, size = x.shape[0], size or x.shape[0]
    seen = preflight.sample(x, y, loader, dtype, loss_fn is None)  # a loader's first batch
    val_data = args.check_val(val, dtype, loss_fn is None, seen[0])
    named_metrics = check_metrics(metrics)
    tried = args.check_metric_use(named_metrics, val_data is not None, train_metrics)
    gen = check_generator(generator)
    acc = check_int(accumulate, name="accumulate", minimum=1)
    ranks, core = ddp_ranks(model), unwrap(model)  # ranks: None unless DDP is up
    recorded = args.check_record(record, probe, core, device, dtype, seen[0])
    built = args.build_callbacks(
        val=val_data, metrics=named_metrics, train_metrics=train_metrics, batch_size=size,
        early_stopping=early_stopping, scheduler=scheduler, scheduler_interval=scheduler_interval,
        clip_grad_norm=clip_grad_norm, record=recorded, progress=progress, precision=precision,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
    )  # fmt: skip
    cbs = ordered([*check_callbacks(callbacks), *built])
    args.refuse_combinations(ddp=ranks is not None, graph=graph, loader=loader, opt=opt,
                             callbacks=cbs, epochs=n_epochs,
                             updates=preflight.updates_per_epoch(n, size, loader, acc))  # fmt: skip
    preflight.probe(core, fn, seen, device, tried)
    rows, data, per_batch = (n, (x, y), size) if loader is None else args.loader_data(loader)
    settings = run_settings(lr=lr, optimizer=opt, update=update, rows=rows,
                            batch_size=per_batch, loss_fn=fn, data=data, generator=gen)  # fmt: skip
    if acc > 1:  # a run setting only when used: older checkpoints still resume
        settings["accumulate"] = acc
    x, y = _placed(device, x, y)
    lead = ranks is None or ranks.rank == 0  # the one rank that records, reports and saves
    loop = Loop(model=core, params=params, optimizer=opt, update=update, lr=rate, loss_fn=fn,
                epochs=n_epochs, device=device, generator=gen, lead=lead, callbacks=cbs,
                settings=settings)  # fmt: skip
    kind = _engine_class(loop, ranks, graph, acc)
    refuse_unserved(_engine_name(kind), kind.serves, cbs)
    loop.inputs = None if loader is not None else x
    loop.last_rows = (n % size or size) if n else 0

    # 2. Begin: every callback checks and sets up; a resume (the last) restores the run.
    _begin(loop)
    hooks = Hooks(cbs)
    sizes = [size] * (n // size) + ([n % size] if n % size else []) if n else []
    watch = None if not loop.watchers else _watching(loop.watchers)
    interrupts = DeferredInterrupt()
    run = Run(model=model, params=params, loss_fn=fn, x=x, y=y, size=size, sizes=sizes,
              generator=gen, optimizer=opt, update=update, lr=loop.lr, interrupts=interrupts,
              loader=loader, watch=watch, before=hooks.before, after=hooks.after,
              accumulate=acc, autocast=loop.autocast, scaler=loop.scaler)  # fmt: skip
    loop.attach(run)

    # 3. Epochs: the engine runs the steps; the callbacks do the rest.
    was_training = modes(model)
    model.train()
    try:
        last = loop.history.losses[-1] if loop.history.losses else None
        engine = _pick_engine(kind, run, ranks, last)
        with interrupts:
            _run_epochs(loop, engine, hooks)
            loop.sync()
            if interrupts.pending:  # a Ctrl-C after the last step is not swallowed
                raise TrainingInterrupted(n_epochs, loop.history, n_epochs)
    except BaseException as exc:
        loop.failed = exc
        raise
    finally:
        try:
            _call_each(cbs[::-1], "on_train_end", loop.history)  # set-up's reverse
        finally:
            restore_modes(was_training)
    return loop.history


def _run_epochs(loop: Loop, engine: Engine, hooks: Hooks) -> None:
    """Every epoch from ``loop.start``: hooks, steps, the epoch's record, hooks; stop early."""
    history = loop.history
    end = loop.start if history.stopped_epoch is not None else loop.epochs  # a resumed stop
    for epoch in range(loop.start, end):
        loop.epoch = epoch
        for hook in hooks.begin:
            try:
                hook(epoch)
            except Exception as exc:
                named(getattr(hook, "__self__"), "on_epoch_begin", exc)  # noqa: B009
                raise
        rate = loop.lr
        try:
            history.losses.append(engine.run_epoch(epoch))
        except Diverged as bad:
            done = replace(loop.sync(), losses=list(history.losses))
            raise DivergenceError(epoch, done, bad.value, engine.last_finite, loop.epochs) from None
        except Interrupted:
            raise TrainingInterrupted(epoch, loop.sync(), loop.epochs) from None
        history.lrs.append(rate)
        for cb, end_epoch in hooks.end:
            try:
                stop = end_epoch(epoch, loop.sync() if cb.reads_history else history)
            except Exception as exc:
                named(cb, "on_epoch_end", exc)
                raise
            if stop or history.stop_requested:
                history.stopped_epoch = epoch
        if history.stop_requested:  # asked in a step hook, with no epoch-end hook after it
            history.stopped_epoch = epoch
        if history.stopped_epoch == epoch:
            break


def _begin(loop: Loop) -> None:
    """Every ``on_train_begin``, then what they deferred (a resume): ends the begun on error."""
    begun: list[Callback] = []
    try:
        for cb in loop.callbacks:
            _call_each([cb], "on_train_begin")
            begun.append(cb)
        for deferred in loop.deferred:
            deferred()
    except BaseException as exc:
        loop.failed = exc
        _call_each(begun[::-1], "on_train_end", loop.history)
        raise


def _call_each(callbacks: Sequence[Callback], hook: str, *arguments: object) -> None:
    """Call ``hook`` of every callback, naming the one that raises."""
    for cb in callbacks:
        try:
            getattr(cb, hook)(*arguments)
        except Exception as exc:
            named(cb, hook, exc)
            raise


def _watching(watchers: list[Any]) -> Any:
    """One context entering every watcher of the last forward pass."""
    if len(watchers) == 1:
        return watchers[0]
    stack = ExitStack()

    class _All:
        def __enter__(self) -> None:
            for w in watchers:
                stack.enter_context(w)

        def __exit__(self, *exc: object) -> None:
            stack.close()

    return _All()


def _placed(device: torch.device, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Data detached (the user's tensors never collect a ``.grad``) and on ``device``."""
    with sanctioned_sync():
        return to_device(inputs.detach(), device), to_device(targets.detach(), device)
