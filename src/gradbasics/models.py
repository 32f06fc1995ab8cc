"""The notes' reference models: the three-weight chain and the frozen-first-weight model.

Each model routes its intermediate values through named identity submodules ("taps") so
that :class:`~gradbasics.ActivationRecorder` can record them with ordinary forward hooks.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gradbasics._validate import _describe

__all__ = ["ChainModel", "FrozenFirstModel"]

Activation = Callable[[Tensor], Tensor]
_ACTIVATIONS: dict[str, Activation] = {"relu": torch.relu, "sigmoid": torch.sigmoid}


class _Tap(nn.Module):
    """Identity submodule that gives an intermediate value a name for forward hooks."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _weight(
    name: str, value: object, device: torch.device | str | None, dtype: torch.dtype | None
) -> Tensor:
    """Return ``value`` as a tensor of shape (1,), after checking it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}.")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if dtype is not None and not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}.")
    return torch.tensor([float(value)], device=device, dtype=dtype)  # (1,)


class ChainModel(nn.Module):
    r"""The notes' three-weight chain :math:`x \to w_1 x \to \sigma(w_2 \cdot) \to w_3 \cdot`.

    .. math::

        h_1 = w_1 x, \qquad h_2 = \sigma(w_2 h_1), \qquad y = w_3 h_2

    elementwise for any input shape, with :math:`\sigma` = ReLU by default. For the loss
    :math:`L = (y - t)^2` and an active ReLU (:math:`w_2 h_1 > 0`) the gradients are

    .. math::

        \frac{\partial L}{\partial w_3} = 2 (y - t)\, h_2, \qquad
        \frac{\partial L}{\partial w_2} = 2 (y - t)\, w_3 h_1, \qquad
        \frac{\partial L}{\partial w_1} = 2 (y - t)\, w_3 w_2 x,

    and :math:`\partial L / \partial w_1 = \partial L / \partial w_2 = 0` when the ReLU
    is inactive. At the notes' values :math:`x = 2`, :math:`t = 1`, :math:`w = (3, 4, 5)`
    they are 9520, 7140 and 5712.

    Recorded activations (see :class:`~gradbasics.ActivationRecorder`) are named
    ``input`` (:math:`x`), ``hidden1`` (:math:`h_1`), ``hidden2`` (:math:`h_2`) and
    ``output`` (:math:`y`): the notes' ``x1, x2, x3, x4``.

    Args:
        w1: Initial value of :math:`w_1`.
        w2: Initial value of :math:`w_2`.
        w3: Initial value of :math:`w_3`.
        activation: ``"relu"``, ``"sigmoid"`` or any callable ``Tensor -> Tensor``.
        device: Device of the weights (default: PyTorch's default device).
        dtype: Floating dtype of the weights (default: PyTorch's default dtype).

    Raises:
        TypeError: If a weight is not a real number, ``activation`` is neither a known
            name nor callable, or ``dtype`` is not floating point.
        ValueError: If a weight is not finite or ``activation`` is an unknown name.

    Example:
        >>> import torch
        >>> from gradbasics import ChainModel
        >>> model = ChainModel()
        >>> loss = ((model(torch.tensor([2.0])) - 1.0) ** 2).sum()
        >>> loss.backward()
        >>> [p.grad.item() for p in (model.w1, model.w2, model.w3)]
        [9520.0, 7140.0, 5712.0]
    """

    activation_names: tuple[str, ...] = ("input", "hidden1", "hidden2", "output")

    def __init__(
        self,
        w1: float = 3.0,
        w2: float = 4.0,
        w3: float = 5.0,
        *,
        activation: str | Activation = "relu",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(
                    f"activation must be one of {sorted(_ACTIVATIONS)} or a callable, "
                    f"got {activation!r}."
                )
            act = _ACTIVATIONS[activation]
        elif callable(activation):
            act = activation
        else:
            raise TypeError(
                f"activation must be 'relu', 'sigmoid' or a callable, got {_describe(activation)}."
            )
        self.w1 = nn.Parameter(_weight("w1", w1, device, dtype))
        self.w2 = nn.Parameter(_weight("w2", w2, device, dtype))
        self.w3 = nn.Parameter(_weight("w3", w3, device, dtype))
        # An nn.Module activation (e.g. nn.PReLU()) becomes a child: its parameters train
        # and move with .to(). It is not a tap: the recorder uses activation_names.
        self.act = act
        self.input = _Tap()
        self.hidden1 = _Tap()
        self.hidden2 = _Tap()
        self.output = _Tap()

    def forward(self, x: Tensor) -> Tensor:
        r"""Return :math:`w_3\, \sigma(w_2 (w_1 x))`, elementwise (same shape as ``x``)."""
        x = self.input(x)
        h1 = self.hidden1(self.w1 * x)  # same shape as x
        h2 = self.hidden2(self.act(self.w2 * h1))
        out: Tensor = self.output(self.w3 * h2)
        return out


class FrozenFirstModel(nn.Module):
    r"""The notes' task 2: :math:`y = w_2 (w_1 x)` where only :math:`w_2` trains.

    .. math::

        h = w_1 x, \qquad y = w_2 h, \qquad
        \frac{\partial L}{\partial w_2} = 2 (y - t)\, h \quad\text{for } L = (y - t)^2.

    :math:`w_1` is a registered buffer: it moves with ``.to()`` and is saved in
    ``state_dict()``, but it is not a parameter, so no optimizer ever sees it and
    ``list(model.parameters()) == [model.w2]``. Recorded activations are named
    ``input`` (:math:`x`), ``hidden`` (:math:`h`) and ``output`` (:math:`y`).

    Args:
        w1: Value of the frozen weight :math:`w_1`.
        w2: Initial value of the trainable weight :math:`w_2`.
        device: Device of the weights.
        dtype: Floating dtype of the weights.

    Raises:
        TypeError: If a weight is not a real number or ``dtype`` is not floating point.
        ValueError: If a weight is not finite.

    Example:
        >>> from gradbasics import FrozenFirstModel
        >>> model = FrozenFirstModel(w1=1.0, w2=1.0)
        >>> [name for name, _ in model.named_parameters()]
        ['w2']
        >>> sorted(model.state_dict())
        ['w1', 'w2']
    """

    activation_names: tuple[str, ...] = ("input", "hidden", "output")
    w1: Tensor

    def __init__(
        self,
        w1: float = 1.0,
        w2: float = 1.0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("w1", _weight("w1", w1, device, dtype))
        self.w2 = nn.Parameter(_weight("w2", w2, device, dtype))
        self.input = _Tap()
        self.hidden = _Tap()
        self.output = _Tap()

    def forward(self, x: Tensor) -> Tensor:
        """Return :math:`w_2 (w_1 x)`, elementwise (same shape as ``x``)."""
        x = self.input(x)
        h = self.hidden(self.w1 * x)  # same shape as x
        out: Tensor = self.output(self.w2 * h)
        return out
