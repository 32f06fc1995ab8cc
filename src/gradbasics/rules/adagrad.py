"""AdaGrad: the notes' "dynamic learning rate" done right.

The notes try ``lr = p.grad ** 2``, which makes the step grow with the gradient. AdaGrad
divides instead, by the root of every squared gradient seen so far, so each parameter's
step shrinks where its gradients have been large.
"""

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
    dispatch,
    new_steps,
    pick,
    with_grads,
)
from gradbasics.rules._grouping import check_count, real

__all__ = ["Adagrad", "AdagradState", "adagrad_step", "init_adagrad"]


class AdagradState(NamedTuple):
    """AdaGrad's state per parameter.

    Attributes:
        sum: :math:`s`, the sum of squared gradients.
        steps: Steps taken per parameter :math:`t`, ``(n,)`` on the CPU.
    """

    sum: list[Tensor]
    steps: Tensor


class _AdagradArgs(NamedTuple):
    """The step's hyperparameters, passed as one."""

    weight_decay: float
    eps: float
    maximize: bool


def init_adagrad(
    params: Sequence[Tensor], *, initial_accumulator_value: float = 0.0
) -> AdagradState:
    """Return the initial state of :func:`adagrad_step` for ``params``.

    A complex parameter's sum starts at ``complex(v, v)``, as torch's.
    """
    v = initial_accumulator_value
    sums = [
        torch.full_like(
            p, complex(v, v) if p.is_complex() else v, memory_format=torch.preserve_format
        )
        for p in params
    ]
    return AdagradState(sums, new_steps(len(params)))


def adagrad_step(
    params: Sequence[Tensor],
    state: AdagradState,
    *,
    lr: float,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    foreach: bool | None = None,
) -> None:
    r"""Apply one AdaGrad step in place; bit-identical to ``torch.optim.Adagrad``.

    For each parameter :math:`\theta` with gradient :math:`g` at its step :math:`t`:

    .. math::

        g &\leftarrow g + \lambda\theta, \qquad
        \tilde\eta = \frac{\eta}{1 + (t - 1)\,\delta}, \qquad
        s \leftarrow s + g^2 \\
        \theta &\leftarrow \theta - \tilde\eta\, \frac{g}{\sqrt{s} + \epsilon}

    with :math:`\delta` = ``lr_decay``. torch.optim's two paths round the last line
    differently: the default (single-tensor) path computes
    :math:`\theta + (-\tilde\eta)\,(g / (\sqrt s + \epsilon))`, the ``foreach`` path
    :math:`\theta + (g\cdot(-\tilde\eta)) / (\sqrt s + \epsilon)`. ``foreach`` picks the
    one to equal; torch uses ``foreach`` by default on CUDA, not on the CPU. As torch's,
    the ``foreach`` path runs per (device, dtype) group; a complex parameter is updated
    through its ``torch.view_as_real`` view; a sparse gradient (without weight decay)
    changes only the entries it holds.

    Args:
        params: The parameters; those without ``.grad`` are skipped.
        state: From :func:`init_adagrad`; updated in place.
        lr: The learning rate :math:`\eta`.
        lr_decay: :math:`\delta`.
        weight_decay: :math:`\lambda`.
        eps: :math:`\epsilon`.
        maximize: Ascend instead of descend.
        foreach: Follow torch's multi-tensor path op for op (True) or its single-tensor
            path (False); None picks as torch does (multi-tensor when all are on CUDA).

    Example:
        >>> import torch
        >>> from gradbasics.rules import adagrad_step, init_adagrad
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> state = init_adagrad([w])
        >>> w.grad = torch.tensor([4.0])
        >>> adagrad_step([w], state, lr=0.1)  # 1 - 0.1 * 4 / sqrt(16)
        >>> w
        tensor([0.9000], requires_grad=True)
    """
    check_count(params, state.steps, "adagrad_step")
    idx, ps, gs = with_grads(params)
    if not ps:
        return
    for i, g in zip(idx, gs, strict=True):
        if g.is_sparse and weight_decay != 0:
            raise RuntimeError(
                f"params[{i}] has a sparse gradient, which weight_decay={weight_decay!r} "
                "cannot be added to (as in torch.optim.Adagrad); use weight_decay=0."
            )
    t = advance(state.steps, idx)
    sums = pick(state.sum, idx)
    minus_clr = [-lr / (1 + (s - 1) * lr_decay) for s in t]
    h = _AdagradArgs(weight_decay=weight_decay, eps=eps, maximize=maximize)
    dispatch(
        foreach, _adagrad_each, _adagrad_foreach, idx, ps, gs, sums, minus_clr,
        batched=_adagrad_batched, h=h,
    )  # fmt: skip


def _adagrad_each(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    sums: list[Tensor],
    minus_clr: list[float],
    *,
    h: _AdagradArgs,
) -> None:
    """Torch's single-tensor path, op for op."""
    weight_decay, eps, maximize = h
    for p, g, total, c in zip(ps, gs, sums, minus_clr, strict=True):
        grad = -g if maximize else g
        if weight_decay != 0:
            grad = grad.add(p, alpha=weight_decay)
        if grad.is_sparse:
            _sparse_update(p, grad, total, c, eps)
            continue
        if p.is_complex():  # after the decay, as torch
            grad, total, p = real([grad, total, p])
        total.addcmul_(grad, grad, value=1)
        p.addcdiv_(grad, total.sqrt().add_(eps), value=c)


