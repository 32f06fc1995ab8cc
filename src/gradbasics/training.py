"""The training loop: forward, loss, backward, update, clear gradients, record, report."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

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
from gradbasics.data import LossFn, check_loss_fn, check_loss_value
from gradbasics.recording import ActivationRecorder
from gradbasics.steps import manual_sgd_step, sgd_update

__all__ = ["Callback", "DivergenceError", "TrainHistory", "UpdateRule", "train_loop"]

UpdateRule = Callable[[Sequence[Tensor], float], None]
"""An update rule: ``update(params, lr)`` changes the parameters in place from ``p.grad``."""


@dataclass
class TrainHistory:
    """What :func:`train_loop` keeps of a run.

    Attributes:
        losses: One float per completed epoch: the epoch's mean per-sample loss, each
            batch's loss taken before its update.
        activations: With ``record=True``, one CPU tensor per recorded name, of shape
            ``(epochs, *activation_shape)``: row ``e`` holds the activation of epoch
            ``e``'s last forward pass, before its update. Empty otherwise.
    """

    losses: list[float] = field(default_factory=list)
    activations: dict[str, Tensor] = field(default_factory=dict)


Callback = Callable[[int, TrainHistory], Any]
"""Called as ``callback(epoch, history)`` at the end of each epoch (``epoch`` is 0-based)."""


class DivergenceError(FloatingPointError):
    """Raised by :func:`train_loop` when a loss is NaN or infinite.

    The update from the non-finite loss is never applied, so the parameters keep the
    values of the last finite step.

    Attributes:
        epoch: The 0-based epoch in which the loss became non-finite.
        history: The history of the completed epochs before it.
        loss: The non-finite loss value.
        last_finite_loss: The last finite batch loss seen, or None if there was none.
    """

    def __init__(
        self, epoch: int, history: TrainHistory, loss: float, last_finite_loss: float | None
    ) -> None:
        self.epoch = epoch
        self.history = history
        self.loss = loss
        self.last_finite_loss = last_finite_loss
        last = "none" if last_finite_loss is None else f"{last_finite_loss:.6g}"
        super().__init__(
            f"Training diverged at epoch {epoch}: the loss became {loss}; the last finite "
            f"loss was {last}. The update from the non-finite loss was not applied. "
            "Try a smaller learning rate."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.epoch, self.history, self.loss, self.last_finite_loss)


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
    :class:`DivergenceError` before its backward pass, so its update is never applied.

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

    Returns:
        The :class:`TrainHistory` of the run.

    Raises:
        TypeError: On arguments of the wrong type or dtype.
        ValueError: On invalid values (see the argument list); nothing is changed then.
        DivergenceError: When a loss is NaN or infinite.
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
    x, y = check_data(inputs, targets, model_dtype=dtype, float_targets=loss_fn is None)
    n = x.shape[0]
    size = check_batch_size(batch_size, n)
    gen = check_generator(generator)
    hooks = _check_callbacks(callbacks)
    bar = _progress_bar(n_epochs) if progress else None

    x, y = x.to(device), y.to(device)  # once, not per step
    full_batch = size is None or size == n
    recorder = ActivationRecorder(model) if record else None
    rows: dict[str, Tensor] = {}
    history = TrainHistory()

    def clear_grads() -> None:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        else:
            for p in params:
                p.grad = None

    clear_grads()  # stale gradients would otherwise leak into the first step
    last_finite: float | None = None
    try:
        for epoch in range(n_epochs):
            if full_batch:
                batches: Sequence[tuple[Tensor, Tensor]] = ((x, y),)
            else:
                assert size is not None
                perm = torch.randperm(n, generator=gen).to(device)  # (N,) drawn on the CPU
                batches = [(x.index_select(0, i), y.index_select(0, i)) for i in perm.split(size)]
            total = 0.0
            for b, (xb, yb) in enumerate(batches):
                if recorder is not None and b == len(batches) - 1:
                    with recorder:
                        out = model(xb)
                else:
                    out = model(xb)
                loss = check_loss_value(fn(out, yb))
                value = loss.item()
                if not math.isfinite(value):
                    done = {k: v[:epoch] for k, v in rows.items()}
                    raise DivergenceError(
                        epoch, TrainHistory(list(history.losses), done), value, last_finite
                    )
                last_finite = value
                loss.backward()
                if optimizer is not None:
                    optimizer.step()
                elif update is manual_sgd_step:
                    sgd_update(params, rate)  # already checked: skip the per-step checks
                else:
                    update(params, rate)
                clear_grads()
                total += value * xb.shape[0]
            history.losses.append(value if len(batches) == 1 else total / n)
            if recorder is not None:
                for name, act in recorder.activations.items():
                    if name not in rows:
                        rows[name] = torch.empty((n_epochs, *act.shape), dtype=act.dtype)
                    rows[name][epoch].copy_(act)
                history.activations = {k: v[: epoch + 1] for k, v in rows.items()}
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history.losses[-1]:.4g}", refresh=False)
            for cb in hooks:
                cb(epoch, history)
    finally:
        if bar is not None:
            bar.close()
    return history
