"""gradbasics.rules against torch.optim, the oracle: the same bits, step after step.

Each rule mirrors both of torch's paths op for op: ``foreach=False`` (torch's default on
the CPU) and ``foreach=True`` (its default on CUDA). In float32 and float64 the two paths
agree with each other, except AdaGrad's last line; in float16 and bfloat16 they also
differ where an in-place multi-tensor call rounds a scalar factor differently (SGD and
RMSprop momentum and averaging). So every rule is compared with the path it mirrors.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from gradbasics import ChainModel, rules, train_loop
from helpers import assert_same_bits, params_of

CONFIGS: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "sgd-momentum-decay": (torch.optim.SGD, rules.SGD, {"momentum": 0.9, "weight_decay": 0.1}),
    "sgd-nesterov-maximize": (
        torch.optim.SGD,
        rules.SGD,
        {"momentum": 0.8, "nesterov": True, "maximize": True, "weight_decay": 0.05},
    ),
    "sgd-dampening": (torch.optim.SGD, rules.SGD, {"momentum": 0.7, "dampening": 0.3}),
    "adagrad": (
        torch.optim.Adagrad,
        rules.Adagrad,
        {"lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.1},
    ),
    "adagrad-maximize": (torch.optim.Adagrad, rules.Adagrad, {"maximize": True, "eps": 1e-6}),
    "rmsprop": (torch.optim.RMSprop, rules.RMSprop, {}),
    "rmsprop-centered-momentum": (
        torch.optim.RMSprop,
        rules.RMSprop,
        {"momentum": 0.9, "centered": True, "weight_decay": 0.1, "alpha": 0.9},
    ),
    "adam": (torch.optim.Adam, rules.Adam, {}),
    "adam-amsgrad-decay": (
        torch.optim.Adam,
        rules.Adam,
        {"amsgrad": True, "weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-6},
    ),
    "adamw": (torch.optim.AdamW, rules.AdamW, {}),
    "adamw-maximize-amsgrad": (
        torch.optim.AdamW,
        rules.AdamW,
        {"maximize": True, "amsgrad": True, "weight_decay": 0.3},
    ),
}
SHAPES = [(3, 4), (5,), (2, 2, 2), ()]
# Enough small tensors to form a multi-tensor group, and one large one alone.
MANY: list[tuple[int, ...]] = [(7,)] * 6 + [(200, 200)]


def _compare(
    name: str,
    dtype: torch.dtype,
    foreach: bool | None,
    *,
    shapes: list[tuple[int, ...]] = SHAPES,
    steps: int = 25,
    lr: float = 0.01,
    device: str = "cpu",
    seed: int = 0,
) -> tuple[list[Tensor], list[Tensor]]:
    """Run the rule and torch.optim side by side; the second parameter skips step 3."""
    opt_cls, rule_cls, hyper = CONFIGS[name]
    g = torch.Generator().manual_seed(seed)
    ours = [torch.randn(s, generator=g).to(device, dtype).requires_grad_() for s in shapes]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt = opt_cls(theirs, lr=lr, foreach=foreach, **hyper)
    rule = rule_cls(foreach=foreach, **hyper)
    for k in range(steps):
        for p, q in zip(ours, theirs, strict=True):
            grad = torch.randn(p.shape, generator=g).to(device, dtype)
            p.grad, q.grad = grad.clone(), grad.clone()
        if k == 3:  # torch skips a parameter without a gradient, its step count too
            ours[1].grad = theirs[1].grad = None
        rule(ours, lr)
        opt.step()
    return ours, theirs


def _same(a: list[Tensor], b: list[Tensor]) -> None:
    assert_same_bits(
        {str(i): t.detach() for i, t in enumerate(a)}, {str(i): t.detach() for i, t in enumerate(b)}
    )


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("foreach", [None, True], ids=["default", "foreach"])
def test_rule_equals_torch_optim_bit_for_bit(
    name: str, dtype: torch.dtype, foreach: bool | None
) -> None:
    _same(*_compare(name, dtype, foreach))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grouped_multi_tensor_calls_keep_the_single_tensor_bits(
    name: str, dtype: torch.dtype
) -> None:
    # Small tensors share multi-tensor calls on the CPU: still torch's default path.
    _same(*_compare(name, dtype, None, shapes=MANY, steps=8))


def test_torch_own_paths_disagree_where_the_docs_say() -> None:
    # Why the tests compare path with path: in float16, torch's in-place multi-tensor
    # multiply rounds the momentum factor unlike Tensor.mul_, so SGD's two paths differ.
    def run(foreach: bool) -> Tensor:
        p = torch.randn(64, generator=torch.Generator().manual_seed(0)).half().requires_grad_()
        opt = torch.optim.SGD([p], lr=0.01, momentum=0.9, foreach=foreach)
        g = torch.Generator().manual_seed(1)
        for _ in range(10):
            p.grad = torch.randn(64, generator=g).half()
            opt.step()
        return p.detach()

    assert not torch.equal(run(False), run(True))


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(list(CONFIGS)),
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3),
    steps=st.integers(1, 30),
    lr=st.floats(1e-5, 0.5),
    foreach=st.sampled_from([None, True]),
    seed=st.integers(0, 2**16),
)
def test_rules_equal_torch_optim_property(
    name: str, shape: list[int], steps: int, lr: float, foreach: bool | None, seed: int
) -> None:
    shapes = [tuple(shape), (3,), tuple(reversed(shape))]
    _same(*_compare(name, torch.float32, foreach, shapes=shapes, steps=steps, lr=lr, seed=seed))


def test_a_plausible_wrong_adam_differs() -> None:
    # Bias correction folded into m before the division: the same value on paper, other
    # bits in float32. If this passed the bit test, the bit test could not fail.
    _, theirs = _compare("adam", torch.float32, None)
    g = torch.Generator().manual_seed(0)
    wrong = [torch.randn(s, generator=g).requires_grad_() for s in SHAPES]
    m = [torch.zeros_like(p) for p in wrong]
    v = [torch.zeros_like(p) for p in wrong]
    count = [0] * len(wrong)
    for k in range(25):
        grads = [torch.randn(p.shape, generator=g) for p in wrong]
        with torch.no_grad():
            for i, (p, grad) in enumerate(zip(wrong, grads, strict=True)):
                if k == 3 and i == 1:
                    continue
                count[i] += 1
                m[i].lerp_(grad, 0.1)
                v[i].mul_(0.999).addcmul_(grad, grad, value=0.001)
                m_hat = m[i] / (1 - 0.9 ** count[i])
                denom = (v[i].sqrt() / (1 - 0.999 ** count[i]) ** 0.5).add_(1e-8)
                p.addcdiv_(m_hat, denom, value=-0.01)
    assert all(
        torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(wrong, theirs, strict=True)
    )
    assert any(not torch.equal(a, b) for a, b in zip(wrong, theirs, strict=True))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("batch_size", [None, 7])
def test_train_loop_with_a_rule_equals_train_loop_with_the_optimizer(
    name: str, batch_size: int | None
) -> None:
    opt_cls, rule_cls, hyper = CONFIGS[name]
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    t = x.sum(1, keepdim=True)
    runs = []
    for use_rule in (True, False):
        torch.manual_seed(2)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        kw: dict[str, object] = (
            {"lr": 0.01, "update": rule_cls(**hyper)}
            if use_rule
            else {"optimizer": opt_cls(model.parameters(), lr=0.01, **hyper)}
        )
        h = train_loop(
            model,
            x,
            t,
            epochs=5,
            batch_size=batch_size,
            generator=torch.Generator().manual_seed(1),
            **kw,  # type: ignore[arg-type]
        )
        runs.append((h.losses, params_of(model)))
    assert runs[0][0] == runs[1][0]
    assert_same_bits(runs[0][1], runs[1][1])


def test_rule_state_round_trips_through_torch_save_weights_only() -> None:
    ours, _ = _compare("adam-amsgrad-decay", torch.float32, None)
    rule = rules.Adam(amsgrad=True, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)
    for p in ours:
        p.grad = torch.ones_like(p)
    rule(ours, 0.01)
    buf = io.BytesIO()
    torch.save(rule.state_dict(), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    again = rules.Adam(amsgrad=True, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)
    again.load_state_dict(saved, ours)
    assert again.state is not None and rule.state is not None
    for a, b in zip(again.state.exp_avg_sq, rule.state.exp_avg_sq, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(again.state.steps, rule.state.steps)


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: rules.SGD(momentum=-0.1), r"momentum must be a finite number >= 0, got -0\.1"),
        (lambda: rules.SGD(nesterov=True), r"nesterov=True needs momentum > 0.*momentum=0\.0"),
        (lambda: rules.Adam(betas=(0.9, 1.0)), r"betas\[1\] must be in \[0, 1\), got 1\.0"),
        (lambda: rules.Adam(betas=0.9), r"betas must be a pair of numbers, got 0\.9"),  # type: ignore[arg-type]
        (lambda: rules.Adam(amsgrad=1), r"amsgrad must be a bool, got 1 \(int\)"),  # type: ignore[arg-type]
        (lambda: rules.RMSprop(alpha=1.5), r"alpha must be in \[0, 1\), got 1\.5"),
        (lambda: rules.Adagrad(eps=-1.0), r"eps must be a finite number > 0, got -1\.0"),
        (
            lambda: rules.AdamW(weight_decay="0.1"),  # type: ignore[arg-type]
            r"weight_decay must be a real number, got '0\.1'",
        ),
        (lambda: rules.Adagrad(foreach="yes"), r"foreach must be a bool, got 'yes'"),  # type: ignore[arg-type]
    ],
)
def test_bad_hyperparameters_are_refused_by_name(make: Callable[[], object], pattern: str) -> None:
    with pytest.raises((ValueError, TypeError), match=pattern):
        make()


def test_a_rule_refuses_other_parameters_and_bad_state_without_changes() -> None:
    rule = rules.Adam()
    w = [torch.ones(2, requires_grad=True)]
    w[0].grad = torch.ones(2)
    rule(w, 0.1)
    before = w[0].detach().clone()
    with pytest.raises(ValueError, match="params must be the 1 tensors"):
        rule([w[0], torch.ones(3, requires_grad=True)], 0.1)
    with pytest.raises(ValueError, match="hyperparameters"):
        rules.Adam(eps=1e-3).load_state_dict(rule.state_dict(), w)
    with pytest.raises(ValueError, match="does not fit"):
        rules.Adam().load_state_dict(rule.state_dict(), [torch.ones(3, requires_grad=True)])
    with pytest.raises(TypeError, match=r"lr must be a real number"):
        rule(w, "0.1")  # type: ignore[arg-type]
    assert torch.equal(w[0].detach(), before)


def test_train_loop_resume_refuses_a_rule_with_other_hyperparameters(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "run.pt"
    x, t = torch.tensor([2.0]), torch.tensor([1.0])
    train_loop(ChainModel(), x, t, epochs=2, lr=1e-4, update=rules.Adam(), checkpoint=path)
    model = ChainModel()
    before = params_of(model)
    with pytest.raises(ValueError, match=r"rules\.Adam\(betas=\(0\.9, 0\.999\), eps=1e-06"):
        train_loop(
            model,
            x,
            t,
            epochs=4,
            lr=1e-4,
            update=rules.Adam(eps=1e-6),
            checkpoint=path,
            resume=True,
        )
    assert_same_bits(params_of(model), before)


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("foreach", [None, False], ids=["default", "single"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_rule_equals_torch_optim_bit_for_bit(
    name: str, foreach: bool | None, dtype: torch.dtype
) -> None:
    _same(*_compare(name, dtype, foreach, device="cuda"))
