"""RMSprop: divide by the root of a moving average of squared gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from gradbasics.rules._common import (
    Rule,
    Tensors,
    advance,
    check_bool,
    check_nonneg,
    check_positive,
    check_unit,
    dispatch,
    new_steps,
    pick,
    with_grads,
)
from gradbasics.rules._grouping import check_count, real, refuse_sparse

__all__ = ["RMSprop", "RMSpropState", "init_rmsprop", "rmsprop_step"]


class RMSpropState(NamedTuple):
    r"""RMSprop's state per parameter.

    Attributes:
        square_avg: :math:`v`, the moving average of :math:`g^2`.
        momentum_buffer: :math:`b` (with momentum; else empty).
        grad_avg: :math:`\bar g`, the moving average of :math:`g` (centered; else empty).
        steps: Steps taken per parameter, ``(n,)`` on the CPU.
    """

    square_avg: list[Tensor]
    momentum_buffer: list[Tensor]
    grad_avg: list[Tensor]
    steps: Tensor


class _RmspropArgs(NamedTuple):
    """The step's hyperparameters, passed as one."""

    lr: float
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    centered: bool
    maximize: bool


def init_rmsprop(
    params: Sequence[Tensor], *, momentum: float = 0.0, centered: bool = False
) -> RMSpropState:
    """Return the zero state of :func:`rmsprop_step` for ``params``."""

    def zeros() -> list[Tensor]:
        return [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]

    return RMSpropState(
        zeros(),
        zeros() if momentum > 0 else [],
        zeros() if centered else [],
        new_steps(len(params)),
    )


def rmsprop_step(
    params: Sequence[Tensor],
    state: RMSpropState,
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    foreach: bool | None = None,
) -> None:
    r"""Apply one RMSprop step in place; bit-identical to ``torch.optim.RMSprop``.

    For each parameter :math:`\theta` with gradient :math:`g`:

    .. math::

        g &\leftarrow g + \lambda\theta, \qquad
        v \leftarrow \alpha v + (1 - \alpha) g^2 \\
        d &= \begin{cases} \sqrt{v - \bar g^2} + \epsilon, \quad
            \bar g \leftarrow \bar g + (1 - \alpha)(g - \bar g) & \text{centered} \\
            \sqrt{v} + \epsilon & \text{otherwise} \end{cases} \\
        \theta &\leftarrow \begin{cases} \theta - \eta\, b, \quad b \leftarrow \mu b + g / d
            & \mu > 0 \\ \theta - \eta\, g / d & \text{otherwise} \end{cases}

    As torch's, the ``foreach`` path runs per (device, dtype) group, and a complex
    parameter is updated through its ``torch.view_as_real`` view. Sparse gradients are
    refused (``RuntimeError``).

    Args:
        params: The parameters; those without ``.grad`` are skipped.
        state: From :func:`init_rmsprop` (with the same ``momentum`` and ``centered``).
        lr: The learning rate :math:`\eta`.
        alpha: Smoothing constant :math:`\alpha`.
        eps: :math:`\epsilon`.
        weight_decay: :math:`\lambda`.
        momentum: :math:`\mu`.
        centered: Divide by the estimated variance instead of the raw second moment.
        maximize: Ascend instead of descend.
        foreach: Follow torch's multi-tensor path op for op (True) or its single-tensor
            path (False); None picks as torch does (multi-tensor when all are on CUDA).

    Example:
        >>> import torch
        >>> from gradbasics.rules import init_rmsprop, rmsprop_step
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> state = init_rmsprop([w])
        >>> w.grad = torch.tensor([1.0])
        >>> rmsprop_step([w], state, lr=0.01)  # 1 - 0.01 / sqrt(0.01)
        >>> w
        tensor([0.9000], requires_grad=True)
    """
    check_count(params, state.steps, "rmsprop_step")
    idx, ps, gs = with_grads(params)
    if not ps:
        return
    refuse_sparse(idx, gs, "rules.RMSprop")
    advance(state.steps, idx)
    h = _RmspropArgs(
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
        maximize=maximize,
    )
    dispatch(foreach, _rmsprop_each, _rmsprop_foreach, idx, ps, gs, state=state, h=h)


