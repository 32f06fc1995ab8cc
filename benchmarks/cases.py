"""The benchmark cases: each gradbasics path against the hand-written loop it replaces."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, TensorDataset

from gradbasics import ChainModel, manual_sgd_step, mse_loss, rules, train_loop


@dataclass
class Sizes:
    """Work per timed call; ``tiny()`` for the smoke run in the test suite."""

    chain_steps: int = 300
    update_tensors: int = 80
    update_width: int = 256
    update_calls: int = 20
    epoch_rows: int = 100_000
    epoch_features: int = 16
    batch: int = 64
    rounds: int = 21
    epoch_rounds: int = 7

    @classmethod
    def tiny(cls) -> Sizes:
        """Sizes that finish in about a second."""
        return cls(
            chain_steps=5,
            update_tensors=4,
            update_width=8,
            update_calls=2,
            epoch_rows=256,
            batch=64,
            rounds=3,
            epoch_rounds=3,
        )


INFO = float("inf")  # a measurement to report, not a target

Case = tuple[str, Callable[[], object], Callable[[], object], float, int, str, int]


def _chain_data() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([2.0]), torch.tensor([1.0])


def chain_cases(s: Sizes) -> list[Case]:
    """train_loop on ChainModel (full batch) against the minimal and idiomatic loops."""
    x, t = _chain_data()
    n = s.chain_steps
    ours_model, min_model, idiom_model, opt_model = (ChainModel() for _ in range(4))
    idiom_opt = torch.optim.SGD(idiom_model.parameters(), lr=1e-4)
    opt_opt = torch.optim.SGD(opt_model.parameters(), lr=1e-4)
    min_params = list(min_model.parameters())

    def ours() -> None:
        train_loop(ours_model, x, t, epochs=n, lr=1e-4)

    def minimal() -> None:
        for _ in range(n):
            loss = torch.nn.functional.mse_loss(min_model(x), t)
            loss.backward()
            with torch.no_grad():
                for p in min_params:
                    p.add_(p.grad, alpha=-1e-4)  # type: ignore[arg-type]
                    p.grad = None

    def idiomatic() -> None:
        for _ in range(n):
            loss = torch.nn.functional.mse_loss(idiom_model(x), t)
            loss.backward()
            idiom_opt.step()
            idiom_opt.zero_grad()

    def ours_opt() -> None:
        train_loop(opt_model, x, t, epochs=n, optimizer=opt_opt)

    f_model = ChainModel()

    def ours_same_loss() -> None:
        # Informational: the same F.mse_loss call as the baseline, so the ratio is the
        # loop's own overhead (gradbasics' mse_loss skips F.mse_loss's broadcasting checks).
        train_loop(f_model, x, t, epochs=n, lr=1e-4, loss_fn=torch.nn.functional.mse_loss)

    y = ChainModel()(x)  # an output that needs a gradient, as in training
    calls = 20 * n

    def our_loss() -> None:
        for _ in range(calls):
            mse_loss(y, t)

    def torch_loss() -> None:
        for _ in range(calls):
            torch.nn.functional.mse_loss(y, t)

    return [
        ("train_loop(lr) vs minimal loop", ours, minimal, 1.05, n, "step", s.rounds),
        ("train_loop(lr) vs SGD+zero_grad loop", ours, idiomatic, 0.80, n, "step", s.rounds),
        (
            "train_loop(optimizer=SGD) vs SGD+zero_grad",
            ours_opt,
            idiomatic,
            1.05,
            n,
            "step",
            s.rounds,
        ),
        (
            "info: train_loop(lr, F.mse_loss) vs minimal",
            ours_same_loss,
            minimal,
            INFO,
            n,
            "step",
            s.rounds,
        ),
        (
            "info: train_loop(lr) vs the same with F.mse_loss",
            ours,
            ours_same_loss,
            INFO,
            n,
            "step",
            s.rounds,
        ),
        (
            "info: mse_loss vs F.mse_loss (chain's shapes)",
            our_loss,
            torch_loss,
            INFO,
            calls,
            "call",
            s.rounds,
        ),
    ]


def update_case(s: Sizes) -> list[Case]:
    """manual_sgd_step against torch.optim.SGD(...).step() on many tensors."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(s.update_width, s.update_width) for _ in range(s.update_tensors // 2)]
    ours_p = [p for layer in layers for p in layer.parameters()]
    base_p = [p.detach().clone().requires_grad_(True) for p in ours_p]
    for p, q in zip(ours_p, base_p, strict=True):
        p.grad = torch.randn_like(p) * 1e-6
        q.grad = p.grad.clone()
    sgd = torch.optim.SGD(base_p, lr=1e-3)

    def ours() -> None:
        for _ in range(s.update_calls):
            manual_sgd_step(ours_p, 1e-3)

    def baseline() -> None:
        for _ in range(s.update_calls):
            sgd.step()

    name = f"manual_sgd_step vs SGD.step ({len(ours_p)} tensors)"
    # Memory-bound: the ratio is noisier than the others, so it gets twice the rounds.
    return [(name, ours, baseline, 0.85, s.update_calls, "step", 2 * s.rounds)]