def _sparse_update(p: Tensor, grad: Tensor, total: Tensor, minus_clr: float, eps: float) -> None:
    """Torch's step for a sparse gradient: only the rows it holds change."""
    grad = grad.coalesce()  # the update is not linear: one value per index
    indices, values = grad._indices(), grad._values()
    total.add_(torch.sparse_coo_tensor(indices, values.pow(2), grad.size(), check_invariants=False))
    std = total.sparse_mask(grad)._values().sqrt_().add_(eps)
    p.add_(
        torch.sparse_coo_tensor(indices, values / std, grad.size(), check_invariants=False),
        alpha=minus_clr,
    )


def _adagrad_batched(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    sums: list[Tensor],
    minus_clr: list[float],
    *,
    h: _AdagradArgs,
) -> None:
    """The single-tensor path's ops as multi-tensor calls (exact in float32/64)."""
    weight_decay, eps, maximize = h
    grads: Tensors = torch._foreach_neg(gs) if maximize else gs
    if weight_decay != 0:
        grads = torch._foreach_add(grads, ps, alpha=weight_decay)
    torch._foreach_addcmul_(sums, grads, grads, value=1)
    std = torch._foreach_sqrt(sums)
    torch._foreach_add_(std, eps)
    torch._foreach_addcdiv_(ps, grads, std, minus_clr)


def _adagrad_foreach(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    sums: list[Tensor],
    minus_clr: list[float],
    *,
    h: _AdagradArgs,
) -> None:
    """Torch's multi-tensor (``foreach``) path, op for op."""
    weight_decay, eps, maximize = h
    ps, gs, sums = real(ps), real(gs), real(sums)  # before the decay, as torch
    grads: Tensors = torch._foreach_neg(gs) if maximize else gs
    if weight_decay != 0 and maximize:  # in place on the negated copy, as torch
        torch._foreach_add_(grads, ps, alpha=weight_decay)
    elif weight_decay != 0:
        grads = torch._foreach_add(grads, ps, alpha=weight_decay)
    torch._foreach_addcmul_(sums, grads, grads, value=1)
    std = torch._foreach_sqrt(sums)
    torch._foreach_add_(std, eps)
    if weight_decay != 0 or maximize:  # grads is a copy: scaled in place, as torch
        torch._foreach_mul_(grads, minus_clr)  # rounds unlike _foreach_mul in f16
    else:
        grads = torch._foreach_mul(grads, minus_clr)
    torch._foreach_addcdiv_(ps, grads, std)


class Adagrad(Rule):
    r"""AdaGrad as a rule object; equals ``torch.optim.Adagrad`` (see :func:`adagrad_step`).

    Arguments and defaults are those of ``torch.optim.Adagrad``; the learning rate is
    given separately. ``foreach`` (default: as torch, True on CUDA) picks which of torch's
    two roundings to equal.

    Args:
        lr_decay: :math:`\delta` >= 0.
        weight_decay: L2 penalty :math:`\lambda` >= 0.
        initial_accumulator_value: The initial :math:`s`, >= 0.
        eps: :math:`\epsilon` > 0.
        maximize: Ascend instead of descend.
        foreach: Equal torch's ``foreach=True`` path (None: on CUDA only, as torch).

    Raises:
        TypeError: If a number or flag has the wrong type.
        ValueError: If a hyperparameter is out of range.

    Example:
        >>> import torch
        >>> from gradbasics import rules
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> w.grad = torch.tensor([4.0])
        >>> rules.Adagrad()([w], 0.1)
        >>> w
        tensor([0.9000], requires_grad=True)
    """

    state_type = AdagradState
    state: AdagradState | None
    shared_by_groups = ("initial_accumulator_value",)  # torch reads only its default's

    def __init__(
        self,
        *,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(foreach)
        self.hyper = {
            "lr_decay": check_nonneg(lr_decay, "lr_decay"),
            "weight_decay": check_nonneg(weight_decay, "weight_decay"),
            "initial_accumulator_value": check_nonneg(
                initial_accumulator_value, "initial_accumulator_value"
            ),
            "eps": check_positive(eps, "eps"),
            "maximize": check_bool(maximize, "maximize"),
        }

    def init(self, params: Sequence[Tensor]) -> AdagradState:
        """Return a fresh state for ``params``."""
        value = self.hyper["initial_accumulator_value"]
        return init_adagrad(params, initial_accumulator_value=float(value))  # type: ignore[arg-type]

    def apply(self, params: list[Tensor], lr: float) -> None:
        """One step on checked parameters."""
        h = dict(self.hyper)
        del h["initial_accumulator_value"]
        adagrad_step(params, self.state, lr=lr, foreach=self.foreach, **h)  # type: ignore[arg-type]
