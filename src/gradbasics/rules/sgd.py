"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""

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
    check_unit,
    dispatch,
    new_steps,
    pick,
    with_grads,
)
from gradbasics.rules._grouping import check_count, refuse_sparse

__all__ = ["SGD", "SGDState", "init_sgd", "sgd_step"]


class SGDState(NamedTuple):
    """SGD's state: a momentum buffer per parameter (None until its first step).

    Attributes:
        momentum_buffer: :math:`b` per parameter, or None before its first step.
        steps: Steps taken per parameter, ``(n,)`` on the CPU.
    """

    momentum_buffer: list[Tensor | None]
    steps: Tensor


class _SgdArgs(NamedTuple):
    """The step's hyperparameters, passed as one."""

    lr: float
    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float
    maximize: bool


def init_sgd(params: Sequence[Tensor]) -> SGDState:
    """Return the empty state of :func:`sgd_step` for ``params``."""
    return SGDState([None] * len(params), new_steps(len(params)))


def sgd_step(
    params: Sequence[Tensor],
    state: SGDState,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    foreach: bool | None = None,
) -> None:
    r"""Apply one SGD step in place; bit-identical to ``torch.optim.SGD``.

    For each parameter :math:`\theta` with gradient :math:`g` (negated with ``maximize``):

    .. math::

        g &\leftarrow g + \lambda \theta \quad (\lambda = \texttt{weight\_decay}) \\
        b &\leftarrow \begin{cases} g & \text{first step} \\
            \mu b + (1 - \tau) g & \text{after} \end{cases} \\
        g &\leftarrow \begin{cases} g + \mu b & \text{nesterov} \\ b & \text{otherwise}
            \end{cases} \qquad (\text{if } \mu \ne 0) \\
        \theta &\leftarrow \theta - \eta\, g

    with :math:`\mu` = ``momentum`` and :math:`\tau` = ``dampening``. Hyperparameters are
    not checked here (the :class:`SGD` object checks them once). The ``foreach`` path
    runs once per (device, dtype) group of the parameters, as torch's. Sparse gradients
    are refused (``RuntimeError``).

    Args:
        params: The parameters; those without ``.grad`` are skipped.
        state: From :func:`init_sgd`; updated in place.
        lr: The learning rate :math:`\eta`.
        momentum: :math:`\mu`.
        dampening: :math:`\tau`.
        nesterov: Use Nesterov momentum.
        weight_decay: :math:`\lambda` (L2 penalty).
        maximize: Ascend instead of descend.
        foreach: Follow torch's multi-tensor path op for op (True) or its single-tensor
            path (False); None picks as torch does (multi-tensor when all are on CUDA).

    Example:
        >>> import torch
        >>> from gradbasics.rules import init_sgd, sgd_step
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> state = init_sgd([w])
        >>> for _ in range(2):
        ...     w.grad = torch.tensor([1.0])
        ...     sgd_step([w], state, lr=0.1, momentum=0.9)
        >>> w  # 1 - 0.1 * 1 - 0.1 * (0.9 + 1)
        tensor([0.7100], requires_grad=True)
    """
    check_count(params, state.steps, "sgd_step")
    idx, ps, gs = with_grads(params)
    if not ps:
        return
    refuse_sparse(idx, gs, "rules.SGD")
    advance(state.steps, idx)
    h = _SgdArgs(
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
        maximize=maximize,
    )
    dispatch(foreach, _sgd_each, _sgd_foreach, idx, ps, gs, state=state, h=h)


def _sgd_each(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    *,
    state: SGDState,
    h: _SgdArgs,
) -> None:
    """Torch's single-tensor path, op for op."""
    lr, momentum, dampening, nesterov, weight_decay, maximize = h
    for i, p, g in zip(idx, ps, gs, strict=True):
        grad = -g if maximize else g
        if weight_decay != 0:
            grad = grad.add(p, alpha=weight_decay)
        if momentum != 0:
            buf = state.momentum_buffer[i]
            if buf is None:
                buf = state.momentum_buffer[i] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            grad = grad.add(buf, alpha=momentum) if nesterov else buf
        p.add_(grad, alpha=-lr)


def _sgd_foreach(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    *,
    state: SGDState,
    h: _SgdArgs,
) -> None:
    """Torch's multi-tensor (``foreach``) path, op for op."""
    lr, momentum, dampening, nesterov, weight_decay, maximize = h
    grads: Tensors = torch._foreach_neg(gs) if maximize else gs
    if weight_decay != 0 and maximize:  # in place on the negated copy, as torch
        torch._foreach_add_(grads, ps, alpha=weight_decay)
    elif weight_decay != 0:
        grads = torch._foreach_add(grads, ps, alpha=weight_decay)
    if momentum != 0:
        bufs = pick(state.momentum_buffer, idx)  # type: ignore[arg-type]
        if all(b is not None for b in bufs):
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        else:
            for k, (i, g) in enumerate(zip(idx, grads, strict=True)):
                buf = state.momentum_buffer[i]
                if buf is None:
                    buf = state.momentum_buffer[i] = g.detach().clone()
                else:
                    buf.mul_(momentum).add_(g, alpha=1 - dampening)
                bufs[k] = buf
        if nesterov:  # in place, on the gradients themselves without a copy, as torch
            torch._foreach_add_(grads, bufs, alpha=momentum)
        else:
            grads = bufs
    torch._foreach_add_(ps, grads, alpha=-lr)


class SGD(Rule):
    r"""SGD with momentum and weight decay, as a rule object; equals ``torch.optim.SGD``.

    The update is :func:`sgd_step`'s. The arguments and defaults are those of
    ``torch.optim.SGD``; the learning rate is given separately (``train_loop(lr=...)``).
    Calling the object, ``rule(params, lr)``, applies one step.

    Args:
        momentum: Momentum factor :math:`\mu` in [0, 1].
        dampening: Dampening :math:`\tau` of the momentum, in [0, 1].
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        weight_decay: L2 penalty :math:`\lambda`, >= 0.
        maximize: Ascend instead of descend.
        foreach: Which of torch's paths to equal op for op (None: as torch picks).

    Raises:
        TypeError: If a number or flag has the wrong type.
        ValueError: If a hyperparameter is out of range.

    Example:
        >>> import torch
        >>> from gradbasics import rules
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> rule = rules.SGD(momentum=0.9)
        >>> w.grad = torch.tensor([1.0])
        >>> rule([w], 0.1)
        >>> w
        tensor([0.9000], requires_grad=True)
    """

    state_type = SGDState
    state: SGDState | None

    def __init__(
        self,
        *,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(foreach)
        m = check_unit(momentum, "momentum", closed=True)
        d = check_unit(dampening, "dampening", closed=True)
        nest = check_bool(nesterov, "nesterov")
        if nest and (m <= 0 or d != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={momentum!r} and dampening={dampening!r}."
            )
        self.hyper = {
            "momentum": m,
            "dampening": d,
            "nesterov": nest,
            "weight_decay": check_nonneg(weight_decay, "weight_decay"),
            "maximize": check_bool(maximize, "maximize"),
        }

    def init(self, params: Sequence[Tensor]) -> SGDState:
        """Return a fresh state for ``params``."""
        return init_sgd(params)

    def apply(self, params: list[Tensor], lr: float) -> None:
        """One step on checked parameters."""
        sgd_step(params, self.state, lr=lr, foreach=self.foreach, **self.hyper)  # type: ignore[arg-type]