def rules_cases(s: Sizes) -> list[Case]:
    """Each rule of gradbasics.rules against its torch.optim twin's step() on many tensors."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(s.update_width, s.update_width) for _ in range(s.update_tensors // 2)]
    source = [p.detach() for layer in layers for p in layer.parameters()]
    pairs = [
        (rules.SGD(momentum=0.9), torch.optim.SGD, {"momentum": 0.9}),
        (rules.Adagrad(), torch.optim.Adagrad, {}),
        (rules.RMSprop(), torch.optim.RMSprop, {}),
        (rules.Adam(), torch.optim.Adam, {}),
        (rules.AdamW(), torch.optim.AdamW, {}),
    ]
    out: list[Case] = []
    for rule, opt_cls, hyper in pairs:
        ours_p = [p.clone().requires_grad_(True) for p in source]
        base_p = [p.clone().requires_grad_(True) for p in source]
        for p, q in zip(ours_p, base_p, strict=True):
            p.grad = torch.randn_like(p) * 1e-3
            q.grad = p.grad.clone()
        opt = opt_cls(base_p, lr=1e-3, **hyper)

        def ours(rule: rules.Rule = rule, ps: list[torch.Tensor] = ours_p) -> None:
            for _ in range(s.update_calls):
                rule(ps, 1e-3)

        def baseline(opt: torch.optim.Optimizer = opt) -> None:
            for _ in range(s.update_calls):
                opt.step()

        name = f"rules.{type(rule).__name__} vs torch.optim ({len(source)} tensors)"
        out.append((name, ours, baseline, 0.85, s.update_calls, "step", 2 * s.rounds))
    return out


def epoch_cases(s: Sizes) -> list[Case]:
    """One mini-batch epoch: train_loop against the DataLoader(shuffle=True) loop."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(s.epoch_rows, s.epoch_features, generator=gen)
    # Noise keeps the residuals from shrinking into denormal floats, which would slow
    # whichever model has trained longest and bias the comparison.
    t = x.sum(1, keepdim=True) * 0.1 + 0.1 * torch.randn(s.epoch_rows, 1, generator=gen)
    torch.manual_seed(0)
    ours_m, rec_m, base_m = (torch.nn.Linear(s.epoch_features, 1) for _ in range(3))
    loader = DataLoader(TensorDataset(x, t), batch_size=s.batch, shuffle=True)
    base_opt = torch.optim.SGD(base_m.parameters(), lr=1e-3)
    g_ours, g_rec = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)

    def ours() -> None:
        train_loop(ours_m, x, t, epochs=1, lr=1e-3, batch_size=s.batch, generator=g_ours)

    def ours_record() -> None:
        train_loop(rec_m, x, t, epochs=1, lr=1e-3, batch_size=s.batch, generator=g_rec, record=True)

    probe = x[: s.batch]  # a fixed probe batch the size of a training batch
    probe_m, probe_base_m = (torch.nn.Linear(s.epoch_features, 1) for _ in range(2))
    g_probe, g_probe_base = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)

    def ours_probe() -> None:
        train_loop(probe_m, x, t, epochs=1, lr=1e-3, batch_size=s.batch, generator=g_probe,
                   record=True, probe=probe)  # fmt: skip

    def plain_then_probe() -> None:
        # The bound: the same epoch, then one forward pass of the probe.
        train_loop(probe_base_m, x, t, epochs=1, lr=1e-3, batch_size=s.batch,
                   generator=g_probe_base)  # fmt: skip
        probe_base_m.eval()
        with torch.no_grad():
            probe_base_m(probe)
        probe_base_m.train()

    vx, vt = x[: s.epoch_rows // 5], t[: s.epoch_rows // 5]  # validation rows, a fifth
    val_m, hand_m = (torch.nn.Linear(s.epoch_features, 1) for _ in range(2))
    g_val, g_hand = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)

    def ours_val() -> None:
        train_loop(
            val_m, x, t, epochs=1, lr=1e-3, batch_size=s.batch, generator=g_val, val=(vx, vt)
        )

    def plain_then_forward() -> None:
        # The bound: the same epoch, then one forward pass over the validation rows.
        train_loop(hand_m, x, t, epochs=1, lr=1e-3, batch_size=s.batch, generator=g_hand)
        hand_m.eval()
        with torch.no_grad():
            for xb, tb in zip(vx.split(s.batch), vt.split(s.batch), strict=True):
                torch.nn.functional.mse_loss(hand_m(xb), tb)
        hand_m.train()

    def dataloader_loop() -> None:
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(base_m(xb), yb)
            loss.backward()
            base_opt.step()
            base_opt.zero_grad()

    def our_batches() -> None:
        # The data handling of train_loop alone: a CPU permutation and index_select.
        perm = torch.randperm(s.epoch_rows, generator=g_ours)
        for rows in perm.split(s.batch):
            x.index_select(0, rows)
            t.index_select(0, rows)

    def loader_batches() -> None:
        for _ in loader:
            pass

    r = s.epoch_rounds
    return [
        ("epoch: train_loop vs DataLoader loop", ours, dataloader_loop, 0.60, 1, "epoch", r),
        (
            "epoch data only: randperm vs DataLoader",
            our_batches,
            loader_batches,
            0.10,
            1,
            "epoch",
            r,
        ),
        ("epoch: record=True vs record=False", ours_record, ours, 1.03, 1, "epoch", r),
        (
            "epoch: record + probe vs epoch + a probe forward pass",
            ours_probe,
            plain_then_probe,
            1.03,
            1,
            "epoch",
            r,
        ),
        (
            "epoch: val= vs epoch + a val forward pass",
            ours_val,
            plain_then_forward,
            1.05,
            1,
            "epoch",
            r,
        ),
    ]


def import_time(repeats: int = 7) -> float:
    """Median seconds of ``from gradbasics import train_loop`` after ``import torch``.

    ``import gradbasics`` alone imports its names lazily, so the first use is timed.
    """
    code = (
        "import time, sys, torch; t = time.perf_counter(); from gradbasics import train_loop; "
        "d = time.perf_counter() - t; assert 'matplotlib' not in sys.modules; print(d)"
    )
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout))
    return sorted(times)[len(times) // 2]
