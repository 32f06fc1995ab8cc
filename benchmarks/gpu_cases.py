"""GPU cases: train_loop's device and graph engines against the minimal CUDA hand loop.

The minimal loop is the fastest eager loop one writes by hand: each loss goes into a
preallocated device tensor, the update is one ``torch._foreach_add_`` under ``no_grad``,
gradients are set to None, and the losses are read once at the end. Every timed call
ends with ``torch.cuda.synchronize()``, so whole runs are timed, not launches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from cases import Case
from torch import Tensor, nn

from gradbasics import ChainModel, mse_loss, train_loop


def _synced(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        fn()
        torch.cuda.synchronize()

    return run


def _minimal(model: nn.Module, batches: Callable[[], list[tuple[Tensor, Tensor]]], lr: float):  # type: ignore[no-untyped-def]
    params = list(model.parameters())

    def loop() -> list[float]:
        todo = batches()
        losses = torch.empty(len(todo), device="cuda")
        for b, (xb, yb) in enumerate(todo):
            loss = mse_loss(model(xb), yb)
            losses[b] = loss.detach()
            loss.backward()
            with torch.no_grad():
                torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)  # type: ignore[misc]
            for p in params:
                p.grad = None
        return losses.tolist()  # type: ignore[no-any-return]

    return loop


def chain_gpu_cases(steps: int, rounds: int) -> list[Case]:
    """Notes scale (1 row) and 16M elements, full batch, on the GPU."""
    out: list[Case] = []
    for label, rows, target_eager in (("1 row", 1, 1.05), ("16M rows", 1 << 24, 1.10)):
        x = torch.rand(rows, device="cuda") + 0.5
        t = torch.ones(rows, device="cuda")
        m_ours, m_min, m_graph, m_rec = (ChainModel(0.5, 0.5, 0.5, device="cuda") for _ in range(4))
        n = steps if rows == 1 else max(steps // 20, 10)
        hand = _minimal(m_min, lambda x=x, t=t: [(x, t)], 1e-4)

        def minimal(hand=hand, n=n) -> None:  # type: ignore[no-untyped-def]
            for _ in range(n):
                hand()

        def ours(m=m_ours, x=x, t=t, n=n) -> None:  # type: ignore[no-untyped-def]
            train_loop(m, x, t, epochs=n, lr=1e-4)

        def graph(m=m_graph, x=x, t=t, n=n) -> None:  # type: ignore[no-untyped-def]
            train_loop(m, x, t, epochs=n, lr=1e-4, graph=True)

        def rec(m=m_rec, x=x, t=t, n=n) -> None:  # type: ignore[no-untyped-def]
            train_loop(m, x, t, epochs=n, lr=1e-4, record=True)

        s_min = _synced(minimal)
        out.append(
            (
                f"gpu {label}: train_loop(lr) vs minimal",
                _synced(ours),
                s_min,
                target_eager,
                n,
                "step",
                rounds,
            )
        )
        out.append(
            (
                f"gpu {label}: graph=True vs minimal",
                _synced(graph),
                s_min,
                0.125 if rows == 1 else 1.10,
                n,
                "step",
                rounds,
            )
        )
        if rows == 1:
            out.append(
                (
                    f"gpu {label}: record=True vs record=False",
                    _synced(rec),
                    _synced(ours),
                    1.03,
                    n,
                    "step",
                    rounds,
                )
            )
    return out


def epoch_gpu_cases(rows: int, batch: int, rounds: int) -> list[Case]:
    """A Linear(8, 1) mini-batch epoch on the GPU (the minimal loop draws on the GPU)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 8, generator=gen).cuda()
    t = x.sum(1, keepdim=True) * 0.1 + 0.1 * torch.randn(rows, 1, generator=gen).cuda()
    torch.manual_seed(0)
    m_ours, m_min, m_graph = (nn.Linear(8, 1).cuda() for _ in range(3))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)

    def batches() -> list[tuple[Tensor, Tensor]]:
        perm = torch.randperm(rows, device="cuda")
        return [(x.index_select(0, i), t.index_select(0, i)) for i in perm.split(batch)]

    hand = _minimal(m_min, batches, 1e-3)

    def ours() -> None:
        train_loop(m_ours, x, t, epochs=1, lr=1e-3, batch_size=batch, generator=g1)

    def graph() -> None:
        train_loop(m_graph, x, t, epochs=3, lr=1e-3, batch_size=batch, generator=g2, graph=True)

    def hand3() -> None:
        for _ in range(3):
            hand()

    return [
        (
            "gpu epoch: train_loop vs minimal",
            _synced(ours),
            _synced(hand),
            1.05,
            1,
            "epoch",
            rounds,
        ),
        (
            "gpu epoch: graph=True (3 epochs) vs minimal",
            _synced(graph),
            _synced(hand3),
            0.5,
            3,
            "epoch",
            rounds,
        ),
    ]
