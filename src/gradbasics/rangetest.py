"""The learning-rate range test: a few steps at growing rates, then everything put back."""

from __future__ import annotations

import copy
import itertools
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradbasics import _preflight as preflight
from gradbasics._interrupts import DeferredInterrupt
from gradbasics._trainargs import check_source
from gradbasics._validate import (
    _describe,
    check_generator,
    check_int,
    check_model,
    model_device_dtype,
    modes,
    restore_modes,
    trainable_params,
)
from gradbasics.data import LossFn, check_loss_fn, check_loss_value
from gradbasics.engines.base import Run
from gradbasics.steps import manual_sgd_step
from gradbasics.training import _placed

__all__ = ["LRFindResult", "lr_find"]

BETA = 0.98
r"""The smoothing factor :math:`\beta` of :attr:`LRFindResult.smoothed` (fastai's)."""
STOP_FACTOR = 4.0
"""The test stops after a loss above this many times the lowest so far."""
ROUNDING = 1e-12
"""A fall of the smoothed loss by less than this share of it is rounding, not descent."""


@dataclass(frozen=True)
class LRFindResult:
    r"""What :func:`lr_find` measured, one entry per step taken.

    Attributes:
        lrs: The rate of each step, :math:`\eta_i`.
        losses: Each step's batch loss :math:`L_i`, taken before its update.
        smoothed: The debiased moving average :math:`s_i` of the losses.
        suggestion: The rate at the steepest descent of ``smoothed`` (see
            :func:`lr_find`), or None when the smoothed loss never falls.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None


def lr_find(
    model: nn.Module,
    inputs: Tensor | Iterable[Any],
    targets: Tensor | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    batch_size: int | None = None,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
) -> LRFindResult:
    r"""Run the learning-rate range test (Smith, 2015) and suggest a rate; change nothing.

    Step :math:`i = 0, \dots, T-1` (``T = steps``) trains on one batch at a rate growing
    geometrically from ``start_lr`` to ``end_lr``:

    .. math::

        \eta_i = \eta_{\text{start}}
            \left(\frac{\eta_{\text{end}}}{\eta_{\text{start}}}\right)^{i/(T-1)}

    on the batches :func:`~gradbasics.train_loop` would draw with the same arguments (a
    new epoch's permutation after the last batch), in train mode, from no gradient (any
    left by an earlier backward are set aside and put back): plain SGD
    :math:`\theta \leftarrow \theta - \eta_i \nabla_\theta L_i`, or ``optimizer.step()``
    with every group's ``lr`` set to :math:`\eta_i`. It stops after the first step whose
    loss is NaN, infinite or above ``4`` times the lowest so far (that loss is kept, its
    update is not made). The losses are smoothed as fastai does, with
    :math:`\beta = 0.98` and a bias correction:

    .. math::

        a_i = \beta\, a_{i-1} + (1 - \beta) L_i, \quad a_{-1} = 0, \qquad
        s_i = \frac{a_i}{1 - \beta^{\,i+1}}

    The suggestion is the rate where the smoothed loss falls fastest per unit of
    :math:`\ln \eta` (fastai's default, "steepest"), a rate that still trains well
    below the one where the loss blows up. Like fastai, it skips the first tenth of the
    :math:`n` steps taken, where the average has seen too few losses to be trusted:

    .. math::

        g_i = \frac{s_{i+1} - s_i}{\ln \eta_{i+1} - \ln \eta_i}, \qquad
        \eta^\star = \eta_{i^\star}, \quad
        i^\star = \operatorname*{argmin}_{\lfloor n/10 \rfloor \le i \le n-2} g_i
        \ (\text{over finite } g_i < 0)

    A fall of :math:`s` by less than :math:`10^{-12}` of it is the average's rounding,
    not a descent: a flat curve suggests nothing (None). The data, the loss and class
    targets are checked first as ``train_loop`` checks them (a loader's first batch, a
    forward pass on a sample), and the stop rule needs losses :math:`\ge 0`.

    Afterwards the model (parameters, every buffer, gradients, train/eval modes), the
    optimizer (state and rates), ``generator``, a loader's own generators and the global
    torch RNGs are exactly as before, also on errors.

    Args:
        model: The model; its parameters that require grad are trained.
        inputs: Inputs ``(N, ...)``, or a ``DataLoader`` of ``(inputs, targets)`` batches
            with ``targets`` omitted, as :func:`~gradbasics.train_loop` takes them.
        targets: Targets with ``N`` rows (omitted with a loader).
        start_lr: The first rate, > 0.
        end_lr: The last rate, > ``start_lr``.
        steps: The number of steps :math:`T`, >= 2.
        batch_size: Rows per batch, ``1 <= batch_size <= N``; None for full batches.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch mean (default
            :func:`~gradbasics.mse_loss`).
        optimizer: A ``torch.optim.Optimizer`` over the model's parameters; None for
            plain SGD.
        generator: CPU ``torch.Generator`` for the permutations (default: the global one).

    Returns:
        The :class:`LRFindResult`: rates, raw and smoothed losses, and the suggestion.

    Raises:
        TypeError: On arguments of the wrong type or dtype.
        ValueError: On rates that are not ``0 < start_lr < end_lr`` (finite, with
            ``steps`` distinct rates between them), ``steps`` < 2, bad data or targets, or
            a negative loss; nothing is changed then.

    Example:
        >>> import torch
        >>> from gradbasics import lr_find
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(64, 3)
        >>> y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
        >>> net = torch.nn.Linear(3, 1)
        >>> before = [p.clone() for p in net.parameters()]
        >>> result = lr_find(net, x, y, start_lr=1e-4, end_lr=10.0, steps=50)
        >>> len(result.lrs) < 50, result.losses[-1] > 4 * min(result.losses)  # stopped early
        (True, True)
        >>> 1e-3 < result.suggestion < 1.0
        True
        >>> all(torch.equal(p, q) for p, q in zip(net.parameters(), before))  # unchanged
        True
    """
    check_model(model)
    rates = _rates(start_lr, end_lr, check_int(steps, name="steps", minimum=2))
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {_describe(optimizer)}.")
    params, fn = trainable_params(model), check_loss_fn(loss_fn)
    device, dtype = model_device_dtype(model)
    x, y, size, loader = check_source(inputs, targets, batch_size, dtype, loss_fn is None)
    gen = check_generator(generator)
    seen = preflight.sample(x, y, loader, dtype, loss_fn is None)  # a loader's first batch
    preflight.probe(model, fn, seen, device, {})  # the loss and targets, as train_loop's
    x, y = _placed(device, x, y)
    run = Run(model=model, params=params, loss_fn=fn, x=x, y=y, size=size or x.shape[0],
              sizes=[], generator=gen, optimizer=optimizer, update=manual_sgd_step, lr=0.0,
              interrupts=DeferredInterrupt(), loader=loader)  # fmt: skip
    saved = _Saved(model, optimizer, [*([gen] if gen else []), *preflight.generators(loader)])
    try:
        model.train()
        losses = _ramp(run, rates)
    finally:
        saved.restore()
    smoothed = smooth(losses)
    lrs = rates[: len(losses)]
    return LRFindResult(
        lrs=lrs, losses=losses, smoothed=smoothed, suggestion=steepest(lrs, smoothed)
    )


def _check_rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}.")
    rate = float(value)
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"{name} must be a finite number > 0 (the rates grow "
                         f"geometrically), got {value!r}.")  # fmt: skip
    return rate


def _rates(start_lr: object, end_lr: object, steps: int) -> list[float]:
    r"""The ramp :math:`\eta_0 < \dots < \eta_{T-1}`, refused when it cannot be one."""
    start, end = _check_rate(start_lr, "start_lr"), _check_rate(end_lr, "end_lr")
    if start >= end:
        raise ValueError(f"start_lr must be below end_lr, got start_lr={start_lr!r} and "
                         f"end_lr={end_lr!r}.")  # fmt: skip
    ratio = end / start
    rates = [start * ratio ** (i / (steps - 1)) for i in range(steps)]
    if not math.isfinite(ratio) or any(a >= b for a, b in itertools.pairwise(rates)):
        raise ValueError(
            f"start_lr and end_lr must give {steps} distinct finite rates, got start_lr="
            f"{start_lr!r} and end_lr={end_lr!r} (a ratio of {ratio!r}); take a range of "
            "a few decades."
        )
    return rates


def _batches(run: Run) -> Iterator[tuple[Tensor, Tensor]]:
    """train_loop's batches, epoch after epoch, for as long as the test asks."""
    while True:
        empty = True
        for xb, yb, _ in run.epoch_batches():
            empty = False
            yield xb, yb
        if empty:
            raise ValueError("inputs must give at least one batch, got an empty loader.")


def _ramp(run: Run, rates: Sequence[float]) -> list[float]:
    """One step per rate; stops after a non-finite loss or one above 4x the lowest."""
    losses: list[float] = []
    lowest = math.inf
    for p in run.params:  # gradients left by an earlier backward must not join the first step
        p.grad = None
    for rate, (xb, yb) in zip(rates, _batches(run), strict=False):
        loss = check_loss_value(run.loss_fn(run.model(xb), yb))
        value = float(loss.item())
        if value < 0:
            raise ValueError(
                f"loss_fn must give losses >= 0 for the range test (it stops above 4 times "
                f"the lowest), got {value!r} at step {len(losses)}."
            )
        losses.append(value)
        lowest = min(lowest, value)
        if not math.isfinite(value) or value > STOP_FACTOR * lowest:
            break
        loss.backward()
        if run.optimizer is None:
            manual_sgd_step(run.params, rate)
        else:
            for group in run.optimizer.param_groups:
                group["lr"] = rate
            run.optimizer.step()
        for p in run.params:
            p.grad = None
    return losses


def smooth(losses: Sequence[float], beta: float = BETA) -> list[float]:
    r"""Return the debiased exponential moving average :math:`s_i` of ``losses``."""
    average, out = 0.0, []
    for i, value in enumerate(losses):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta ** (i + 1)))
    return out


