"""Update rules: one step of plain gradient descent on explicit tensors.

Both rules take the parameters and a learning rate, read ``p.grad`` and change ``p`` in
place. Neither zeroes the gradients: clearing them is the caller's (or
:func:`~gradbasics.train_loop`'s) job, exactly as with ``torch.optim``.

Both take an optional ``guard`` (typically the loss): the step is then applied only when
the guard is finite, decided on the guard's device by a masked update, so a GPU loop can
refuse a non-finite step without waiting for the GPU.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from gradbasics._validate import _describe, check_lr, check_params

__all__ = ["legacy_data_step", "manual_sgd_step"]

# torch._foreach_add_ costs about 2 us more than three add_ calls on the CPU but wins from
# a handful of tensors on; on CUDA it is what torch.optim.SGD itself runs.
_FOREACH_MIN_TENSORS = 5
_set_grad_enabled = torch._C._set_grad_enabled


def _with_grads(params: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    ps: list[Tensor] = []
    gs: list[Tensor] = []
    for p in params:
        g = p.grad
        if g is not None:
            ps.append(p)
            gs.append(g)
    return ps, gs


def _guard_mask(guard: object) -> Tensor | None:
    """Return None for no guard, else a 0-d bool tensor on its device: all finite?"""
    if guard is None:
        return None
    if not isinstance(guard, Tensor):
        raise TypeError(f"guard must be a torch.Tensor or None, got {_describe(guard)}.")
    return torch.isfinite(guard).all()


def use_foreach(params: list[Tensor]) -> bool:
    """Whether :func:`sgd_update` should take the multi-tensor kernel for ``params``."""
    return len(params) >= _FOREACH_MIN_TENSORS or any(p.device.type != "cpu" for p in params)


def sgd_update(
    params: list[Tensor], lr: float, ok: Tensor | None = None, *, foreach: bool = False
) -> None:
    """Apply :func:`manual_sgd_step` to checked ``params``; ``ok`` is a 0-d bool mask.

    ``foreach`` picks the multi-tensor kernel (see :func:`use_foreach`); it is decided by
    the caller, once, because reading tensor attributes on every step costs microseconds.
    """
    prev = torch.is_grad_enabled()
    _set_grad_enabled(False)  # what torch.no_grad() does, without its ~1.5 us of Python
    try:
        if foreach:
            ps, gs = _with_grads(params)
            if ok is not None:
                # where() picks g itself when ok, so a finite step keeps its bits.
                gs = [torch.where(ok, g, 0.0) for g in gs]
            if ps:
                # The kernel torch.optim.SGD runs on CUDA; on the CPU it is add_ per tensor
                # underneath, SGD's single-tensor path: the same bits either way.
                torch._foreach_add_(ps, gs, alpha=-lr)
            return
        for p in params:
            g = p.grad
            if g is not None:
                p.add_(g if ok is None else torch.where(ok, g, 0.0), alpha=-lr)
    finally:
        _set_grad_enabled(prev)


def legacy_update(params: list[Tensor], lr: float, ok: Tensor | None = None) -> None:
    """Apply :func:`legacy_data_step` to checked ``params``; ``ok`` is a 0-d bool mask."""
    for p in params:
        g = p.grad
        if g is not None:
            if ok is not None:
                g = torch.where(ok, g, 0.0)
            p.data -= lr * g


def manual_sgd_step(params: Iterable[Tensor], lr: float, *, guard: Tensor | None = None) -> None:
    r"""Apply one step of gradient descent in place, under ``torch.no_grad()``.

    .. math::

        p \leftarrow p - \eta\, \nabla_p L

    for every ``p`` whose ``.grad`` is not None (the others are skipped). The product and
    the sum are rounded once, as one fused ``add_(grad, alpha=-lr)``, so the result is
    bit-for-bit that of ``torch.optim.SGD(params, lr=lr).step()`` (no momentum, no weight
    decay) in every floating dtype. The naive ``p -= lr * p.grad`` rounds twice and
    differs in the last bit for some elements. Gradients are left as they are.

    The update runs under ``torch.no_grad()`` because an in-place change of a leaf that
    requires grad would otherwise be recorded by autograd (and is refused). Unlike a
    ``.data`` write, it bumps the tensor's version counter, so a backward pass that still
    needs the old value raises instead of silently using the new one.

    With ``guard``, the step becomes :math:`p \leftarrow p - \eta\, m\, \nabla_p L` with
    :math:`m = 1` if every element of ``guard`` is finite and :math:`m = 0` otherwise,
    computed on the device (``torch.where``, no host synchronisation); a finite step is
    bit-for-bit the unguarded one.

    Args:
        params: The tensors to update (e.g. ``model.parameters()``); leaf tensors only.
        lr: The learning rate :math:`\eta`, a finite number >= 0.
        guard: Optional tensor, typically the loss: skip the step unless it is finite.

    Raises:
        TypeError: If ``params`` is not an iterable of tensors, ``lr`` is not a real
            number (a tensor ``lr`` included) or ``guard`` is not a tensor.
        ValueError: If ``lr`` is negative or not finite, or a tensor is not a leaf.

    Example:
        >>> import torch
        >>> from gradbasics import manual_sgd_step
        >>> w = torch.tensor([3.0], requires_grad=True)
        >>> (w ** 2).sum().backward()  # grad = 2 w = 6
        >>> manual_sgd_step([w], lr=0.5)
        >>> w
        tensor([0.], requires_grad=True)
        >>> manual_sgd_step([w], lr=0.5, guard=torch.tensor(float("inf")))  # skipped
        >>> w
        tensor([0.], requires_grad=True)
    """
    rate = check_lr(lr)
    checked = check_params(params)
    sgd_update(checked, rate, _guard_mask(guard), foreach=use_foreach(checked))


def legacy_data_step(params: Iterable[Tensor], lr: float, *, guard: Tensor | None = None) -> None:
    r"""Apply one step of gradient descent with the legacy ``p.data -= lr * p.grad`` idiom.

    .. math::

        p \leftarrow p - \operatorname{round}(\eta\, \nabla_p L)

    Kept as a reference to compare against, not for use. It is discouraged because
    ``.data`` hides the write from autograd: the version counter is not bumped, so if a
    graph built before the write is back-propagated afterwards, the gradient is computed
    with the new values and no error is raised. :func:`manual_sgd_step` makes the same
    write under ``torch.no_grad()``, where that backward pass raises instead. The product
    ``lr * p.grad`` is also rounded before the subtraction, so the result can differ from
    ``torch.optim.SGD`` in the last bit. Parameters whose ``.grad`` is None are skipped;
    gradients are not zeroed. ``guard`` works as in :func:`manual_sgd_step`.

    Args:
        params: The tensors to update; leaf tensors only.
        lr: The learning rate :math:`\eta`, a finite number >= 0.
        guard: Optional tensor, typically the loss: skip the step unless it is finite.

    Raises:
        TypeError: If ``params`` is not an iterable of tensors, ``lr`` is not a real
            number or ``guard`` is not a tensor.
        ValueError: If ``lr`` is negative or not finite, or a tensor is not a leaf.

    Example:
        >>> import torch
        >>> from gradbasics import legacy_data_step
        >>> w = torch.tensor([3.0], requires_grad=True)
        >>> (w ** 2).sum().backward()
        >>> legacy_data_step([w], lr=0.5)
        >>> w
        tensor([0.], requires_grad=True)
    """
    rate = check_lr(lr)
    checked = check_params(params)
    legacy_update(checked, rate, _guard_mask(guard))
