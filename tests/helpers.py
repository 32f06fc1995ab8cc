"""Independent oracles shared by the tests: hand-written loops and closed forms."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def params_of(model: torch.nn.Module) -> dict[str, Tensor]:
    """Return a detached copy of every parameter and buffer, by name."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_bits(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    """Assert two name -> tensor maps are equal bit for bit (NaNs included)."""
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k].view(-1).view(torch.uint8), b[k].view(-1).view(torch.uint8)), k


def hand_chain_loop(
    x: Tensor, t: Tensor, *, epochs: int, lr: float, w: tuple[float, float, float] = (3, 4, 5)
) -> tuple[list[Tensor], list[float]]:
    """The notes' loop written out by hand: raw leaf tensors, torch.relu, p.add_ updates."""
    ws = [torch.tensor([v], dtype=x.dtype, device=x.device, requires_grad=True) for v in w]
    losses: list[float] = []
    for _ in range(epochs):
        out = ws[2] * torch.relu(ws[1] * (ws[0] * x))
        loss = ((out - t) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            for p in ws:
                assert p.grad is not None
                p.add_(p.grad, alpha=-lr)
                p.grad = None
    return [p.detach() for p in ws], losses


def reseal(path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    """Change a checkpoint's payload with ``edit`` and write it back with a valid checksum."""
    from gradbasics._ckptio import MAGIC

    raw = path.read_bytes()
    payload = torch.load(io.BytesIO(raw[len(MAGIC) + 32 :]), weights_only=True)
    edit(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    path.write_bytes(MAGIC + hashlib.sha256(body).digest() + body)


def format_1_file() -> tuple[bytes, bytes]:
    """A small checkpoint of format 1 (a torch.save'd dict wrapping the payload's bytes).

    The format before the checksum header, as gradbasics wrote it: returns the file's
    bytes and the payload's. The model is ``ChainModel(1.5, 2.5, 3.5)`` at epoch 4.
    """
    from gradbasics import ChainModel

    payload = {
        "model": {k: v.clone() for k, v in ChainModel(1.5, 2.5, 3.5).state_dict().items()},
        "optimizer_class": None, "optimizer": None, "generator": torch.get_rng_state(),
        "epoch": 4, "losses": [1.0, 0.5], "activations": {}, "settings": {},
    }  # fmt: skip
    inner = io.BytesIO()
    torch.save(payload, inner)
    blob = inner.getvalue()
    outer = {"format": "gradbasics.checkpoint", "version": 1, "payload": blob,
             "sha256": hashlib.sha256(blob).hexdigest()}  # fmt: skip
    buf = io.BytesIO()
    torch.save(outer, buf)
    return buf.getvalue(), blob
