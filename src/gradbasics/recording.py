"""Recording named activations of a module with forward hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import Self

from gradbasics._validate import _describe, check_model
from gradbasics.unitstats import UnitStats, unit_stats

__all__ = ["ActivationRecorder"]


def default_names(model: nn.Module) -> tuple[str, ...]:
    """Return the names recorded by default for ``model``.

    A model that declares ``activation_names`` (the gradbasics models) gets those; any
    other model gets the qualified names of its leaf submodules, in registration order,
    or ``("output",)`` when it has no submodules.
    """
    declared = getattr(model, "activation_names", None)
    if declared is not None:
        return tuple(declared)
    leaves = tuple(
        name for name, m in model.named_modules() if name and next(m.children(), None) is None
    )
    return leaves or ("output",)


def activation_labels(model: nn.Module, names: Sequence[str]) -> dict[str, str]:
    """Return a chart label for each recorded name, built from the model.

    The gradbasics models keep the notes' labels ("Hidden neuron"); other models get the
    name and what the submodule is: ``"0: Linear(3→16)"``, ``"1: ReLU"``.
    """
    if getattr(model, "activation_names", None) is not None:
        return {n: f"{n.capitalize()} neuron" for n in names}
    modules = dict(model.named_modules())
    return {n: f"{n}: {_describe_module(modules.get(n, model))}" for n in names}


def _describe_module(module: nn.Module) -> str:
    kind = type(module).__name__
    for fan_in, fan_out in (("in_features", "out_features"), ("in_channels", "out_channels")):
        if hasattr(module, fan_in) and hasattr(module, fan_out):
            return f"{kind}({getattr(module, fan_in)}\u2192{getattr(module, fan_out)})"
    return kind


class ActivationRecorder:
    r"""Record the latest output of named submodules while in a ``with`` block.

    On entry a forward hook is registered on each named submodule; every forward pass
    then stores the submodule's output, detached from the graph (not copied), under its
    name in ``activations``, replacing the previous one. On exit the hooks are removed,
    also when the block raises; the last values stay readable. The recorder may be entered
    again later.

    Memory is bounded however many passes run: one tensor per name, the latest output,
    which the forward pass allocated anyway (a pass under ``torch.no_grad()`` frees it
    otherwise, so the recorder then holds it until the next pass). With
    ``statistics=True`` the hooks keep only the per-unit statistics of each output
    (:func:`~gradbasics.unit_stats`: mean, standard deviation, dead fraction), three
    float64 numbers per unit and name, and ``activations`` stays empty.

    For :class:`~gradbasics.ChainModel` the names are ``input``, ``hidden1``, ``hidden2``,
    ``output``

    .. math::

        x, \quad h_1 = w_1 x, \quad h_2 = \sigma(w_2 h_1), \quad y = w_3 h_2;

    for :class:`~gradbasics.FrozenFirstModel` ``input``, ``hidden``, ``output``; for
    other modules the qualified names of their leaf submodules (``"output"`` for the
    module itself when it has none).

    Args:
        model: The module to observe.
        names: The submodule names to record (default: see above). ``"output"`` may name
            the model itself when it has no submodule of that name.
        statistics: Keep each output's per-unit statistics in ``stats`` instead of the
            output itself in ``activations``.

    Attributes:
        activations: The latest recorded tensor of each name (detached, not copied).
        stats: With ``statistics=True``, the :class:`~gradbasics.UnitStats` of the latest
            output of each name (float64, shape ``(units,)``).
        names: The names recorded, in order.
        labels: A chart label for each name (``"0: Linear(3→16)"``).

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``, ``names`` is not a sequence of
            strings or ``statistics`` not a bool.
        ValueError: If ``names`` is empty or a name is not a submodule of ``model`` (the
            message lists the known names).

    Example:
        >>> import torch
        >>> from gradbasics import ActivationRecorder, ChainModel
        >>> model = ChainModel()
        >>> with ActivationRecorder(model) as rec:
        ...     _ = model(torch.tensor([2.0]))
        >>> {name: t.item() for name, t in rec.activations.items()}
        {'input': 2.0, 'hidden1': 6.0, 'hidden2': 24.0, 'output': 120.0}
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
        >>> with ActivationRecorder(net, ["1"], statistics=True) as rec:
        ...     _ = net(torch.zeros(5, 3))
        >>> rec.labels["1"], tuple(rec.stats["1"].dead.shape)
        ('1: ReLU', (4,))
    """

    def __init__(
        self, model: nn.Module, names: Sequence[str] | None = None, *, statistics: bool = False
    ) -> None:
        self.model = check_model(model)
        if not isinstance(statistics, bool):
            raise TypeError(f"statistics must be a bool, got {_describe(statistics)}.")
        self.names: tuple[str, ...] = check_names(model, names, what="names")
        modules = dict(model.named_modules())
        self._modules = [modules.get(n, model) for n in self.names]
        self.labels = activation_labels(model, self.names)
        self.statistics = statistics
        self.activations: dict[str, Tensor] = {}
        self.stats: dict[str, UnitStats] = {}
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> Self:
        if self._handles:
            raise RuntimeError("This ActivationRecorder is already active; it is not reentrant.")
        try:
            for name, module in zip(self.names, self._modules, strict=True):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> _Store:
        if self.statistics:
            return _Store(self.stats, name, _stats_of)
        return _Store(self.activations, name, Tensor.detach)


def check_names(model: nn.Module, names: object, *, what: str) -> tuple[str, ...]:
    """The names to record (default: :func:`default_names`), each naming a submodule."""
    if names is None:
        return default_names(model)
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"{what} must be a sequence of strings, got {_describe(names)}.")
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a sequence of strings, got {list(names)!r}.")
    modules = {n for n, _ in model.named_modules()} | {"output"}
    if not names:
        raise ValueError(
            f"{what} must name at least one submodule, got {list(names)!r}; "
            f"known: {sorted(n for n in modules if n)}."
        )
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(
            f"{what} must name submodules of the model, got unknown name(s) {missing}; "
            f"known: {sorted(n for n in modules if n)}."
        )
    return tuple(names)


class _Store:
    """Forward hook that stores what ``keep`` makes of a module's output, under a name."""

    __slots__ = ("keep", "name", "target")

    def __init__(self, target: dict[str, Any], name: str, keep: Callable[[Tensor], object]) -> None:
        self.target, self.name, self.keep = target, name, keep

    def __call__(self, module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, Tensor):
            kept = self.keep(output)
            if kept is not None:
                self.target[self.name] = kept


def _stats_of(output: Tensor) -> UnitStats | None:
    """The per-unit statistics of an output (None for an empty one: nothing to describe)."""
    return unit_stats(output) if output.numel() else None
