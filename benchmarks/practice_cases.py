"""Cases for what practitioners reach for first: bf16 autocast and gradient accumulation.

Each against the hand-written loop that does the same work: the same permutation and
``index_select`` per batch, ``loss.item()`` per batch (what any loop reads to report and
to stop on NaN), then torch's AMP recipe or the accumulation by hand.
"""

from __future__ import annotations

import torch
from cases import Case, Sizes
from torch import nn

from gradbasics import train_loop


def _mlp(features: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, 64), nn.ReLU(), nn.Linear(64, 1))


def practice_cases(s: Sizes) -> list[Case]:
    """``precision="bf16"`` and ``accumulate=4`` against their hand-written loops."""
    rows = max(s.epoch_rows // 5, 64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, s.epoch_features, generator=gen)
    t = x.sum(1, keepdim=True) * 0.1 + 0.1 * torch.randn(rows, 1, generator=gen)
    ours_amp, hand_amp = _mlp(s.epoch_features), _mlp(s.epoch_features)
    opt_ours = torch.optim.SGD(ours_amp.parameters(), lr=1e-3)
    opt_hand = torch.optim.SGD(hand_amp.parameters(), lr=1e-3)
    g_ours, g_hand = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    mse = nn.functional.mse_loss

    def ours_bf16() -> None:
        train_loop(ours_amp, x, t, epochs=1, optimizer=opt_ours, batch_size=s.batch,
                   generator=g_ours, precision="bf16")  # fmt: skip

    def hand_bf16() -> None:
        for idx in torch.randperm(rows, generator=g_hand).split(s.batch):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = mse(hand_amp(x.index_select(0, idx)), t.index_select(0, idx))
            loss.item()
            loss.backward()
            opt_hand.step()
            opt_hand.zero_grad(set_to_none=True)

    ours_acc, hand_acc = _mlp(s.epoch_features), _mlp(s.epoch_features)
    hand_params = list(hand_acc.parameters())
    a_ours, a_hand = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)

    def ours_accumulate() -> None:
        train_loop(ours_acc, x, t, epochs=1, lr=1e-3, batch_size=s.batch, accumulate=4,
                   generator=a_ours)  # fmt: skip

    def hand_accumulate() -> None:
        batches = torch.randperm(rows, generator=a_hand).split(s.batch)
        group = 0
        for b, idx in enumerate(batches):
            loss = mse(hand_acc(x.index_select(0, idx)), t.index_select(0, idx))
            loss.item()
            (loss * len(idx)).backward()
            group += len(idx)
            if (b + 1) % 4 and b + 1 < len(batches):
                continue
            with torch.no_grad():
                for p in hand_params:
                    p.grad.div_(group)  # type: ignore[union-attr]
                    p.add_(p.grad, alpha=-1e-3)  # type: ignore[arg-type]
                    p.grad = None
            group = 0

    r = s.epoch_rounds
    return [
        ("epoch: precision='bf16' vs the AMP recipe", ours_bf16, hand_bf16, 1.05, 1, "epoch", r),
        ("epoch: accumulate=4 vs accumulation by hand", ours_accumulate, hand_accumulate,
         1.05, 1, "epoch", r),
    ]  # fmt: skip
