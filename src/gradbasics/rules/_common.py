"""What every rule shares: parameters with gradients, step counters, the rule object."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from gradbasics._validate import _describe, check_lr, check_params
from gradbasics.rules._grouping import (
    Signature,
    by_device_dtype,
    check_served,
    foreach_default,
    signature,
)

__all__: list[str] = []

Tensors = list[Tensor] | tuple[Tensor, ...]
"""What the ``torch._foreach_*`` functions take and return."""


def with_grads(params: Sequence[Tensor]) -> tuple[list[int], list[Tensor], list[Tensor]]:
    """The indices, parameters and gradients of the parameters whose ``.grad`` is set.

    ``torch.optim`` skips a parameter without a gradient entirely (its state, step count
    included, stays as it is); so does every rule here.
    """
    idx: list[int] = []
    ps: list[Tensor] = []
    gs: list[Tensor] = []
    for i, p in enumerate(params):
        g = p.grad
        if g is not None:
            idx.append(i)
            ps.append(p)
            gs.append(g)
    return idx, ps, gs


def new_steps(n: int) -> Tensor:
    """Per-parameter step counts: ``(n,)`` on the CPU, in torch.optim's scalar dtype."""
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.zeros(n, dtype=dtype)


def advance(steps: Tensor, idx: list[int]) -> list[float]:
    """Add one to the step counts at ``idx`` (rounded as torch.optim's ``step += 1``)."""
    if len(idx) == steps.shape[0]:
        steps.add_(1)
        values: list[float] = steps.tolist()
        return values
    rows = torch.tensor(idx, dtype=torch.long)
    steps.index_add_(0, rows, torch.ones(len(idx), dtype=steps.dtype))
    every: list[float] = steps.tolist()
    return [every[i] for i in idx]


def use_foreach(params: list[Tensor], foreach: bool | None) -> bool:
    """``foreach`` as given, or torch.optim's default: multi-tensor when all are on CUDA."""
    if foreach is not None:
        return foreach
    return foreach_default(params)


_GROUP_ELEMENTS = 1 << 15  # small tensors share a group; a large one is a group alone


def batches_exactly(params: list[Tensor]) -> bool:
    """Whether torch's single-tensor path may run as multi-tensor calls, bit for bit.

    On the CPU a ``torch._foreach_*`` call runs the very per-tensor kernel in a C++
    loop, so in float32 and float64 it gives the single-tensor path's bits without its
    Python cost per tensor. In float16 and bfloat16 some in-place multi-tensor calls
    round their scalar differently, so those dtypes keep the loop.
    """
    return all(p.dtype in (torch.float32, torch.float64) and not p.is_cuda for p in params)


def groups(params: list[Tensor]) -> list[list[int]]:
    """Positions in ``params``: each large tensor alone, the small ones in shared groups.

    A multi-tensor call shares its fixed cost among small tensors; a large tensor runs
    faster on its own, its operations following each other while it is in cache. A group
    of small tensors holds up to about 32k elements.
    """
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for k, p in enumerate(params):
        n = p.numel()
        if n >= _GROUP_ELEMENTS // 4:
            out.append([k])
            continue
        if size + n > _GROUP_ELEMENTS:
            out.append(current)
            current, size = [], 0
        current.append(k)
        size += n
    if current:
        out.append(current)
    return out


def dispatch(
    foreach: bool | None,
    each: Callable[..., None],
    multi: Callable[..., None],
    idx: list[int],
    ps: list[Tensor],
    gs: list[Tensor],
    *lists: Sequence[Any],
    batched: Callable[..., None] | None = None,
    **fixed: Any,
) -> None:
    """Run one step as torch would: its multi-tensor path, or its single-tensor path.

    ``each`` and ``multi`` take ``(idx, ps, gs, *lists, **fixed)``, the per-parameter
    ``lists`` cut like ``ps``. The multi-tensor path runs once per (device, dtype) group,
    as torch's (a group with a sparse gradient runs ``each``). The single-tensor path
    runs small tensors in shared multi-tensor calls where that keeps its bits (float32
    and float64 on the CPU), with ``batched`` (default ``multi``, when torch's two paths
    share their operations).
    """
    every: tuple[Sequence[Any], ...] = (idx, ps, gs, *lists)
    with torch.no_grad():
        if use_foreach(ps, foreach):  # torch's multi-tensor path: per (device, dtype)
            for g in by_device_dtype(ps):
                part = every if len(g) == len(ps) else tuple([s[k] for k in g] for s in every)
                sparse = any(gs[k].is_sparse for k in g)  # torch: such a group runs alone
                (each if sparse else multi)(*part, **fixed)
        elif batches_exactly(ps) and not any(g.is_sparse for g in gs):
            for g in groups(ps):  # a large tensor alone runs best without foreach
                step = (batched or multi) if len(g) > 1 else each
                step(*([s[k] for k in g] for s in every), **fixed)
        else:
            each(*every, **fixed)


def pick(items: Sequence[Tensor], idx: list[int]) -> list[Tensor]:
    """``items`` at ``idx`` (all of them when nothing was skipped)."""
    return list(items) if len(idx) == len(items) else [items[i] for i in idx]


def check_nonneg(value: object, name: str) -> float:
    """A hyperparameter: a finite real number >= 0."""
    return check_lr(value, name=name)


