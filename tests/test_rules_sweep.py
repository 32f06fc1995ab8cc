"""A seeded sweep of rule configurations against torch.optim: the same bits, every time.

Each case draws a rule and every option it has (nesterov, dampening, amsgrad, centered,
momentum, lr_decay, initial_accumulator_value, maximize with weight decay, ...), the
dtypes of its tensors (float32, float64, float16, bfloat16, complex64, or a mix in one
list), ``foreach`` (True, False, None), parameter groups with their own
hyperparameters, and which gradients are missing at each step; then it steps the rule
and the torch optimizer side by side and compares parameters and states with
``torch.equal``. Seeded, small tensors: a few hundred cases in a few seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from gradbasics import rules

TORCH: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "SGD": torch.optim.SGD,
    "Adagrad": torch.optim.Adagrad,
    "RMSprop": torch.optim.RMSprop,
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
}
STATE: dict[str, dict[str, str]] = {  # gradbasics field -> torch.optim state key
    "SGD": {"momentum_buffer": "momentum_buffer"},
    "Adagrad": {"sum": "sum"},
    "RMSprop": {"square_avg": "square_avg", "momentum_buffer": "momentum_buffer",
                "grad_avg": "grad_avg"},
    "Adam": {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq",
             "max_exp_avg_sq": "max_exp_avg_sq"},
}  # fmt: skip
STATE["AdamW"] = STATE["Adam"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64]
SHAPES: list[tuple[int, ...]] = [(), (3,), (2, 3), (5,), (1, 4)]
CASES = 480
CHUNK = 40


def _options(r: random.Random, name: str) -> dict[str, Any]:
    """Every option of rule ``name``, each drawn (zero often, to take both branches)."""

    def some(high: float) -> float:
        return 0.0 if r.random() < 0.35 else r.uniform(0.0, high)

    wd = some(0.2)
    if name == "SGD":
        nesterov = r.random() < 0.4
        momentum = r.uniform(0.1, 0.95) if nesterov else some(0.95)
        damp = 0.0 if nesterov else some(0.5)
        return {"momentum": momentum, "dampening": damp, "nesterov": nesterov,
                "weight_decay": wd, "maximize": r.random() < 0.5}  # fmt: skip
    if name == "Adagrad":
        return {"lr_decay": some(0.05), "weight_decay": wd, "eps": r.choice([1e-10, 1e-6]),
                "initial_accumulator_value": some(0.3), "maximize": r.random() < 0.5}  # fmt: skip
    if name == "RMSprop":
        return {"alpha": r.uniform(0.5, 0.999), "eps": r.choice([1e-8, 1e-4]),
                "weight_decay": wd, "momentum": some(0.95), "centered": r.random() < 0.5,
                "maximize": r.random() < 0.5}  # fmt: skip
    return {"betas": (r.uniform(0.5, 0.99), r.uniform(0.9, 0.9999)),
            "eps": r.choice([1e-8, 1e-5]), "weight_decay": wd,
            "amsgrad": r.random() < 0.5, "maximize": r.random() < 0.5}  # fmt: skip


def _case(seed: int) -> dict[str, Any]:
    """One configuration, drawn from ``seed``."""
    r = random.Random(seed)
    name = r.choice(list(TORCH))
    mode = r.choice(["one", "one", "mixed"])
    first = r.choice(DTYPES)
    n = r.randint(1, 6)
    dtypes = [first if mode == "one" else r.choice(DTYPES) for _ in range(n)]
    groups = None
    if n >= 2 and r.random() < 0.4:  # a second group with its own hyperparameters
        cut = r.randint(1, n - 1)
        other = {"lr": r.choice([0.003, 0.05])}
        mine = _options(r, name).items()  # torch's Adagrad takes its initial value from defaults
        other.update(
            {k: v for k, v in mine if r.random() < 0.5 and k != "initial_accumulator_value"}
        )
        if r.random() < 0.3:
            other["foreach"] = r.choice([True, False])
        groups = (cut, other)
    return {
        "name": name, "hyper": _options(r, name), "dtypes": dtypes,
        "shapes": [r.choice(SHAPES) for _ in range(n)], "groups": groups,
        "foreach": r.choice([None, False, True]), "lr": r.choice([0.01, 0.1]),
        "steps": r.randint(2, 5), "missing": r.choice([0.0, 0.25, 0.5]), "seed": seed,
    }  # fmt: skip


def _nested(hyper: dict[str, Any]) -> bool:
    """Whether SGD's options are consistent (nesterov needs momentum and no dampening)."""
    if not hyper.get("nesterov"):
        return True
    return bool(hyper.get("momentum", 0) > 0 and hyper.get("dampening", 0) == 0)


