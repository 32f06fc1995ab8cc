"""Reference rules as torch optimizers: under torch's schedulers, equal to torch.optim."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradbasics import CheckpointError, rules, train_loop
from helpers import assert_same_bits, params_of

CASES: list[tuple[Callable[[], rules.Rule], Callable[..., torch.optim.Optimizer]]] = [
    (lambda: rules.Adam(), lambda ps, lr: torch.optim.Adam(ps, lr=lr, foreach=False)),
    (lambda: rules.Adam(weight_decay=0.1, amsgrad=True),
     lambda ps, lr: torch.optim.Adam(ps, lr=lr, weight_decay=0.1, amsgrad=True, foreach=False)),
    (lambda: rules.AdamW(weight_decay=0.05),
     lambda ps, lr: torch.optim.AdamW(ps, lr=lr, weight_decay=0.05, foreach=False)),
    (lambda: rules.SGD(momentum=0.9, nesterov=True),
     lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True, foreach=False)),
    (lambda: rules.RMSprop(momentum=0.5, centered=True),
     lambda ps, lr: torch.optim.RMSprop(ps, lr=lr, momentum=0.5, centered=True, foreach=False)),
    (lambda: rules.Adagrad(lr_decay=0.01),
     lambda ps, lr: torch.optim.Adagrad(ps, lr=lr, lr_decay=0.01, foreach=False)),
]  # fmt: skip


def _net(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).to(device)


def _steps(
    net: nn.Module, opt: torch.optim.Optimizer, sched: Any, n: int, first: int = 0
) -> list[float]:
    """Steps ``first`` .. ``n - 1`` on the batches of an ``n``-step run."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, 3, generator=g).to(next(net.parameters()).device)
    lrs = []
    for i in range(first, n):
        loss = (net(x[i]) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    return lrs


@pytest.mark.parametrize("case", range(len(CASES)))
def test_a_rule_optimizer_under_steplr_equals_torch_optim(device: torch.device, case: int) -> None:
    make_rule, make_torch = CASES[case]
    ours, theirs = _net(device), _net(device)

    def groups(net: Any) -> list[dict[str, Any]]:  # two groups at different rates
        return [
            {"params": list(net[0].parameters())},
            {"params": list(net[2].parameters()), "lr": 0.003},
        ]

    opt = rules.as_optimizer(make_rule(), groups(ours), lr=0.01)
    ref = make_torch(groups(theirs), 0.01)
    step_lr: Any = torch.optim.lr_scheduler.StepLR
    lrs = _steps(ours, opt, step_lr(opt, 3, gamma=0.5), 10)
    ref_lrs = _steps(theirs, ref, step_lr(ref, 3, gamma=0.5), 10)
    assert lrs == ref_lrs and lrs[-1] < lrs[0]
    assert_same_bits(params_of(ours), params_of(theirs))


def test_its_state_dict_resumes_exactly_and_is_checked() -> None:
    device = torch.device("cpu")
    whole, part = _net(device), _net(device)
    opt_whole = rules.as_optimizer(rules.Adam(), whole.parameters(), lr=0.01)
    _steps(whole, opt_whole, torch.optim.lr_scheduler.StepLR(opt_whole, 100), 6)
    opt = rules.as_optimizer(rules.Adam(), part.parameters(), lr=0.01)
    x = torch.randn(6, 8, 3, generator=torch.Generator().manual_seed(1))
    for i in range(3):  # the first three steps of the six
        (part(x[i]) ** 2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    saved = opt.state_dict()
    fresh = rules.as_optimizer(rules.Adam(), part.parameters(), lr=0.01)
    fresh.load_state_dict(saved)
    _steps(part, fresh, torch.optim.lr_scheduler.StepLR(fresh, 100), 6, first=3)
    assert_same_bits(params_of(part), params_of(whole))
    other = rules.as_optimizer(rules.Adam(betas=(0.8, 0.9)), part.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="must hold 1 rule states"):
        other.load_state_dict({**saved, "rules": []})
    other.load_state_dict(saved)  # as torch's: the saved groups' hyperparameters win
    assert other.param_groups[0]["betas"] == (0.9, 0.999) == other.rules[0].hyper["betas"]


def test_train_loop_with_a_rule_optimizer_and_a_scheduler_resumes(tmp_path: Path) -> None:
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(2))
    t = x.sum(1, keepdim=True)

    def run(epochs: int, resume: bool) -> nn.Module:
        net = _net(torch.device("cpu"))
        opt = rules.as_optimizer(rules.Adam(), net.parameters(), lr=0.05)
        train_loop(net, x, t, epochs=epochs, optimizer=opt, batch_size=8,
                   scheduler=torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5),
                   generator=torch.Generator().manual_seed(3), checkpoint=tmp_path / "c.pt",
                   resume=resume)  # fmt: skip
        return net

    run(2, False)
    resumed = run(5, True)
    (tmp_path / "c.pt").unlink()
    assert_same_bits(params_of(resumed), params_of(run(5, False)))
    net = _net(torch.device("cpu"))
    other = rules.as_optimizer(rules.Adam(betas=(0.8, 0.9)), net.parameters(), lr=0.05)
    with pytest.raises(CheckpointError, match=r"betas: saved \(0.9, 0.999\), now \(0.8, 0.9\)"):
        train_loop(net, x, t, epochs=6, optimizer=other, checkpoint=tmp_path / "c.pt",
                   resume=True)  # fmt: skip


def test_group_hyperparameters_and_onecycle_act_as_in_torch() -> None:
    device = torch.device("cpu")
    ours, theirs = _net(device), _net(device)

    def groups(net: Any) -> list[dict[str, Any]]:  # no decay on the last layer
        return [
            {"params": list(net[0].parameters())},
            {"params": list(net[2].parameters()), "weight_decay": 0.0},
        ]

    opt = rules.as_optimizer(rules.AdamW(weight_decay=0.5), groups(ours), lr=0.01)
    ref = torch.optim.AdamW(groups(theirs), lr=0.01, weight_decay=0.5, foreach=False)
    cycle: Any = torch.optim.lr_scheduler.OneCycleLR  # cycles betas by default
    _steps(ours, opt, cycle(opt, 0.05, total_steps=10), 10)
    _steps(theirs, ref, cycle(ref, 0.05, total_steps=10), 10)
    assert_same_bits(params_of(ours), params_of(theirs))
    with pytest.raises(ValueError, match=r"param group: weight_decay must be"):
        rules.as_optimizer(rules.AdamW(), [{"params": list(ours.parameters()),
                                            "weight_decay": -1.0}], lr=0.01)  # fmt: skip


def test_bad_rules_are_refused() -> None:
    w = nn.Parameter(torch.ones(2))
    with pytest.raises(TypeError, match=r"rule must be a gradbasics.rules.Rule, got 'adam'"):
        rules.as_optimizer("adam", [w], lr=0.1)  # type: ignore[arg-type]
    used = rules.Adam()
    w.grad = torch.ones(2)
    used([w], 0.1)
    with pytest.raises(ValueError, match="rule must be fresh"):
        rules.as_optimizer(used, [w], lr=0.1)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got -1"):
        rules.as_optimizer(rules.Adam(), [w], lr=-1)
