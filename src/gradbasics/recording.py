"""Recording named activations of a module with forward hooks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import Self

from gradbasics._validate import _describe, check_model

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


class ActivationRecorder:
    r"""Record the latest output of named submodules while in a ``with`` block.

    On entry a forward hook is registered on each named submodule; every forward pass
    then stores the submodule's output, detached from the graph (not copied), under its
    name in ``activations``, replacing the previous one, so memory stays bounded
    however many passes run. On exit the hooks are removed, also when the block raises;
    the last values stay readable. The recorder may be entered again later.

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

    Attributes:
        activations: The latest recorded tensor of each name (detached, not copied).
        names: The names recorded, in order.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or ``names`` is not a sequence of
            strings.
        ValueError: If a name is not a submodule of ``model``.

    Example:
        >>> import torch
        >>> from gradbasics import ActivationRecorder, ChainModel
        >>> model = ChainModel()
        >>> with ActivationRecorder(model) as rec:
        ...     _ = model(torch.tensor([2.0]))
        >>> {name: t.item() for name, t in rec.activations.items()}
        {'input': 2.0, 'hidden1': 6.0, 'hidden2': 24.0, 'output': 120.0}
    """

    def __init__(self, model: nn.Module, names: Sequence[str] | None = None) -> None:
        self.model = check_model(model)
        if names is None:
            names = default_names(model)
        elif isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"names must be a sequence of strings, got {_describe(names)}.")
        modules = dict(model.named_modules())
        if "output" not in modules:
            modules["output"] = model
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(
                f"names must name submodules of the model, got unknown name(s) {missing}; "
                f"known: {sorted(n for n in modules if n)}."
            )
        self.names: tuple[str, ...] = tuple(names)
        self._modules = [modules[n] for n in self.names]
        self.activations: dict[str, Tensor] = {}
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
        return _Store(self.activations, name)


class _Store:
    """Forward hook that stores a module's detached tensor output under a name."""

    __slots__ = ("name", "target")

    def __init__(self, target: dict[str, Tensor], name: str) -> None:
        self.target = target
        self.name = name

    def __call__(self, module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, Tensor):
            self.target[self.name] = output.detach()


RECORD_LIMIT_BYTES = 4 << 30
"""The most memory ``train_loop(record=True)`` may set aside for activation rows (4 GiB)."""


def check_record_memory(recorder: ActivationRecorder, probe: Tensor, epochs: int) -> int:
    """Refuse, before training, activation rows that would not fit; return their bytes.

    One forward pass of ``probe`` (the size of an epoch's last batch) under
    ``torch.no_grad()`` and ``model.eval()`` (mode restored) measures the activations;
    ``epochs`` rows of each must fit in :data:`RECORD_LIMIT_BYTES` and in half the
    memory the machine has available.
    """
    model = recorder.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recorder:
            model(probe)
    finally:
        model.train(was_training)
    per_epoch = sum(a.numel() * a.element_size() for a in recorder.activations.values())
    recorder.activations.clear()
    need = per_epoch * epochs
    limit = RECORD_LIMIT_BYTES
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        limit = min(limit, os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
    if need > limit:
        raise ValueError(
            f"record=True would keep {need / 2**20:.1f} MiB of activation rows "
            f"({per_epoch} bytes per epoch for {epochs} epochs), more than the "
            f"{limit / 2**20:.0f} MiB allowed (4 GiB, or half the available memory); "
            "train fewer epochs per call, or record with an ActivationRecorder of your own."
        )
    return need


class EpochRows:
    """One row per epoch of each recorded activation, kept in CPU tensors for train_loop.

    Each name's buffer is allocated once, ``(epochs, *shape)``, in pinned memory when the
    activations live on a GPU, so an epoch's copy does not wait for the device. Rows of
    epochs that were not recorded (before a resume from a run without recording) are NaN.
    """

    def __init__(self, epochs: int, pinned: bool) -> None:
        self.epochs, self.pinned = epochs, pinned
        self.rows: dict[str, Tensor] = {}

    def keep(self, name: str, act: Tensor, epoch: int) -> None:
        """Copy ``act`` into row ``epoch`` of ``name`` (non-blocking from a GPU)."""
        if name not in self.rows:  # NaN marks an epoch not recorded (e.g. before a resume)
            shape = (self.epochs, *act.shape)
            fill = float("nan") if act.is_floating_point() else 0
            self.rows[name] = torch.full(shape, fill, dtype=act.dtype, pin_memory=self.pinned)
        self.rows[name][epoch].copy_(act, non_blocking=True)

    def upto(self, epochs: int) -> dict[str, Tensor]:
        """The rows of the first ``epochs`` epochs, by name."""
        return {k: v[:epochs] for k, v in self.rows.items()}