def _rmsprop_each(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    *,
    state: RMSpropState,
    h: _RmspropArgs,
) -> None:
    """Torch's single-tensor path, op for op."""
    lr, alpha, eps, weight_decay, momentum, centered, maximize = h
    for i, p, g in zip(idx, ps, gs, strict=True):
        grad = -g if maximize else g
        if weight_decay != 0:
            grad = grad.add(p, alpha=weight_decay)
        v = state.square_avg[i]
        if p.is_complex():  # after the decay, as torch
            p, grad, v = real([p, grad, v])
        v.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if centered:
            mean = real([state.grad_avg[i]])[0]
            mean.lerp_(grad, 1 - alpha)
            avg = v.addcmul(mean, mean, value=-1).sqrt_()
        else:
            avg = v.sqrt()
        avg = avg.add_(eps)
        if momentum > 0:
            buf = real([state.momentum_buffer[i]])[0]
            buf.mul_(momentum).addcdiv_(grad, avg)
            p.add_(buf, alpha=-lr)
        else:
            p.addcdiv_(grad, avg, value=-lr)


def _rmsprop_foreach(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    *,
    state: RMSpropState,
    h: _RmspropArgs,
) -> None:
    """Torch's multi-tensor (``foreach``) path, op for op."""
    lr, alpha, eps, weight_decay, momentum, centered, maximize = h
    square_avgs = real(pick(state.square_avg, idx))
    ps, gs = real(ps), real(gs)  # before the decay, as torch
    grads: Tensors = torch._foreach_neg(gs) if maximize else gs
    if weight_decay != 0 and maximize:  # in place on the negated copy, as torch
        torch._foreach_add_(grads, ps, alpha=weight_decay)
    elif weight_decay != 0:
        grads = torch._foreach_add(grads, ps, alpha=weight_decay)
    torch._foreach_mul_(square_avgs, alpha)
    torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
    if centered:
        grad_avgs = real(pick(state.grad_avg, idx))
        torch._foreach_lerp_(grad_avgs, grads, 1 - alpha)
        avg = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
        torch._foreach_sqrt_(avg)
    else:
        avg = torch._foreach_sqrt(square_avgs)
    torch._foreach_add_(avg, eps)
    if momentum > 0:
        bufs = real(pick(state.momentum_buffer, idx))
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_addcdiv_(bufs, grads, avg)
        torch._foreach_add_(ps, bufs, alpha=-lr)
    else:
        torch._foreach_addcdiv_(ps, grads, avg, value=-lr)


class RMSprop(Rule):
    r"""RMSprop as a rule object; equals ``torch.optim.RMSprop`` (see :func:`rmsprop_step`).

    Arguments and defaults are those of ``torch.optim.RMSprop``; the learning rate is
    given separately.

    Args:
        alpha: Smoothing constant :math:`\alpha` in [0, 1) (1 would never learn).
        eps: :math:`\epsilon` > 0.
        weight_decay: L2 penalty :math:`\lambda` >= 0.
        momentum: Momentum :math:`\mu` in [0, 1].
        centered: Centered RMSprop.
        maximize: Ascend instead of descend.
        foreach: Which of torch's paths to equal op for op (None: as torch picks).

    Raises:
        TypeError: If a number or flag has the wrong type.
        ValueError: If a hyperparameter is out of range.

    Example:
        >>> import torch
        >>> from gradbasics import rules
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> w.grad = torch.tensor([1.0])
        >>> rules.RMSprop()([w], 0.01)
        >>> w
        tensor([0.9000], requires_grad=True)
    """

    state_type = RMSpropState
    state: RMSpropState | None

    def __init__(
        self,
        *,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(foreach)
        self.hyper = {
            "alpha": check_unit(alpha, "alpha"),
            "eps": check_positive(eps, "eps"),
            "weight_decay": check_nonneg(weight_decay, "weight_decay"),
            "momentum": check_unit(momentum, "momentum", closed=True),
            "centered": check_bool(centered, "centered"),
            "maximize": check_bool(maximize, "maximize"),
        }

    def init(self, params: Sequence[Tensor]) -> RMSpropState:
        """Return a fresh state for ``params``."""
        m, c = self.hyper["momentum"], self.hyper["centered"]
        return init_rmsprop(params, momentum=float(m), centered=bool(c))  # type: ignore[arg-type]

    def apply(self, params: list[Tensor], lr: float) -> None:
        """One step on checked parameters."""
        rmsprop_step(params, self.state, lr=lr, foreach=self.foreach, **self.hyper)  # type: ignore[arg-type]