def steepest(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    r"""Return :math:`\eta_{i^\star}`, where ``smoothed`` falls fastest per :math:`\ln\eta`."""
    best, where = 0.0, None
    for i in range(len(lrs) // 10, len(lrs) - 1):  # the first tenth: too few losses seen
        fall = smoothed[i] - smoothed[i + 1]
        if not fall > ROUNDING * abs(smoothed[i]):  # a flat curve's rounding is no descent
            continue
        slope = -fall / (math.log(lrs[i + 1]) - math.log(lrs[i]))
        if math.isfinite(slope) and slope < best:
            best, where = slope, i
    return None if where is None else lrs[where]


class _Saved:
    """A copy of everything the test changes, to put back exactly."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        generators: list[torch.Generator],
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.weights = copy.deepcopy(model.state_dict())
        self.buffers = [  # every buffer, also those state_dict leaves out (persistent=False)
            (m, name, None if b is None else b.clone())
            for m in model.modules()
            for name, b in m._buffers.items()
        ]
        self.grads = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
        self.modes = modes(model)
        self.opt_state = None if optimizer is None else copy.deepcopy(optimizer.state_dict())
        self.generators = [(g, g.get_state()) for g in generators]
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        """Put the weights, gradients, modes, optimizer and RNG states back."""
        self.model.load_state_dict(self.weights)
        for module, name, buffer in self.buffers:
            module._buffers[name] = buffer
        for p, grad in self.grads:
            p.grad = grad
        restore_modes(self.modes)
        if self.optimizer is not None and self.opt_state is not None:
            self.optimizer.load_state_dict(self.opt_state)
        for g, state in self.generators:
            g.set_state(state)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
