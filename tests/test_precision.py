"""Mixed precision against torch's AMP recipe written by hand, bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradbasics import CheckpointError, TrainHistory, rules, train_loop
from gradbasics.callbacks import Callback, Step
from helpers import assert_same_bits, params_of

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    return x, torch.tanh(x).sum(1, keepdim=True)


def _model(device: torch.device) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1)).to(device)


def _by_hand(
    device: torch.device, precision: str, epochs: int, batch: int, scaler_init: float = 65536.0
) -> tuple[nn.Module, list[float]]:
    """The AMP recipe of torch's docs: autocast forward and loss, scaled backward, step."""
    x, t = (v.to(device) for v in _data())
    model = _model(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = (
        torch.amp.GradScaler(device.type, init_scale=scaler_init) if precision == "fp16" else None
    )
    g = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g).to(device)
        total = 0.0
        for idx in perm.split(batch):
            with torch.autocast(device.type, dtype=DTYPES[precision]):
                out = model(x.index_select(0, idx))
                loss = nn.functional.mse_loss(out, t.index_select(0, idx))
            total += loss.item() * len(idx)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            opt.zero_grad(set_to_none=True)
        losses.append(total / x.shape[0])
    return model, losses


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_equals_the_amp_recipe_by_hand(device: torch.device, precision: str) -> None:
    x, t = (v.to(device) for v in _data())
    model = _model(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    h = train_loop(model, x, t, epochs=3, batch_size=8, optimizer=opt, precision=precision,
                   generator=torch.Generator().manual_seed(2))  # fmt: skip
    hand, losses = _by_hand(device, precision, 3, 8)
    assert_same_bits(params_of(model), params_of(hand))
    assert h.losses == pytest.approx(losses, rel=1e-6)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    plain = _model(device)
    train_loop(plain, x, t, epochs=3, batch_size=8, generator=torch.Generator().manual_seed(2),
               optimizer=torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9))  # fmt: skip
    assert not torch.equal(params_of(plain)["0.weight"], params_of(model)["0.weight"])


def test_bf16_with_a_rule_by_lr_matches_by_hand(device: torch.device) -> None:
    x, t = (v.to(device) for v in _data())
    ours, theirs = _model(device), _model(device)
    train_loop(ours, x, t, epochs=2, lr=0.01, update=rules.Adam(), precision="bf16")
    rule = rules.Adam()
    for _ in range(2):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = nn.functional.mse_loss(theirs(x), t)
        loss.backward()
        rule(list(theirs.parameters()), 0.01)
        for p in theirs.parameters():
            p.grad = None
    assert_same_bits(params_of(ours), params_of(theirs))


def test_a_step_the_scaler_skips_is_not_a_divergence_and_hooks_see_unscaled_grads() -> None:
    from gradbasics.callbacks import MixedPrecision

    x, t = _data()
    norms: list[float] = []
    scales: list[float] = []

    class Norm(Callback):
        def on_before_update(self, step: Step) -> None:
            grads = [p.grad for p in self.loop.params if p.grad is not None]
            norms.append(float(torch.cat([g.reshape(-1) for g in grads]).norm()))
            scales.append(float(self.loop.scaler.get_scale()))

    model = _model(torch.device("cpu"))
    before = params_of(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    amp = MixedPrecision("fp16", init_scale=2.0**20)  # overflows fp16 at first
    h = train_loop(model, x, t, epochs=2, batch_size=8, optimizer=opt, callbacks=[amp, Norm()])
    assert len(h.losses) == 2  # the skipped steps are no DivergenceError
    assert scales[0] == 2.0**20 and scales[-1] < 2.0**20  # it backed off
    assert norms[0] != norms[0] or norms[0] == float("inf")  # the first step overflowed...
    finite = [n for n in norms if n == n and n != float("inf")]
    assert finite and max(finite) < 1e3  # ...later ones are seen unscaled (not ~2**15 larger)
    assert not torch.equal(params_of(model)["0.weight"], before["0.weight"])


def test_fp16_resumes_with_its_scaler(tmp_path: Path) -> None:
    device = torch.device("cpu")
    x, t = _data()

    def run(epochs: int, resume: bool, precision: str = "fp16") -> tuple[nn.Module, TrainHistory]:
        m = _model(device)
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        h = train_loop(m, x, t, epochs=epochs, batch_size=8, optimizer=opt, precision=precision,
                       generator=torch.Generator().manual_seed(2), checkpoint=tmp_path / "c.pt",
                       resume=resume)  # fmt: skip
        return m, h

    run(2, False)
    resumed, h = run(4, True)
    (tmp_path / "c.pt").unlink()
    whole, h2 = run(4, False)
    assert h.losses == h2.losses
    assert_same_bits(params_of(resumed), params_of(whole))
    (tmp_path / "c.pt").unlink()
    run(2, False)
    with pytest.raises(CheckpointError, match="'MixedPrecision' had another 'precision'"):
        run(4, True, precision="bf16")


@pytest.mark.parametrize(
    ("kw", "error", "says"),
    [
        ({"precision": "fp32", "lr": 0.1}, ValueError, "precision must be 'bf16', 'fp16' or None"),
        ({"precision": "fp16", "lr": 0.1}, ValueError, r"precision='fp16' needs optimizer="),
        ({"precision": "bf16", "lr": 0.1, "graph": True}, ValueError, "graph=True"),
    ],
)  # fmt: skip
def test_bad_precision_is_refused_before_anything_changes(
    kw: dict[str, Any], error: type[Exception], says: str
) -> None:
    x, t = _data()
    m = _model(torch.device("cpu"))
    before = params_of(m)
    with pytest.raises(error, match=says):
        train_loop(m, x, t, epochs=1, batch_size=8, **kw)
    assert_same_bits(params_of(m), before)
    double = _model(torch.device("cpu")).double()
    with pytest.raises(ValueError, match=r"needs a float32 model.*float64"):
        train_loop(double, x.double(), t.double(), epochs=1, lr=0.1, precision="bf16")


def test_bf16_with_accumulation_matches_by_hand() -> None:
    device = torch.device("cpu")
    x, t = _data()
    ours, theirs = _model(device), _model(device)
    opt = torch.optim.SGD(ours.parameters(), lr=0.05)
    train_loop(ours, x, t, epochs=1, batch_size=10, accumulate=2, optimizer=opt,
               precision="bf16", generator=torch.Generator().manual_seed(5))  # fmt: skip
    ref = torch.optim.SGD(theirs.parameters(), lr=0.05)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(5))
    for start in (0, 20):
        for part in (perm[start : start + 10], perm[start + 10 : start + 20]):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.mse_loss(theirs(x[part]), t[part])
            (loss * 10).backward()
        for p in theirs.parameters():
            assert p.grad is not None
            p.grad.div_(20)
        ref.step()
        ref.zero_grad(set_to_none=True)
    assert_same_bits(params_of(ours), params_of(theirs))


def test_a_precision_the_device_cannot_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.amp.autocast_mode, "is_autocast_available", lambda kind: False)
    x, t = _data()
    m = _model(torch.device("cpu"))
    before = params_of(m)
    with pytest.raises(ValueError, match=r"precision='bf16' cannot run on cpu: no autocast"):
        train_loop(m, x, t, epochs=1, lr=0.1, precision="bf16")
    assert_same_bits(params_of(m), before)