def _param_groups(ps: list[Tensor], case: dict[str, Any]) -> list[Any]:
    if case["groups"] is None:
        return ps
    cut, other = case["groups"]
    return [{"params": ps[:cut]}, {"params": ps[cut:], **other}]


def _randn(shape: tuple[int, ...], dtype: torch.dtype, g: torch.Generator) -> Tensor:
    """Normal values in ``dtype`` (drawn in float32, or complex64)."""
    draw = dtype if dtype == torch.complex64 else torch.float32
    return torch.randn(shape, generator=g, dtype=draw).to(dtype)


def _run(case: dict[str, Any]) -> None:
    """Step gradbasics and torch.optim side by side; compare every bit."""
    name, hyper = case["name"], case["hyper"]
    g = torch.Generator().manual_seed(case["seed"])
    ours = [
        _randn(s, d, g).requires_grad_()
        for s, d in zip(case["shapes"], case["dtypes"], strict=True)
    ]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    fe = case["foreach"]
    rule = getattr(rules, name)(foreach=fe, **hyper)
    opt = None
    if case["groups"] is not None:
        opt = rules.as_optimizer(rule, _param_groups(ours, case), lr=case["lr"])
    ref = TORCH[name](_param_groups(theirs, case), lr=case["lr"], foreach=fe, **hyper)
    r = random.Random(case["seed"] + 1)
    for _ in range(case["steps"]):
        for p, q in zip(ours, theirs, strict=True):
            grad = None if r.random() < case["missing"] else _randn(p.shape, p.dtype, g)
            p.grad = None if grad is None else grad.clone()
            q.grad = None if grad is None else grad.clone()
        if opt is None:
            rule(ours, case["lr"])
        else:
            opt.step()
        ref.step()
    _compare(case, ours, theirs, rule, opt, ref)


def _compare(
    case: dict[str, Any],
    ours: list[Tensor],
    theirs: list[Tensor],
    rule: rules.Rule,
    opt: rules.RuleOptimizer | None,
    ref: torch.optim.Optimizer,
) -> None:
    where: list[tuple[rules.Rule, int]] = [(rule, k) for k in range(len(ours))]
    if opt is not None:
        where = [(rl, k) for rl, gr in zip(opt.rules, opt.param_groups, strict=True)
                 for k in range(len(gr["params"]))]  # fmt: skip
    for i, (p, q, (rl, k)) in enumerate(zip(ours, theirs, where, strict=True)):
        assert torch.equal(p.detach(), q.detach()), (case, f"params[{i}]")
        want = ref.state.get(q, {})
        if rl.state is None:  # never stepped (torch's Adagrad makes its state up front)
            assert float(want.get("step", 0.0)) == 0.0, (case, f"state of params[{i}]")
            continue
        if case["name"] != "SGD":  # torch's SGD counts no steps
            assert float(rl.state.steps[k]) == float(want.get("step", 0.0)), (case, f"step {i}")
        for mine, theirs_key in STATE[case["name"]].items():
            field = getattr(rl.state, mine)
            got = field[k] if len(field) else None
            exp = want.get(theirs_key)
            if exp is None or got is None:
                assert exp is None and (got is None or not want), (case, mine, i)
                continue
            assert torch.equal(got, exp), (case, f"{mine} of params[{i}]")


@pytest.mark.parametrize("chunk", range(CASES // CHUNK))
def test_rules_equal_torch_optim_in_random_configurations(chunk: int) -> None:
    for seed in range(chunk * CHUNK, (chunk + 1) * CHUNK):
        case = _case(seed)
        if case["groups"] is not None and not _nested({**case["hyper"], **case["groups"][1]}):
            continue  # torch refuses such a group too (tested elsewhere)
        _run(case)


def test_the_sweep_covers_every_option() -> None:
    cases = [_case(s) for s in range(CASES)]
    seen = {(c["name"], k, bool(v)) for c in cases for k, v in c["hyper"].items()}
    for c in cases:
        assert c["name"] in TORCH
    for name in TORCH:
        for key in _options(random.Random(0), name):
            for flag in (True, False):
                if (name, key, flag) == ("SGD", "nesterov", flag) or key in ("eps", "betas"):
                    continue
                if key == "alpha" and not flag:
                    continue
                assert (name, key, flag) in seen, (name, key, flag)
    assert {c["foreach"] for c in cases} == {None, False, True}
    assert any(len(set(c["dtypes"])) > 2 for c in cases)
    assert sum(c["groups"] is not None for c in cases) > CASES // 5
