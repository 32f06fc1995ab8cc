"""Adam and AdamW: moving averages of the gradient and its square, bias-corrected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from gradbasics.rules._common import (
    Rule,
    Tensors,
    advance,
    check_betas,
    check_bool,
    check_nonneg,
    check_positive,
    dispatch,
    new_steps,
    pick,
    with_grads,
)
from gradbasics.rules._grouping import check_count, real, refuse_sparse

__all__ = ["Adam", "AdamState", "AdamW", "adam_step", "init_adam"]


class AdamState(NamedTuple):
    r"""Adam's state per parameter.

    Attributes:
        exp_avg: :math:`m`, the moving average of the gradient.
        exp_avg_sq: :math:`v`, the moving average of its square.
        max_exp_avg_sq: :math:`\hat v_{\max}` (AMSGrad; zeros otherwise unused).
        steps: Steps taken per parameter :math:`t`, ``(n,)`` on the CPU.
    """

    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]
    max_exp_avg_sq: list[Tensor]
    steps: Tensor


class _AdamArgs(NamedTuple):
    """The step's hyperparameters, passed as one."""

    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    amsgrad: bool
    maximize: bool
    decoupled: bool


def init_adam(params: Sequence[Tensor], *, amsgrad: bool = False) -> AdamState:
    """Return the zero state of :func:`adam_step` for ``params``."""
    zeros = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
    squares = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
    peaks = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
    return AdamState(zeros, squares, peaks if amsgrad else [], new_steps(len(params)))


def adam_step(
    params: Sequence[Tensor],
    state: AdamState,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled: bool = False,
    foreach: bool | None = None,
) -> None:
    r"""Apply one Adam (or AdamW) step in place; bit-identical to ``torch.optim.Adam``.

    For each parameter :math:`\theta` with gradient :math:`g` at its step :math:`t`:

    .. math::

        g &\leftarrow g + \lambda\theta \quad\text{(Adam)}, \qquad
            \theta \leftarrow \theta (1 - \eta\lambda) \quad\text{(AdamW, decoupled)} \\
        m &\leftarrow m + (1 - \beta_1)(g - m), \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        \hat v &= \max(\hat v_{\max}, v) \text{ (AMSGrad) or } v \\
        \theta &\leftarrow \theta - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}

    in exactly torch's order of operations (``lerp_``, ``mul_().addcmul_()``, the bias
    corrections as Python floats, one ``addcdiv_``), so every bit agrees. As torch's, the
    ``foreach`` path runs per (device, dtype) group, and a complex parameter is updated
    through its ``torch.view_as_real`` view. Sparse gradients are refused
    (``RuntimeError``).

    Args:
        params: The parameters; those without ``.grad`` are skipped.
        state: From :func:`init_adam`; updated in place.
        lr: The learning rate :math:`\eta`.
        betas: :math:`(\beta_1, \beta_2)`.
        eps: :math:`\epsilon`.
        weight_decay: :math:`\lambda`.
        amsgrad: Use the running maximum of :math:`v` (AMSGrad).
        maximize: Ascend instead of descend.
        decoupled: Decay the weights directly (AdamW) instead of through the gradient.
        foreach: Follow torch's multi-tensor path op for op (True) or its single-tensor
            path (False); None picks as torch does (multi-tensor when all are on CUDA).

    Example:
        >>> import torch
        >>> from gradbasics.rules import adam_step, init_adam
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> state = init_adam([w])
        >>> w.grad = torch.tensor([4.0])
        >>> adam_step([w], state, lr=0.1)  # the first step moves by about lr
        >>> w
        tensor([0.9000], requires_grad=True)
    """
    check_count(params, state.steps, "adam_step")
    idx, ps, gs = with_grads(params)
    if not ps:
        return
    refuse_sparse(idx, gs, "rules.AdamW" if decoupled else "rules.Adam")
    t = advance(state.steps, idx)
    h = _AdamArgs(
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        decoupled=decoupled,
    )
    dispatch(foreach, _adam_each, _adam_foreach, idx, ps, gs, t, state=state, h=h)


def _adam_each(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    t: list[float],
    *,
    state: AdamState,
    h: _AdamArgs,
) -> None:
    """Torch's single-tensor path, op for op."""
    lr, betas, eps, weight_decay, amsgrad, maximize, decoupled = h
    beta1, beta2 = betas
    for i, p, g, s in zip(idx, ps, gs, t, strict=True):
        grad = -g if maximize else g
        m, v = state.exp_avg[i], state.exp_avg_sq[i]
        if weight_decay != 0:
            if decoupled:
                p.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(p, alpha=weight_decay)
        if p.is_complex():  # after the decay, as torch
            p, grad, m, v = real([p, grad, m, v])
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1**s)
        bias2_sqrt = (1 - beta2**s) ** 0.5
        if amsgrad:
            peak = real([state.max_exp_avg_sq[i]])[0]
            torch.maximum(peak, v, out=peak)
            denom = peak.sqrt().div_(bias2_sqrt).add_(eps)  # `/` then add_: same bits
        else:
            denom = v.sqrt().div_(bias2_sqrt).add_(eps)
        p.addcdiv_(m, denom, value=-step_size)


