"""What every step engine shares: the run it serves, its batches, and its signals.

An engine owns one path's inner loop (see :mod:`gradbasics.engines`). train_loop builds a
:class:`Run` once, after every argument is checked, and asks the chosen engine for one
epoch at a time; the engine answers with the epoch's mean loss or raises
:class:`Diverged` (no bad update applied) or :class:`Interrupted` (between two steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from gradbasics._device import to_device
from gradbasics._interrupts import DeferredInterrupt
from gradbasics.callbacks._chain import named
from gradbasics.callbacks.base import Step
from gradbasics.data import LossFn, check_loss_value, loader_batch
from gradbasics.steps import (
    legacy_data_step,
    legacy_update,
    manual_sgd_step,
    sgd_update,
    use_foreach,
)

__all__ = ["Diverged", "Engine", "Interrupted", "Run", "UpdateRule", "update_and_clear"]

UpdateRule = Callable[[Sequence[Tensor], float], None]
"""An update rule: ``update(params, lr)`` changes the parameters in place from ``p.grad``."""

Finish = Callable[[Tensor | None], None]


class Diverged(Exception):
    """A loss was NaN or infinite; its update (and every later one) was not applied."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


class Interrupted(Exception):
    """Ctrl-C arrived; the engine stopped between two complete steps."""


@dataclass
class Run:
    """Everything an engine needs, checked and placed by train_loop before the first step.

    Attributes:
        model: The model called for the forward pass (a DDP wrapper in distributed runs).
        params: The trainable parameters.
        loss_fn: The checked loss function.
        x: All inputs, on the model's device: ``(N, ...)`` (empty with a loader).
        y: All targets, on the model's device: ``(N, ...)`` (empty with a loader).
        size: Rows per batch (``N`` for full batches).
        sizes: Rows in each batch of an epoch, in order (empty with a loader).
        generator: The CPU generator for the permutations (None: the global one).
        optimizer: The optimizer, or None when ``update`` is used with a learning rate.
        update: The update rule used with ``lr``.
        lr: The learning rate (0.0 with an optimizer); a schedule changes it between epochs.
        interrupts: The deferred Ctrl-C of this run.
        loader: Batches ``(inputs, targets)`` to iterate each epoch instead of ``x``, ``y``.
        watch: Entered around the forward pass of each epoch's last batch, or None.
        before: The callbacks' ``on_before_update(step)`` hooks, in order.
        after: The callbacks' ``on_after_update(step)`` hooks, in order.
        accumulate: Batches whose gradients make one update (1: every batch).
        autocast: Makes the context each forward pass and loss run under, or None.
        scaler: A ``torch.amp.GradScaler`` for backward and the optimizer's step, or None.
    """

    model: nn.Module
    params: list[Tensor]
    loss_fn: LossFn
    x: Tensor
    y: Tensor
    size: int
    sizes: list[int]
    generator: torch.Generator | None
    optimizer: torch.optim.Optimizer | None
    update: UpdateRule
    lr: float
    interrupts: DeferredInterrupt
    loader: Iterable[tuple[Tensor, Tensor]] | None = None
    watch: AbstractContextManager[Any] | None = None
    before: list[Callable[[Step], Any]] = field(default_factory=list)
    after: list[Callable[[Step], Any]] = field(default_factory=list)
    accumulate: int = 1
    autocast: Callable[[], AbstractContextManager[Any]] | None = None
    scaler: Any = None

    @property
    def hooked(self) -> bool:
        """Whether a callback runs in every step (then each step builds a :class:`Step`)."""
        return bool(self.before or self.after)

    @property
    def rows(self) -> int:
        """The number of rows ``N`` (of the tensors; 0 with a loader)."""
        return int(self.x.shape[0])

    @property
    def device(self) -> torch.device:
        """The model's (and the data's) device."""
        return self.x.device

    def permutation(self) -> Tensor:
        """Draw this epoch's row order on the CPU generator, on the data's device: ``(N,)``."""
        return to_device(torch.randperm(self.rows, generator=self.generator), self.device)

    def epoch_batches(self) -> Iterable[tuple[Tensor, Tensor, bool]]:
        """This epoch's batches, each with whether it is the last (from tensors or a loader).

        From tensors: all rows in order, or a fresh permutation cut in batches, each
        gathered (``index_select``) only when the step asks for it, so an epoch holds one
        batch at a time and it is still in cache for its forward pass.
        """
        if self.loader is None:
            if self.size == self.rows:  # the common case, without a generator's cost
                return ((self.x, self.y, True),)
            chunks = self.permutation().split(self.size)  # views of one (N,) permutation
            last = len(chunks) - 1
            x, y = self.x, self.y
            return (
                (x.index_select(0, i), y.index_select(0, i), b == last)
                for b, i in enumerate(chunks)
            )
        return self._from_loader(self.loader)

    def _from_loader(self, loader: Iterable[object]) -> Iterator[tuple[Tensor, Tensor, bool]]:
        it = iter(loader)
        ahead = next(it, None)
        while ahead is not None:
            current, ahead = ahead, next(it, None)
            yield (*loader_batch(current, self.device), ahead is None)

    def mean_loss(self, values: Sequence[float], weights: Sequence[int] | None = None) -> float:
        """The epoch's mean per-sample loss from batch means weighted by their rows."""
        if len(values) == 1:
            return values[0]
        w = self.sizes if weights is None else weights
        return sum(v * n for v, n in zip(values, w, strict=True)) / sum(w)


