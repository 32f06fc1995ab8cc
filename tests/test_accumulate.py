"""Gradient accumulation: k batches of b rows make the update of one batch of k*b rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradbasics import TrainHistory, rules, train_loop
from gradbasics.callbacks import Callback, Step
from helpers import assert_same_bits, params_of


def _data(rows: int = 70) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(rows, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return x, torch.sin(x).sum(1, keepdim=True)


def _model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _kw(how: str, m: nn.Module) -> dict[str, Any]:
    if how == "optimizer":
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        return {"optimizer": opt}
    if how == "rule":
        return {"lr": 0.01, "update": rules.Adam()}
    return {"lr": 0.1}


@pytest.mark.parametrize("how", ["lr", "optimizer", "rule"])
@pytest.mark.parametrize(("b", "k"), [(5, 4), (4, 3), (7, 2)])  # 70 rows: partial groups too
def test_accumulating_k_batches_equals_one_batch_of_k_times_the_rows(
    how: str, b: int, k: int
) -> None:
    x, t = _data()
    runs = []
    for size, acc in ((b, k), (b * k, 1)):
        m = _model()
        h = train_loop(m, x, t, epochs=3, batch_size=size, accumulate=acc,
                       generator=torch.Generator().manual_seed(2), **_kw(how, m))  # fmt: skip
        runs.append((params_of(m), h))
    for name, value in runs[0][0].items():
        torch.testing.assert_close(value, runs[1][0][name], rtol=0, atol=1e-12)
    # the epoch loss keeps its meaning: a row-weighted mean over the same rows
    for ours, big in zip(runs[0][1].losses[:1], runs[1][1].losses[:1], strict=True):
        assert ours == pytest.approx(big, rel=1e-12)
    assert not torch.equal(runs[0][0]["0.weight"], _model().state_dict()["0.weight"])


def test_accumulate_one_is_the_plain_step_bit_for_bit() -> None:
    x, t = _data()
    a, b = _model(), _model()
    train_loop(a, x, t, epochs=2, lr=0.1, batch_size=8, generator=torch.Generator().manual_seed(3))
    train_loop(b, x, t, epochs=2, lr=0.1, batch_size=8, accumulate=1,
               generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert_same_bits(params_of(a), params_of(b))


def test_step_hooks_and_batch_schedules_run_once_per_update() -> None:
    seen: list[tuple[int, bool]] = []

    class Count(Callback):
        def on_before_update(self, step: Step) -> None:
            seen.append((step.batch, step.last))

    x, t = _data(23)  # batches of 5: 5, 5, 5, 5, 3; groups of 2: 2, 2, 1
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)  # halves per update
    h = train_loop(m, x, t, epochs=1, batch_size=5, accumulate=2, optimizer=opt,
                   scheduler=sched, scheduler_interval="batch", callbacks=[Count()])  # fmt: skip
    assert seen == [(1, False), (3, False), (4, True)]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    assert len(h.losses) == 1


def test_accumulate_resumes_and_a_changed_one_is_refused(tmp_path: Path) -> None:
    from gradbasics import CheckpointError

    x, t = _data()
    path = tmp_path / "c.pt"

    def run(epochs: int, acc: int, resume: bool) -> TrainHistory:
        return train_loop(_model(), x, t, epochs=epochs, lr=0.1, batch_size=5, accumulate=acc,
                          generator=torch.Generator().manual_seed(4), checkpoint=path,
                          resume=resume)  # fmt: skip

    whole = run(4, 3, False)
    path.unlink()
    run(2, 3, False)
    assert run(4, 3, True).losses == whole.losses
    with pytest.raises(CheckpointError, match="accumulate: saved 3, now 2"):
        run(4, 2, True)


@pytest.mark.parametrize(
    ("value", "error", "says"),
    [
        (0, ValueError, "accumulate must be >= 1, got 0"),
        (2.0, TypeError, r"accumulate must be an int, got 2.0 \(float\)"),
        (True, TypeError, r"accumulate must be an int, got True \(bool\)"),
    ],
)
def test_bad_accumulate_is_refused_before_anything_changes(
    value: object, error: type[Exception], says: str
) -> None:
    x, t = _data()
    m = _model()
    before = params_of(m)
    with pytest.raises(error, match=says):
        train_loop(m, x, t, epochs=1, lr=0.1, batch_size=5, accumulate=value)  # type: ignore[arg-type]
    mae = {"m": lambda o, y: (o - y).abs().mean()}
    with pytest.raises(ValueError, match=r"accumulate.*TrainMetrics.*whole_batches"):
        train_loop(m, x, t, epochs=1, lr=0.1, batch_size=5, accumulate=2, val=(x, t),
                   metrics=mae, train_metrics=True)  # fmt: skip
    assert_same_bits(params_of(m), before)


def test_a_nan_mid_group_applies_no_update_and_leaves_no_gradient() -> None:
    from gradbasics import DivergenceError

    x, t = _data(20)
    calls = [0]

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        scale = float("inf") if calls[0] == 3 else 1.0  # the third batch of a group of five
        return ((out - target) ** 2).mean() * scale

    m = _model()
    before = params_of(m)
    with pytest.raises(DivergenceError):
        train_loop(m, x, t, epochs=1, lr=0.1, batch_size=4, accumulate=5, loss_fn=loss)
    assert_same_bits(params_of(m), before)
    assert all(p.grad is None for p in m.parameters())
