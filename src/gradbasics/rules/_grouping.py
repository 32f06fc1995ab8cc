"""How torch.optim sorts and views the tensors of one step, and what a rule refuses.

torch's multi-tensor (``foreach``) paths run once per (device, dtype) group of the
parameters, each group deciding for itself (SGD's "every momentum buffer exists"); its
adaptive rules work on complex parameters through ``torch.view_as_real``. A rule object
remembers the tensors it serves and refuses others before any state changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__: list[str] = []

Signature = list[tuple[tuple[int, ...], torch.dtype, torch.device]]
"""Per tensor: its shape, dtype and device."""


def by_device_dtype(params: Sequence[Tensor]) -> list[list[int]]:
    """Positions in ``params`` by (device, dtype), as ``_group_tensors_by_device_and_dtype``.

    Each group keeps the order of ``params``; the groups come in order of first
    appearance (their order cannot change any bit: they share no tensor).

    Example:
        >>> import torch
        >>> by_device_dtype([torch.zeros(1), torch.zeros(1).half(), torch.zeros(2)])
        [[0, 2], [1]]
    """
    found: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for k, p in enumerate(params):
        found.setdefault((p.device, p.dtype), []).append(k)
    return list(found.values())


def foreach_default(params: Sequence[Tensor]) -> bool:
    """torch.optim's default ``foreach``: plain tensors, all on a multi-tensor device."""
    devices = torch.utils._foreach_utils._get_foreach_kernels_supported_devices()
    return all(type(p) in (Tensor, nn.Parameter) and p.device.type in devices for p in params)


def real(tensors: Sequence[Tensor]) -> list[Tensor]:
    """``tensors`` with every complex one as its ``torch.view_as_real`` view (shared memory)."""
    return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]


def refuse_sparse(idx: list[int], grads: Sequence[Tensor], rule: str) -> None:
    """Raise ``RuntimeError`` (torch.optim's type) if a gradient is sparse."""
    for i, g in zip(idx, grads, strict=True):
        if g.is_sparse:
            raise RuntimeError(
                f"params[{i}] has a sparse gradient (layout {g.layout}), but {rule} takes "
                "dense gradients only (rules.Adagrad takes sparse ones, as torch.optim's)."
            )


def check_count(params: Sequence[Tensor], steps: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``params`` has one tensor per step count of the state."""
    if len(params) != steps.shape[0]:
        raise ValueError(
            f"params must be the {steps.shape[0]} tensors the state was made for, got "
            f"{len(params)} tensors; {name} takes the whole list (``p.grad = None`` skips one)."
        )


def signature(params: Sequence[Tensor]) -> Signature:
    """Shape, dtype and device of each tensor."""
    return [(tuple(p.shape), p.dtype, p.device) for p in params]


def _describe_tensor(sig: tuple[tuple[int, ...], torch.dtype, torch.device]) -> str:
    shape, dtype, device = sig
    return f"{str(dtype).removeprefix('torch.')} of shape {shape} on {device}"


def check_served(served: Signature, now: Signature, count: int, rule: str) -> None:
    """Raise ``ValueError`` naming the first tensor that is not the one ``served`` saw.

    ``count`` is the number of tensors the state holds.
    """
    if len(now) != count:
        raise ValueError(
            f"params must be the {count} tensors this {rule} was first used with, got {len(now)}."
        )
    if now == served:
        return
    for i, (was, got) in enumerate(zip(served, now, strict=True)):
        if was != got:
            raise ValueError(
                f"params must be the tensors this {rule} was first used with: params[{i}] "
                f"was {_describe_tensor(was)}, got {_describe_tensor(got)}. Use a fresh "
                "rule object for other parameters."
            )
