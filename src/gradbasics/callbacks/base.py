"""The callback protocol: the hooks train_loop calls, and the loop they see.

A feature of :func:`~gradbasics.train_loop` is one :class:`Callback`: it checks its own
arguments when built, acts through hooks, names the settings a resumed run must share
(:meth:`Callback.settings`) and saves its own state (:meth:`Callback.state_dict`). The
loop, its engines and the checkpoint code name no feature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from gradbasics.history import TrainHistory

__all__ = ["Callback", "Loop", "Step"]


class Step(NamedTuple):
    """One training step, as the step hooks see it (gradients ready, before the update).

    Attributes:
        batch: The batch's 0-based index in its epoch.
        inputs: The batch's inputs on the model's device: ``(B, ...)``.
        targets: The batch's targets: ``(B, ...)``.
        outputs: The model's outputs for ``inputs`` (before the update; part of the graph
            that ``backward`` already freed: read them, do not backpropagate again).
        loss: The batch's mean loss, a 0-d tensor.
        last: Whether it is the epoch's last batch.
    """

    batch: int
    inputs: Tensor
    targets: Tensor
    outputs: Tensor
    loss: Tensor
    last: bool


class Loop:
    """The running :func:`~gradbasics.train_loop`, as its callbacks see it (``self.loop``).

    Attributes:
        model: The model being trained (unwrapped from DDP).
        params: Its trainable parameters, the ones the update changes.
        optimizer: The ``torch.optim.Optimizer``, or None when ``lr=`` drives an update rule.
        loss_fn: The loss ``loss_fn(outputs, targets)``.
        history: The run's :class:`~gradbasics.TrainHistory` (resume replaces it before the
            first epoch: read it through the loop).
        epochs: The number of epochs the run was asked for.
        start: The first epoch this call trains (> 0 after a resume).
        epoch: The current 0-based epoch.
        device: The model's device.
        generator: The CPU generator that draws the batches (None: the global one).
        lead: False on every distributed rank but 0 (which records, reports and saves).
        callbacks: Every callback of the run, in the order their hooks are called.
        settings: The run's own settings (update rule, rate, rows, batch size, loss, data).
        inputs: The training inputs on the model's device (None with a DataLoader).
        last_rows: The rows of an epoch's last batch (with tensors).
        failed: The exception ending the run, during ``on_train_end``; else None.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        params: list[Tensor],
        optimizer: torch.optim.Optimizer | None,
        update: Callable[[Sequence[Tensor], float], None],
        lr: float,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        epochs: int,
        device: torch.device,
        generator: torch.Generator | None,
        lead: bool,
        callbacks: list[Callback],
        settings: dict[str, Any],
    ) -> None:
        self.model, self.params, self.optimizer, self.update = model, params, optimizer, update
        self.loss_fn, self.epochs, self.device, self.generator = loss_fn, epochs, device, generator
        self.lead, self.callbacks, self.settings = lead, callbacks, settings
        self.history = TrainHistory()
        self.start = self.epoch = 0
        self.inputs: Tensor | None = None  # the training inputs on the device (no loader)
        self.last_rows = 0  # rows of an epoch's last batch (tensors only)
        self.failed: BaseException | None = None
        # optimizer values a callback moves: state, not settings a resume compares
        changes_lr = any("lr_change" in cb.requires for cb in callbacks)
        self.volatile: set[str] = {"lr", "initial_lr"} if changes_lr else set()
        self.watchers: list[AbstractContextManager[Any]] = []
        self.deferred: list[Callable[[], None]] = []
        # Set by a callback that requires "autocast": a context for every forward pass and
        # loss, and a gradient scaler that scales backward and steps the optimizer.
        self.autocast: Callable[[], AbstractContextManager[Any]] | None = None
        self.scaler: Any = None
        self._lr = lr
        self._run: Any = None  # the engine's run, once built; it reads the rate per step
        self._stale: list[Callable[[TrainHistory], None]] = []
        for cb in callbacks:
            cb.loop = self

    @property
    def lr(self) -> float:
        """The current learning rate (the optimizer's first group's, or ``lr=``'s).

        Setting it changes the rate of the next step: every group of the optimizer, or the
        rate given to the update rule. A callback that sets it declares
        ``requires = frozenset({"lr_change"})``: the run is then checked for it up front,
        and the rate is state that a checkpoint keeps, not a setting a resume compares.
        """
        if self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        if not any("lr_change" in cb.requires for cb in self.callbacks):
            raise RuntimeError(
                "self.loop.lr was set by a callback that does not declare it: give the "
                "callback class requires = frozenset({'lr_change'}), so that the run is "
                "checked for it (graph=True cannot change its rate) and a resume treats "
                "the rate as state."
            )
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = value
            return
        self._lr = value
        if self._run is not None:
            self._run.lr = value

    def attach(self, run: Any) -> None:
        """Let the engine's run read the rate this loop's ``lr`` sets (train_loop calls it)."""
        self._run = run

    def stop(self) -> None:
        """Stop the run after the current epoch (its hooks and checkpoint complete first)."""
        self.history.stop()

    def latest(self, name: str) -> float:
        """The latest recorded value of ``name``: ``"loss"``, ``"val_loss"`` or a metric."""
        history = self.history
        if name == "loss":
            return history.losses[-1]
        if name == "val_loss":
            return history.val_losses[-1]
        return history.metrics[name][-1]

    def recorded(self) -> list[str]:
        """The names this run records each epoch (what a monitor may watch)."""
        return ["loss", *(n for cb in self.callbacks for n in cb.records)]

    def watch_last_forward(self, context: AbstractContextManager[Any]) -> None:
        """Enter ``context`` around the forward pass of every epoch's last training batch.

        Call it from ``on_train_begin``. It is how a forward hook (activation recording)
        sees a batch without a cost on every step; under ``graph=True`` the captured
        forward pass runs it once, and its outputs are refreshed by every replay.
        """
        self.watchers.append(context)

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` once every callback's ``on_train_begin`` has run (and checked).

        A resume restores the run this way, so that nothing changes before every check.
        """
        self.deferred.append(action)

    def keep_lazily(self, publish: Callable[[TrainHistory], None]) -> None:
        """Register ``publish(history)``: brings lazily kept fields into the history.

        The loop calls it before anyone reads the history (a callback that reads it, a
        checkpoint, an error, the end of the run).
        """
        self._stale.append(publish)

    def sync(self) -> TrainHistory:
        """Bring every lazily kept field into the history, and return it."""
        for publish in self._stale:
            publish(self.history)
        return self.history


class Callback:
    """Base class of train_loop's callbacks: every hook optional, its own state and settings.

    ``train_loop`` sets ``self.loop`` (a :class:`Loop`) before the first hook, then calls,
    in ``order`` (lower first; the built-in features run at 10-45, your callbacks at 50 by
    default, then the checkpoint at 80, the progress bar at 90 and plain functions at 95;
    ``on_train_end`` in the reverse order):

    - ``on_train_begin()``: check and set up (nothing may change yet: a resume restores
      the model, the history and every ``load_state_dict`` after it);
    - ``on_epoch_begin(epoch)``: before the epoch's first step;
    - ``on_before_update(step)``: each step, gradients ready, before the update (clip or
      inspect ``p.grad`` of ``self.loop.params``);
    - ``on_after_update(step)``: each step, after the update and the cleared gradients;
    - ``on_epoch_end(epoch, history)``: after the epoch's steps; return True (or call
      ``self.loop.stop()``) to stop the run;
    - ``on_train_end(history)``: once at the end, also when an error ends the run
      (``self.loop.failed`` holds it then).

    A run that uses no step hook runs the plain step: they cost nothing unless used.

    Attributes:
        order: When this callback's hooks run among the others'.
        records: The names of the values it appends to the history each epoch (what
            an early stopping or a scheduler may monitor).
        requires: What it needs of an engine beyond its hooks (``"lr_change"``,
            ``"whole_batches"``); an engine that cannot serve it is refused up front.
        reads_history: Whether its ``on_epoch_end`` reads the lazily kept parts of the
            history (recorded activations): they are brought up to date before it.
        may_join: Whether it may join, on resume, a run that did not have it (recording
            may: the epochs before it are NaN); by default that is refused.
    """

    order: ClassVar[int] = 50
    records: tuple[str, ...] = ()
    requires: ClassVar[frozenset[str]] = frozenset()
    reads_history: ClassVar[bool] = True
    may_join: ClassVar[bool] = False
    loop: Loop

    @property
    def key(self) -> str:
        """The name its settings and state are saved under (unique in a run)."""
        return str(self.__dict__.get("_key", type(self).__name__))

    @key.setter
    def key(self, value: str) -> None:
        self.__dict__["_key"] = value

    def settings(self) -> dict[str, Any]:
        """Plain values a resumed run must share (empty: none)."""
        return {}

    def state_dict(self) -> dict[str, Any] | None:
        """Its state for a checkpoint: plain values and tensors (None: no state)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state :meth:`state_dict` gave (checked by :meth:`check_state`)."""

    def check_state(self, state: object) -> str | None:
        """Why ``state`` cannot be loaded, or None when it can (called before any change)."""
        return None if isinstance(state, dict) else f"expected a dict, got {type(state).__name__}"

    def on_train_begin(self) -> None:
        """Check and set up, before anything changes."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Before epoch ``epoch``'s first step."""

    def on_before_update(self, step: Step) -> None:
        """Gradients ready, before the update."""

    def on_after_update(self, step: Step) -> None:
        """After the update and the cleared gradients."""

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> bool | None:
        """After epoch ``epoch``; return True to stop the run."""
        return None

    def on_train_end(self, history: TrainHistory) -> None:
        """Once, at the end of the run (also after an error: see ``self.loop.failed``)."""


HOOKS = (
    "on_train_begin",
    "on_epoch_begin",
    "on_before_update",
    "on_after_update",
    "on_epoch_end",
    "on_train_end",
)
STEP_HOOKS = ("on_before_update", "on_after_update")


def uses(callback: Callback, hook: str) -> bool:
    """Whether ``callback`` overrides ``hook`` (an unused hook is never called).

    A callback whose class overrides a hook it does not need in this run (a per-epoch
    schedule has no step to take after each update) lists it in ``unused_hooks``.
    """
    if hook in getattr(callback, "unused_hooks", ()):
        return False
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)


def needs(callback: Callback) -> set[str]:
    """What ``callback`` asks of an engine: its step hooks and its ``requires``."""
    return {h for h in STEP_HOOKS if uses(callback, h)} | set(callback.requires)


def hooks_of(callbacks: Sequence[Callback], hook: str) -> list[Callable[..., Any]]:
    """The bound ``hook`` of every callback that uses it, in order."""
    return [getattr(cb, hook) for cb in callbacks if uses(cb, hook)]
