"""Per-unit statistics of activations, and the dead units they reveal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from gradbasics._validate import _describe, check_int

__all__ = ["DeadUnitsWarning", "UnitStats", "dead_units", "unit_stats"]


class DeadUnitsWarning(UserWarning):
    """Some units of a recorded layer output exactly 0 for every row in the last epochs.

    A ReLU unit in that state passes no gradient to the weights before it, so plain
    gradient descent cannot bring it back: the layer trains with fewer units than it has.
    :func:`~gradbasics.train_loop` warns at the end of the run, once per layer, naming
    every unit dead in its last 3 epochs (a unit that revived is not); ``history.dead_units``
    lists the same units. ``warnings.simplefilter("error", DeadUnitsWarning)`` turns it
    into an error raised when the run ends (never over the error that ended a failed run).
    """


class UnitStats(NamedTuple):
    """Per-unit statistics of an activation: mean, standard deviation, dead fraction.

    Each is a float64 tensor of shape ``(units,)`` (one call of :func:`unit_stats`) or
    ``(epochs, units)`` (``history.activation_stats[name]``).

    Attributes:
        mean: The mean of each unit over the rows.
        std: The population standard deviation of each unit over the rows.
        dead: The share of rows in which the unit is exactly 0, in ``[0, 1]``.
    """

    mean: Tensor
    std: Tensor
    dead: Tensor

    @classmethod
    def stack(cls, rows: Sequence[UnitStats]) -> UnitStats:
        """Stack per-call statistics (each ``(units,)``) into ``(calls, units)`` tensors.

        Raises:
            ValueError: If ``rows`` is empty.
        """
        if not rows:
            raise ValueError("rows must hold at least one UnitStats, got none.")
        return cls(*(torch.stack([r[i] for r in rows]) for i in range(len(cls._fields))))


def unit_stats(activation: Tensor) -> UnitStats:
    r"""Return the mean, standard deviation and dead fraction of each unit, in float64.

    Units are the last dimension of ``activation``; every other dimension counts as rows
    (an ``(N,)`` activation, as in the notes' models, is one unit of ``N`` rows). For the
    rows :math:`a_{1u}, \dots, a_{Ru}` of unit :math:`u`:

    .. math::

        \mu_u = \frac{1}{R} \sum_{r=1}^{R} a_{ru}, \qquad
        \sigma_u = \sqrt{\frac{1}{R} \sum_{r=1}^{R} (a_{ru} - \mu_u)^2}, \qquad
        d_u = \frac{1}{R} \sum_{r=1}^{R} [a_{ru} = 0].

    :math:`\sigma_u` divides by :math:`R`, not :math:`R - 1`, so it is defined (0) for a
    single row; :math:`d_u = 1` means no row moved the unit off 0.

    Args:
        activation: A real tensor of at least one element; it is not modified.

    Returns:
        ``UnitStats(mean, std, dead)``, float64 tensors of shape ``(units,)`` on the
        activation's device.

    Raises:
        TypeError: If ``activation`` is not a real tensor.
        ValueError: If it is empty.

    Example:
        >>> import torch
        >>> from gradbasics import unit_stats
        >>> a = torch.tensor([[0.0, 1.0], [0.0, 3.0]])  # 2 rows, 2 units
        >>> s = unit_stats(a)
        >>> s.mean.tolist(), s.std.tolist(), s.dead.tolist()
        ([0.0, 2.0], [0.0, 1.0], [1.0, 0.0])
    """
    if not isinstance(activation, Tensor) or activation.is_complex():
        raise TypeError(f"activation must be a real torch.Tensor, got {_describe(activation)}.")
    if activation.numel() == 0:
        raise ValueError(f"activation must hold at least one element, got {_describe(activation)}.")
    a = activation.detach().reshape(-1, _units(activation)).double()  # (rows, units)
    std, mean = torch.std_mean(a, dim=0, correction=0)  # (units,) each
    dead = (a == 0).mean(0, dtype=torch.float64)  # (units,)
    return UnitStats(mean, std, dead)


def _units(activation: Tensor) -> int:
    """The number of units of an activation: its last dimension (1 for a 1-d tensor)."""
    return activation.shape[-1] if activation.dim() > 1 else 1


def dead_units(dead: Tensor, *, epochs: int = 3) -> list[int]:
    r"""Return the units whose dead fraction was 1 in each of the last ``epochs`` rows.

    With :math:`d_{e,u}` the dead fraction of unit :math:`u` after epoch :math:`e` (see
    :func:`unit_stats`) and :math:`E` the epochs so far, unit :math:`u` is dead when

    .. math::

        d_{e,u} = 1 \quad \text{for every } e \in \{E - k + 1, \dots, E\},
        \qquad k = \texttt{epochs}.

    Fewer than ``epochs`` rows find no dead unit; NaN rows (epochs not recorded) count as
    alive.

    Args:
        dead: Dead fractions, shape ``(epochs, units)``: the ``dead`` of
            ``history.activation_stats[name]``.
        epochs: How many epochs in a row a unit must be dead, >= 1.

    Returns:
        The dead units' indices, ascending.

    Raises:
        TypeError: If ``dead`` is not a tensor or ``epochs`` not an int.
        ValueError: If ``dead`` is not 2-d or ``epochs`` < 1.

    Example:
        >>> import torch
        >>> from gradbasics import dead_units
        >>> d = torch.tensor([[1.0, 0.5], [1.0, 1.0], [1.0, 1.0]])  # 3 epochs, 2 units
        >>> dead_units(d, epochs=3), dead_units(d, epochs=2)
        ([0], [0, 1])
    """
    if not isinstance(dead, Tensor):
        raise TypeError(f"dead must be a torch.Tensor, got {_describe(dead)}.")
    if dead.dim() != 2:
        raise ValueError(f"dead must have shape (epochs, units), got {_describe(dead)}.")
    k = check_int(epochs, name="epochs", minimum=1)
    if dead.shape[0] < k:
        return []
    return [int(u) for u in (dead[-k:] == 1).all(0).nonzero().flatten().tolist()]