def update_and_clear(run: Run) -> Finish:
    """Return ``finish(mask)``: apply the update, clear the gradients.

    ``mask`` (a 0-d bool tensor or None) masks the built-in rules' update. The function is
    chosen once, so a step pays for no dispatch of its own; it reads ``run.lr`` at each
    call, so a schedule may change it between epochs.
    """
    params, update = run.params, run.update
    if run.optimizer is not None:
        opt, scaler = run.optimizer, run.scaler
        if scaler is not None:

            def finish_scaled(mask: Tensor | None) -> None:
                scaler.step(opt)  # skipped when the unscaled gradients are not finite
                scaler.update()
                opt.zero_grad(set_to_none=True)

            return finish_scaled

        def finish(mask: Tensor | None) -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)

        return finish
    if update is manual_sgd_step:
        foreach = use_foreach(params)

        def finish_sgd(mask: Tensor | None) -> None:
            sgd_update(params, run.lr, mask, foreach=foreach)  # checked once, by train_loop
            for p in params:
                p.grad = None

        return finish_sgd

    def finish_rule(mask: Tensor | None) -> None:
        if update is legacy_data_step:
            legacy_update(params, run.lr, mask)
        else:
            update(params, run.lr)
        for p in params:
            p.grad = None

    return finish_rule


class Engine:
    """The interface every engine implements, with the parts they share.

    Attributes:
        serves: What the engine can serve of a callback (its step hooks, a learning rate
            that changes between epochs, whole batches); a run whose callbacks need more
            is refused before anything changes.
        run: The run this engine serves.
        last_finite: The last finite batch loss seen (for :class:`DivergenceError`).
    """

    serves: ClassVar[frozenset[str]] = frozenset(
        {"on_before_update", "on_after_update", "lr_change", "whole_batches", "autocast"}
    )

    def __init__(self, run: Run, last_finite: float | None) -> None:
        self.run = run
        self.last_finite = last_finite
        self.finish = update_and_clear(run)
        self._first = True

    def finish_step(self, mask: Tensor | None, step: Step) -> None:
        """The callbacks' step hooks around :attr:`finish` (the chain built once)."""
        hook: Callable[[Step], Any] | None = None
        if self.run.scaler is not None:  # the hooks see the true gradients
            self.run.scaler.unscale_(self.run.optimizer)
        try:
            for hook in self.run.before:
                hook(step)
            hook = None
            self.finish(mask)
            for hook in self.run.after:
                hook(step)
        except Exception as exc:  # name the callback whose hook raised
            where = getattr(hook, "__self__", None)
            if where is not None:
                named(where, getattr(hook, "__name__", "hook"), exc)
            raise

    def run_epoch(self, epoch: int) -> float:
        """Run every step of one epoch and return its mean per-sample loss."""
        raise NotImplementedError

    def forward(self, xb: Tensor, last: bool) -> Tensor:
        """The forward pass, watched (``run.watch``) when it is the epoch's last."""
        watch = self.run.watch
        if watch is not None and last:
            with watch:
                return self.run.model(xb)  # type: ignore[no-any-return]
        return self.run.model(xb)  # type: ignore[no-any-return]

    def forward_loss(self, xb: Tensor, yb: Tensor, last: bool) -> tuple[Tensor, Tensor]:
        """The forward pass and the loss, under ``run.autocast`` when it is set."""
        if self.run.autocast is None:
            out = self.forward(xb, last)
            return out, self.run.loss_fn(out, yb)
        with self.run.autocast():
            out = self.forward(xb, last)
            return out, self.run.loss_fn(out, yb)

    def first_step(self, loss: Tensor | None) -> None:
        """Before the first backward: check the loss, then clear stale gradients.

        Checks and clearing wait until the first loss is known to be valid, so a bad
        ``loss_fn`` changes nothing; gradients left from before would leak into the step.
        """
        if not self._first:
            return
        if loss is not None:
            check_loss_value(loss)
        for p in self.run.params:
            p.grad = None
        if self.run.optimizer is not None:
            self.run.optimizer.zero_grad(set_to_none=True)
        self._first = False

    def check_interrupt(self) -> None:
        """Raise :class:`Interrupted` when Ctrl-C arrived (only between two complete steps)."""
        if self.run.interrupts.pending:
            raise Interrupted
