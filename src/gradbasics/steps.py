"""Update rules: one step of plain gradient descent on explicit tensors.

Both rules take the parameters and a learning rate, read ``p.grad`` and change ``p`` in
place. Neither zeroes the gradients: clearing them is the caller's (or
:func:`~gradbasics.train_loop`'s) job, exactly as with ``torch.optim``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from gradbasics._validate import check_lr, check_params

__all__ = ["legacy_data_step", "manual_sgd_step"]


def manual_sgd_step(params: Iterable[Tensor], lr: float) -> None:
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

    Args:
        params: The tensors to update (e.g. ``model.parameters()``); leaf tensors only.
        lr: The learning rate :math:`\eta`, a finite number >= 0.

    Raises:
        TypeError: If ``params`` is not an iterable of tensors or ``lr`` is not a real
            number (a tensor ``lr`` included).
        ValueError: If ``lr`` is negative or not finite, or a tensor is not a leaf.

    Example:
        >>> import torch
        >>> from gradbasics import manual_sgd_step
        >>> w = torch.tensor([3.0], requires_grad=True)
        >>> (w ** 2).sum().backward()  # grad = 2 w = 6
        >>> manual_sgd_step([w], lr=0.5)
        >>> w
        tensor([0.], requires_grad=True)
        >>> w.grad
        tensor([6.])
    """
    sgd_update(check_params(params), check_lr(lr))


def sgd_update(params: list[Tensor], lr: float) -> None:
    """Apply :func:`manual_sgd_step` to already-checked ``params`` (no input checks)."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    grads = [p.grad for p in with_grad]
    with torch.no_grad():
        # The same multi-tensor kernel torch.optim.SGD uses; on the CPU it runs add_ per
        # tensor, i.e. SGD's single-tensor path, so the bits agree on every device.
        torch._foreach_add_(with_grad, grads, alpha=-lr)  # type: ignore[arg-type]


def legacy_data_step(params: Iterable[Tensor], lr: float) -> None:
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
    gradients are not zeroed.

    Args:
        params: The tensors to update; leaf tensors only.
        lr: The learning rate :math:`\eta`, a finite number >= 0.

    Raises:
        TypeError: If ``params`` is not an iterable of tensors or ``lr`` is not a real number.
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
    tensors = check_params(params)
    for p in tensors:
        if p.grad is not None:
            p.data -= rate * p.grad
