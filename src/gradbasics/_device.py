"""Host-device traffic of the training loop: non-blocking copies and sanctioned reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

__all__: list[str] = []


@contextmanager
def sanctioned_sync() -> Iterator[None]:
    """Exempt train_loop's own reads from ``torch.cuda.set_sync_debug_mode``.

    They are the data checks before training and one loss read per epoch; with them
    exempt, that mode flags every other synchronisation.
    """
    if not torch.cuda.is_initialized():
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """Copy a CPU tensor to a CUDA device without blocking the host (pinned memory)."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
