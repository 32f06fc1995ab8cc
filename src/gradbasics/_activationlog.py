"""What train_loop keeps of the recorded activations: statistics, rows that fit, dead units."""

from __future__ import annotations

import os
import sys
import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from gradbasics._device import sanctioned_sync
from gradbasics._validate import modes, restore_modes
from gradbasics.history import TrainHistory
from gradbasics.recording import ActivationRecorder
from gradbasics.unitstats import DeadUnitsWarning, UnitStats, _units, dead_units, unit_stats

__all__: list[str] = []

ROWS_LIMIT_BYTES = 64 << 20
"""The most memory ``train_loop(record=...)`` spends on whole activation rows (64 MiB)."""

STATS_LIMIT_BYTES = 4 << 30
"""The most memory the per-unit statistics of a run may take (4 GiB)."""

DEAD_AFTER = 3
"""Epochs in a row a unit must be dead (0 for every row) to count in ``dead_units``."""

FLUSH_EVERY = 32
"""Epochs kept on a device before their statistics go to the host buffers at once."""


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside gradbasics.

    Call it in the function that warns: callbacks and hooks sit between it and the
    user's call of train_loop, at a depth no constant knows.
    """
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def probe_pass(recorder: ActivationRecorder, probe: Tensor) -> None:
    """One forward pass of ``probe`` under ``torch.no_grad()`` and ``model.eval()``.

    The model's mode is restored afterwards, also on errors.
    """
    model = recorder.model
    was_training = modes(model)
    model.eval()
    try:
        with torch.no_grad(), recorder:
            model(probe)
    finally:
        restore_modes(was_training)


def plan_rows(recorder: ActivationRecorder, probe: Tensor, epochs: int, *, what: str) -> bool:
    """Measure one pass of ``probe``; return whether whole rows fit :data:`ROWS_LIMIT_BYTES`.

    Refuses statistics that would not fit (4 GiB, or half the available memory), and warns
    once when rows do not fit: the run then keeps the statistics only.
    """
    try:
        probe_pass(recorder, probe)
    except Exception as exc:  # a wrong shape surfaces in the model: name the argument
        raise ValueError(f"{what} must fit the model's input, but its forward pass failed: "
                         f"{exc}") from exc  # fmt: skip
    acts = recorder.activations
    per_epoch = sum(a.numel() * a.element_size() for a in acts.values())
    units = sum(_units(a) for a in acts.values())
    recorder.activations.clear()
    stats_need, limit = 3 * 8 * units * epochs, STATS_LIMIT_BYTES
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        limit = min(limit, os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
    if stats_need > limit:
        raise ValueError(
            f"record would keep {stats_need / 2**20:.1f} MiB of per-unit statistics "
            f"({units} units for {epochs} epochs), more than the {limit / 2**20:.0f} MiB "
            "allowed (4 GiB, or half the available memory); train fewer epochs per call, "
            "or record fewer layers."
        )
    return _rows_fit(per_epoch, epochs)


def _rows_fit(per_epoch: int, epochs: int) -> bool:
    """Whether ``epochs`` rows of ``per_epoch`` bytes fit; warn once when they do not."""
    if per_epoch * epochs <= ROWS_LIMIT_BYTES:
        return True
    warnings.warn(
        f"record: whole activation rows would take {per_epoch * epochs / 2**20:.1f} MiB "
        f"({per_epoch} bytes per epoch for {epochs} epochs), more than the "
        f"{ROWS_LIMIT_BYTES >> 20} MiB kept; history.activations stays empty and "
        "history.activation_stats holds the per-unit statistics. Pass a smaller probe= "
        "for whole rows.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    return False


class ActivationLog:
    """One row per epoch of each name's statistics, and of its activation while rows fit.

    Each epoch computes its statistics at once (one :func:`unit_stats` for all names with
    as many rows: the notes' chain records four one-unit activations) and keeps them, with
    a copy of the rows, in a pending list; :meth:`fill` writes the pending epochs into CPU
    buffers allocated once, ``(epochs, ...)``, in a few tensor operations for all of them.
    Rows of epochs that were not recorded (before a resume from a run without recording)
    are NaN.
    """

    def __init__(self, epochs: int, keep_rows: bool | None) -> None:
        self.epochs, self.keep_rows = epochs, keep_rows
        self.rows: dict[str, Tensor] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}  # each name's activation, to stack
        self.stats: dict[str, Tensor] = {}  # (3, epochs, units): mean, std, dead
        self.pending: list[tuple[int, _Group, Tensor | None, Tensor]] = []
        self.warned: dict[str, set[int]] = {}  # the dead units each layer was warned of

    def restore(self, history: TrainHistory, start: int) -> None:
        """Take the first ``start`` epochs of a resumed history."""
        for name, saved in history.activations.items():
            if self.keep_rows is not False:
                self.shapes[name] = tuple(saved.shape[1:])
                self._row(name, tuple(saved.shape[1:]), saved.dtype)[:start] = saved[:start]
        for name, s in history.activation_stats.items():
            self._stat(name, s.mean.shape[1])[:, :start] = torch.stack(tuple(s))[:, :start]
        self.warned.update((n, set(units)) for n, units in history.dead_units.items())

    def keep(self, acts: dict[str, Tensor], epoch: int) -> None:
        """Keep epoch ``epoch``'s statistics (and rows, while each keeps its shape)."""
        if self.keep_rows is None:  # a DataLoader: the size is known at the first batch
            per_epoch = sum(a.numel() * a.element_size() for a in acts.values())
            self.keep_rows = _rows_fit(per_epoch, self.epochs)
        if self.keep_rows:
            self._check_shapes(acts)
        for group in _groups(acts):
            parts = [acts[n].reshape(-1, w) for n, w in zip(group.names, group.widths, strict=True)]
            both = torch.cat(parts, 1) if len(parts) > 1 else parts[0]  # (rows, all units)
            stacked = torch.stack(tuple(unit_stats(both)))  # (3, all units)
            # a copy: a later in-place op (or a graph replay) may overwrite the activation
            rows = (both if len(parts) > 1 else both.clone()) if self.keep_rows else None
            self.pending.append((epoch, group, rows, stacked))
        # On the CPU the buffers take each epoch at once; on a device, every few epochs
        # (one copy to the host for all): what is pending stays bounded either way.
        if len(self.pending) >= (FLUSH_EVERY if self.pending[-1][3].is_cuda else 1):
            self._flush()

    def _check_shapes(self, acts: dict[str, Tensor]) -> None:
        """Drop whole rows, with one warning, when an activation's shape changes.

        A loader's last batch may hold other rows each epoch: its rows cannot be stacked.
        """
        for name, act in acts.items():
            shape = self.shapes.setdefault(name, tuple(act.shape))
            if shape != tuple(act.shape):
                warnings.warn(
                    f"record: the activation rows vary between epochs ({name!r}: shape "
                    f"{shape}, then {tuple(act.shape)}; a loader's last batch may vary), so "
                    "they cannot be stacked: history.activations stays empty and "
                    "history.activation_stats holds the per-unit statistics. Pass probe= "
                    "(a fixed batch) for whole rows.",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
                self.keep_rows = False
                self.rows.clear()
                self.pending = [(e, g, None, s) for e, g, _, s in self.pending]
                return

    def fill(self, history: TrainHistory, epochs: int, labels: dict[str, str]) -> None:
        """Write the first ``epochs`` epochs into ``history`` (views of the buffers)."""
        self._flush()
        history.activations = {k: v[:epochs] for k, v in self.rows.items()}
        history.activation_stats = {k: UnitStats(*v[:, :epochs]) for k, v in self.stats.items()}
        history.activation_labels = dict(labels)
        history.dead_units = {
            k: dead_units(s.dead, epochs=DEAD_AFTER) for k, s in history.activation_stats.items()
        }

    def warn_dead(self, epochs: int, labels: dict[str, str]) -> None:
        """At the end of a run of ``epochs`` epochs, warn of each layer's dead units.

        A unit is dead when it output 0 for every row in each of the last
        :data:`DEAD_AFTER` epochs: one that revived before the end is not. Each layer is
        warned once, naming all its dead units, unless they were all warned of before (a
        resumed run).
        """
        self._flush()
        for name, buf in self.stats.items():
            units = dead_units(buf[2, :epochs], epochs=DEAD_AFTER)
            if not units or set(units) <= self.warned.get(name, set()):
                continue
            self.warned[name] = set(units)
            label = labels.get(name, name)
            layer = repr(label) if label.startswith(name) else f"{name!r} ({label})"
            warnings.warn(
                f"{len(units)} of the {buf.shape[2]} unit(s) of layer {layer} are dead at the "
                f"end of training: they output 0 for every row in epochs "
                f"{epochs - DEAD_AFTER + 1} to {epochs}, the last {DEAD_AFTER}, so they pass "
                f"no gradient back (units {units[:20]}{' ...' if len(units) > 20 else ''}). A "
                "smaller learning rate, another initialisation or a leaky activation can keep "
                "them alive.",
                DeadUnitsWarning,
                stacklevel=user_stacklevel(),
            )

    def _flush(self) -> None:
        """Write the pending epochs into the buffers: a few operations per name for all."""
        by_group: dict[_Group, list[tuple[int, Tensor | None, Tensor]]] = {}
        for epoch, group, rows, stacked in self.pending:
            by_group.setdefault(group, []).append((epoch, rows, stacked))
        self.pending.clear()
        with sanctioned_sync():
            for group, entries in by_group.items():
                at = torch.tensor([e for e, _, _ in entries])
                stats = torch.stack([s for _, _, s in entries], 1).cpu()  # (3, k, all units)
                kept = [r for _, r, _ in entries if r is not None]
                rows = torch.stack(kept).cpu() if kept else None  # (k, rows, all units)
                lo = 0
                for name, width, shape, dtype in zip(*group, strict=True):
                    self._stat(name, width)[:, at] = stats[:, :, lo : lo + width]
                    if rows is not None:
                        part = rows[:, :, lo : lo + width].reshape(len(entries), *shape)
                        self._row(name, shape, dtype)[at] = part.to(dtype)
                    lo += width

    def _row(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        if name not in self.rows:
            fill = float("nan") if dtype.is_floating_point else 0
            self.rows[name] = torch.full((self.epochs, *shape), fill, dtype=dtype)
        return self.rows[name]

    def _stat(self, name: str, units: int) -> Tensor:
        if name not in self.stats:
            self.stats[name] = torch.full(
                (3, self.epochs, units), float("nan"), dtype=torch.float64
            )
        return self.stats[name]


class _Group(NamedTuple):
    """Recorded names whose activations have as many rows, computed together."""

    names: tuple[str, ...]
    widths: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[torch.dtype, ...]


def _groups(acts: dict[str, Tensor]) -> list[_Group]:
    """The names by their number of rows (all but the last dimension), in order."""
    found: dict[int, list[tuple[str, int, tuple[int, ...], torch.dtype]]] = {}
    for name, act in acts.items():
        if act.numel():
            width = _units(act)
            entry = (name, width, tuple(act.shape), act.dtype)
            found.setdefault(act.numel() // width, []).append(entry)
    return [
        _Group(*(tuple(column) for column in zip(*members, strict=True)))
        for members in found.values()
    ]