def _adam_foreach(
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    t: list[float],
    *,
    state: AdamState,
    h: _AdamArgs,
) -> None:
    """Torch's multi-tensor (``foreach``) path, op for op."""
    lr, betas, eps, weight_decay, amsgrad, maximize, decoupled = h
    beta1, beta2 = betas
    exp_avgs, exp_avg_sqs = real(pick(state.exp_avg, idx)), real(pick(state.exp_avg_sq, idx))
    ps, gs = real(ps), real(gs)  # before the decay, as torch
    grads: Tensors = torch._foreach_neg(gs) if maximize else gs
    if weight_decay != 0:
        if decoupled:
            torch._foreach_mul_(ps, 1 - lr * weight_decay)
        elif maximize:  # in place on the negated copy, as torch
            torch._foreach_add_(grads, ps, alpha=weight_decay)
        else:
            grads = torch._foreach_add(grads, ps, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    step_size = [(lr / (1 - beta1**s)) * -1 for s in t]
    bias2_sqrt = [(1 - beta2**s) ** 0.5 for s in t]
    if amsgrad:
        peaks = real(pick(state.max_exp_avg_sq, idx))
        torch._foreach_maximum_(peaks, exp_avg_sqs)
        denom = torch._foreach_sqrt(peaks)
    else:
        denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias2_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(ps, exp_avgs, denom, step_size)


class Adam(Rule):
    r"""Adam as a rule object; equals ``torch.optim.Adam`` (see :func:`adam_step`).

    Arguments and defaults are those of ``torch.optim.Adam``; the learning rate is given
    separately (``train_loop(lr=...)``). Calling the object, ``rule(params, lr)``,
    applies one step.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: :math:`\epsilon` > 0, added to the denominator.
        weight_decay: L2 penalty :math:`\lambda` >= 0, added to the gradient.
        amsgrad: Use the AMSGrad variant.
        maximize: Ascend instead of descend.
        foreach: Which of torch's paths to equal op for op (None: as torch picks).

    Raises:
        TypeError: If a number or flag has the wrong type.
        ValueError: If a hyperparameter is out of range.

    Example:
        >>> import torch
        >>> from gradbasics import rules
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> w.grad = torch.tensor([4.0])
        >>> rules.Adam()([w], 0.1)
        >>> w
        tensor([0.9000], requires_grad=True)
    """

    state_type = AdamState
    state: AdamState | None
    decoupled = False

    def __init__(
        self,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(foreach)
        self.hyper = {
            "betas": check_betas(betas),
            "eps": check_positive(eps, "eps"),
            "weight_decay": check_nonneg(weight_decay, "weight_decay"),
            "amsgrad": check_bool(amsgrad, "amsgrad"),
            "maximize": check_bool(maximize, "maximize"),
        }

    def init(self, params: Sequence[Tensor]) -> AdamState:
        """Return a fresh state for ``params``."""
        return init_adam(params, amsgrad=bool(self.hyper["amsgrad"]))

    def apply(self, params: list[Tensor], lr: float) -> None:
        """One step on checked parameters."""
        h, fe = self.hyper, self.foreach
        adam_step(params, self.state, lr=lr, decoupled=self.decoupled, foreach=fe, **h)  # type: ignore[arg-type]


class AdamW(Adam):
    r"""AdamW (decoupled weight decay) as a rule object; equals ``torch.optim.AdamW``.

    As :class:`Adam`, but the weights decay directly,
    :math:`\theta \leftarrow \theta(1 - \eta\lambda)`, before the Adam step, instead of
    :math:`\lambda\theta` being added to the gradient; the default ``weight_decay`` is
    0.01, as in torch.

    Args:
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: :math:`\epsilon` > 0.
        weight_decay: Decoupled decay :math:`\lambda` >= 0.
        amsgrad: Use the AMSGrad variant.
        maximize: Ascend instead of descend.
        foreach: Which of torch's paths to equal op for op (None: as torch picks).

    Raises:
        TypeError: If a number or flag has the wrong type.
        ValueError: If a hyperparameter is out of range.

    Example:
        >>> import torch
        >>> from gradbasics import rules
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> w.grad = torch.tensor([4.0])
        >>> rules.AdamW(weight_decay=0.5)([w], 0.1)  # 1 * (1 - 0.05) - 0.1
        >>> w
        tensor([0.8500], requires_grad=True)
    """

    decoupled = True

    def __init__(
        self,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
        )