def check_positive(value: object, name: str) -> float:
    """A hyperparameter > 0 (an ``eps`` that guards a division)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not float(value) > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return check_lr(value, name=name)


def check_unit(value: object, name: str, *, closed: bool = False) -> float:
    """A hyperparameter in [0, 1) (or [0, 1] with ``closed``)."""
    v = check_lr(value, name=name)
    if v > 1 or (v == 1 and not closed):
        raise ValueError(f"{name} must be in [0, {'1]' if closed else '1)'}, got {value!r}.")
    return v


def check_betas(betas: object) -> tuple[float, float]:
    """Adam's ``betas``: two numbers in [0, 1)."""
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of numbers, got {_describe(betas)}.")
    b1 = check_unit(betas[0], "betas[0]")
    b2 = check_unit(betas[1], "betas[1]")
    return b1, b2


def check_bool(value: object, name: str) -> bool:
    """A flag: a bool, not something truthy."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {_describe(value)}.")
    return value


class Rule:
    """A rule object: hyperparameters, and the state it builds at its first step.

    It is an update rule for :func:`~gradbasics.train_loop` (``update=``): calling it as
    ``rule(params, lr)`` applies one step in place. The state belongs to the parameters
    it was first called with; :meth:`state_dict` and :meth:`load_state_dict` save and
    restore it as plain tensors (``torch.load(..., weights_only=True)`` reads them).
    """

    state_type: ClassVar[Any]
    state: Any
    shared_by_groups: ClassVar[tuple[str, ...]] = ()
    """Hyperparameters torch.optim takes from its defaults only, never from a group."""

    def __init__(self, foreach: bool | None) -> None:
        if foreach is not None:
            check_bool(foreach, "foreach")
        self.foreach = foreach
        self.state = None
        self.served: Signature | None = None
        self.hyper: dict[str, object] = {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"rules.{type(self).__name__}({args})"

    def init(self, params: Sequence[Tensor]) -> Any:
        """Return a fresh state for ``params``."""
        raise NotImplementedError

    def apply(self, params: list[Tensor], lr: float) -> None:
        """One step on checked parameters, with the state already built."""
        raise NotImplementedError

    def __call__(self, params: Iterable[Tensor], lr: float) -> None:
        """Apply one step in place to ``params`` (those with a ``.grad``) at rate ``lr``."""
        rate = check_lr(lr)
        if isinstance(params, list | tuple) and any(isinstance(g, dict) for g in params):
            raise TypeError(
                f"params must be tensors, got a list of parameter groups (dicts); for groups "
                f"use rules.as_optimizer({self!r}, groups, lr=...), as torch.optim takes them."
            )
        checked = check_params(params)
        now = signature(checked)
        if self.state is None:
            self.state = self.init(checked)
        else:  # a state set by hand (no record of its tensors) is checked for its count
            check_served(self.served or now, now, len(self.state.steps), self.describe())
        self.served = now
        self.apply(checked, rate)

    def describe(self) -> str:
        """``rules.Name`` for messages."""
        return f"rules.{type(self).__name__}"

    def state_dict(self) -> dict[str, Any]:
        """The hyperparameters and the state, as plain values and tensors."""
        state = None if self.state is None else self.state._asdict()
        return {"rule": type(self).__name__, "hyper": dict(self.hyper), "state": state}

    def check_state_dict(self, saved: object, params: Sequence[Tensor]) -> None:
        """Raise ``ValueError`` unless ``saved`` is a state of this rule for ``params``."""
        if not isinstance(saved, dict) or saved.get("rule") != type(self).__name__:
            got = saved.get("rule") if isinstance(saved, dict) else _describe(saved)
            raise ValueError(f"saved must be the state of a {self!r}, got one of {got}.")
        if saved.get("hyper") != self.hyper:
            raise ValueError(
                f"saved holds the state of rules.{saved['rule']} with hyperparameters "
                f"{saved.get('hyper')}, but this rule has {self.hyper}."
            )
        state = saved.get("state")
        if state is None:
            return
        fresh = self.init(params)._asdict()
        if not isinstance(state, dict) or set(state) != set(fresh):
            raise ValueError(f"saved's state must have the fields {sorted(fresh)}.")
        for name, want in fresh.items():
            got = state[name]
            if isinstance(want, Tensor):
                ok = isinstance(got, Tensor) and got.shape == want.shape
            else:
                # a list: one tensor (or None before a first step) per parameter, or empty
                ok = isinstance(got, list) and len(got) == len(want)
                ok = ok and all(
                    g is None or (isinstance(g, Tensor) and g.shape == p.shape)
                    for g, p in zip(got, params, strict=False)
                )
            if not ok:
                raise ValueError(f"saved's state field {name!r} does not fit these parameters.")

    def load_state_dict(self, saved: dict[str, Any], params: Sequence[Tensor]) -> None:
        """Restore a state saved by :meth:`state_dict` for ``params``, after checking it."""
        self.check_state_dict(saved, params)
        state = saved["state"]
        if state is None:
            self.state = self.served = None
            return
        device_of = [p.device for p in params]
        fields: dict[str, Any] = {}
        for name, value in state.items():
            if isinstance(value, Tensor):  # the step counts stay on the CPU
                fields[name] = value.clone()
            else:
                fields[name] = [
                    None if t is None else t.to(d, copy=True)
                    for t, d in zip(value, device_of, strict=False)  # a list may be empty
                ]
        self.state = self.state_type(**fields)
        self.served = signature(params)
