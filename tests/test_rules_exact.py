"""gradbasics.rules exact in every configuration: dtype groups, complex, sparse, groups.

Each case is stepped side by side with its ``torch.optim`` twin and compared bit for bit;
what torch refuses (or silently gets wrong) is refused here, clearly and before any
state changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from gradbasics import rules
from helpers import assert_same_bits

Twin = tuple[Callable[..., torch.optim.Optimizer], Callable[..., rules.Rule], dict[str, Any]]
TWINS: dict[str, Twin] = {
    "sgd": (torch.optim.SGD, rules.SGD, {"momentum": 0.9, "weight_decay": 0.1}),
    "sgd-nesterov": (torch.optim.SGD, rules.SGD, {"momentum": 0.8, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, rules.Adagrad,
                {"lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.2}),
    "rmsprop": (torch.optim.RMSprop, rules.RMSprop,
                {"momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    "adam-amsgrad": (torch.optim.Adam, rules.Adam, {"amsgrad": True, "weight_decay": 0.1}),
    "adamw": (torch.optim.AdamW, rules.AdamW, {"amsgrad": True, "maximize": True}),
}  # fmt: skip


def _side_by_side(
    name: str,
    dtypes: list[torch.dtype],
    foreach: bool | None,
    *,
    skip: Callable[[int, int], bool] = lambda step, i: False,
    steps: int = 6,
    extra: dict[str, Any] | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Step the rule and torch.optim on tensors of ``dtypes``; ``skip(step, i)``: no grad."""
    opt_cls, rule_cls, hyper = TWINS[name]
    hyper = {**hyper, **(extra or {})}
    g = torch.Generator().manual_seed(0)
    draw = [d if d.is_complex else torch.float32 for d in dtypes]
    ours = [
        torch.randn(4, 3, generator=g, dtype=w).to(d) for w, d in zip(draw, dtypes, strict=True)
    ]
    ours = [p.requires_grad_() for p in ours]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    rule = rule_cls(foreach=foreach, **hyper)
    opt = opt_cls(theirs, lr=0.05, foreach=foreach, **hyper)
    for k in range(steps):
        for i, (p, q, w) in enumerate(zip(ours, theirs, draw, strict=True)):
            grad = torch.randn(4, 3, generator=g, dtype=w).to(p.dtype)
            p.grad, q.grad = (None, None) if skip(k, i) else (grad.clone(), grad.clone())
        rule(ours, 0.05)
        opt.step()
    return ours, theirs


def _same(a: list[Tensor], b: list[Tensor]) -> None:
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert_same_bits({str(i): x.detach()}, {str(i): y.detach()})


# 1. the multi-tensor path per (device, dtype) group


def test_sgd_foreach_decides_every_buffer_exists_per_dtype_group() -> None:
    # The bfloat16 tensors have their buffers after step 0, the float32 one not: torch's
    # bfloat16 group takes the all-buffers path (in-place multi-tensor calls, rounding
    # their own way); one decision over the whole list took the per-tensor loop.
    ours, theirs = _side_by_side(
        "sgd",
        [torch.bfloat16, torch.float32, torch.bfloat16],
        True,
        skip=lambda k, i: k == 0 and i == 1,
    )
    _same(ours, theirs)


@pytest.mark.parametrize("name", list(TWINS))
@pytest.mark.parametrize("foreach", [None, False, True])
def test_mixed_dtypes_in_one_list_equal_torch(name: str, foreach: bool | None) -> None:
    dtypes = [torch.float16, torch.float32, torch.bfloat16, torch.float16, torch.float64]
    _same(*_side_by_side(name, dtypes, foreach, skip=lambda k, i: k < 2 and i % 2 == 1))


# 2. complex parameters, through torch.view_as_real as torch


@pytest.mark.parametrize("name", list(TWINS))
@pytest.mark.parametrize("foreach", [False, True])
def test_complex_parameters_equal_torch(name: str, foreach: bool) -> None:
    dtypes = [torch.complex64, torch.float32, torch.complex64]
    _same(*_side_by_side(name, dtypes, foreach, skip=lambda k, i: k == 1 and i == 0))


def test_adam_amsgrad_takes_complex_parameters() -> None:
    ours, theirs = _side_by_side("adam-amsgrad", [torch.complex64], None, extra={"maximize": True})
    _same(ours, theirs)


# 3. sparse gradients: AdaGrad as torch, the others refuse


def _embedding_runs(
    foreach: bool | None, hyper: dict[str, Any]
) -> tuple[list[Tensor], list[Tensor], rules.Adagrad, torch.optim.Adagrad]:
    torch.manual_seed(0)
    nets = [nn.ModuleList([nn.Embedding(10, 3, sparse=True), nn.Linear(3, 1)]) for _ in "ab"]
    nets[1].load_state_dict(nets[0].state_dict())
    rule = rules.Adagrad(foreach=foreach, **hyper)
    opt = torch.optim.Adagrad(nets[1].parameters(), lr=0.1, foreach=foreach, **hyper)
    rows = torch.tensor([[1, 2, 2, 7], [0, 2, 9, 9], [3, 3, 3, 1]])
    for idx in rows:
        for net in nets:
            emb, lin = net
            lin(emb(idx)).pow(2).sum().backward()
        rule(list(nets[0].parameters()), 0.1)
        opt.step()
        for net in nets:
            net.zero_grad(set_to_none=True)
    return list(nets[0].parameters()), list(nets[1].parameters()), rule, opt


@pytest.mark.parametrize("foreach", [None, False, True])
@pytest.mark.parametrize("hyper", [{}, {"lr_decay": 0.1, "maximize": True, "eps": 1e-6}])
def test_adagrad_with_sparse_gradients_equals_torch(
    foreach: bool | None, hyper: dict[str, Any]
) -> None:
    ours, theirs, rule, opt = _embedding_runs(foreach, {"initial_accumulator_value": 0.1, **hyper})
    _same(ours, theirs)
    assert rule.state is not None
    _same(rule.state.sum, [opt.state[p]["sum"] for p in theirs])


def _sparse_grad(p: Tensor) -> None:
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.ones(1, 3), (4, 3))


@pytest.mark.parametrize(
    ("rule", "pattern"),
    [
        (rules.Adagrad(weight_decay=0.1), r"params\[1\] has a sparse gradient, which weight_decay"),
        (rules.SGD(momentum=0.9), r"params\[1\] has a sparse gradient .*rules\.SGD takes dense"),
        (rules.RMSprop(), r"params\[1\] has a sparse gradient .*rules\.RMSprop takes dense"),
        (rules.Adam(), r"params\[1\] has a sparse gradient .*rules\.Adam takes dense"),
        (rules.AdamW(), r"params\[1\] has a sparse gradient .*rules\.AdamW takes dense"),
    ],
)  # fmt: skip
def test_sparse_gradients_are_refused_by_index_before_any_change(
    rule: rules.Rule, pattern: str
) -> None:
    ps = [torch.ones(2, requires_grad=True), torch.ones(4, 3, requires_grad=True)]
    ps[0].grad = torch.ones(2)
    _sparse_grad(ps[1])
    with pytest.raises(RuntimeError, match=pattern):
        rule(ps, 0.1)
    assert rule.state is None or float(rule.state.steps.sum()) == 0.0
    assert torch.equal(ps[0].detach(), torch.ones(2))


# 4. parameter groups


def test_group_foreach_and_hyperparameters_equal_torch() -> None:
    g = torch.Generator().manual_seed(3)
    ours = [torch.randn(5, generator=g).bfloat16().requires_grad_() for _ in range(4)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]

    def groups(ps: list[Tensor]) -> list[dict[str, Any]]:
        return [{"params": ps[:2], "foreach": True},
                {"params": ps[2:], "lr": 0.2, "momentum": 0.7, "maximize": True}]  # fmt: skip

    opt = rules.as_optimizer(rules.SGD(momentum=0.9, foreach=False), groups(ours), lr=0.1)
    ref = torch.optim.SGD(groups(theirs), lr=0.1, momentum=0.9, foreach=False)
    for k in range(6):
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            grad = torch.randn(5, generator=g).bfloat16()
            p.grad, q.grad = (None, None) if k in (0, 3) and i in (1, 3) else (grad, grad.clone())
        if k == 3:  # torch reads a group's foreach at every step
            opt.param_groups[1]["foreach"] = ref.param_groups[1]["foreach"] = True
        opt.step()
        ref.step()
    _same(ours, theirs)


def test_groups_that_torch_would_get_wrong_or_a_rule_cannot_take_are_refused() -> None:
    w = nn.Parameter(torch.ones(2))
    b = nn.Parameter(torch.ones(1))
    groups = [{"params": [w]}, {"params": [b], "initial_accumulator_value": 0.5}]
    with pytest.raises(ValueError, match=r"initial_accumulator_value cannot differ between"):
        rules.as_optimizer(rules.Adagrad(), groups, lr=0.1)
    with pytest.raises(TypeError, match=r"parameter groups \(dicts\).*rules\.as_optimizer"):
        rules.Adam()([{"params": [w]}], 0.1)  # type: ignore[list-item]


# 5. a rule object serves the tensors it first met


def test_a_rule_refuses_other_tensors_by_name_before_any_change() -> None:
    rule = rules.Adam()
    first = [torch.ones(2, 3, requires_grad=True), torch.ones(4, requires_grad=True)]
    for p in first:
        p.grad = torch.ones_like(p)
    rule(first, 0.1)
    assert rule.state is not None
    steps = rule.state.steps.clone()
    others: list[tuple[list[Tensor], str]] = [
        ([first[0], torch.ones(5, requires_grad=True)],
         r"params\[1\] was float32 of shape \(4,\) on cpu, got float32 of shape \(5,\)"),
        ([first[0], torch.ones(4, dtype=torch.float64, requires_grad=True)],
         r"params\[1\] was float32 of shape \(4,\) on cpu, got float64 of shape \(4,\)"),
        ([first[0]], r"params must be the 2 tensors this rules\.Adam was first used with, got 1"),
    ]  # fmt: skip
    for ps, pattern in others:
        for p in ps:
            p.grad = torch.ones_like(p)
        with pytest.raises(ValueError, match=pattern):
            rule(ps, 0.1)
    assert torch.equal(rule.state.steps, steps)
    rule(first, 0.1)  # its own tensors still step
    assert rule.state.steps.tolist() == [2.0, 2.0]


@pytest.mark.parametrize(
    ("step", "init"),
    [
        (rules.sgd_step, rules.init_sgd),
        (rules.adagrad_step, rules.init_adagrad),
        (rules.rmsprop_step, rules.init_rmsprop),
        (rules.adam_step, rules.init_adam),
    ],
)
def test_a_functional_step_with_fewer_tensors_than_its_state_is_refused(
    step: Callable[..., None], init: Callable[..., Any]
) -> None:
    ps = [torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)]
    state = init(ps)
    ps[0].grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"params must be the 2 tensors the state was made for"):
        step(ps[:1], state, lr=0.1)
    assert float(state.steps.sum()) == 0.0


def test_a_loaded_rule_serves_the_tensors_it_was_loaded_for() -> None:
    ps = [torch.ones(3, requires_grad=True)]
    ps[0].grad = torch.ones(3)
    rule = rules.RMSprop()
    rule(ps, 0.1)
    again = rules.RMSprop()
    again.load_state_dict(rule.state_dict(), ps)
    other = [torch.ones(3, dtype=torch.float64, requires_grad=True)]
    other[0].grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"params\[0\] was float32"):
        again(other, 0.1)


# 6. degenerate hyperparameters


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: rules.RMSprop(alpha=1.0), r"alpha must be in \[0, 1\), got 1\.0"),
        (lambda: rules.RMSprop(eps=0.0), r"eps must be a finite number > 0, got 0\.0"),
        (lambda: rules.RMSprop(momentum=1.5), r"momentum must be in \[0, 1\], got 1\.5"),
        (lambda: rules.Adam(eps=0), r"eps must be a finite number > 0, got 0"),
        (lambda: rules.AdamW(eps=float("nan")), r"eps must be a finite number > 0, got nan"),
        (lambda: rules.Adagrad(eps=0.0), r"eps must be a finite number > 0, got 0\.0"),
        (lambda: rules.SGD(momentum=1.5), r"momentum must be in \[0, 1\], got 1\.5"),
        (lambda: rules.SGD(momentum=0.9, dampening=2.0), r"dampening must be in \[0, 1\], got 2"),
        (lambda: rules.SGD(momentum=0.9, dampening=0.1, nesterov=True),
         r"nesterov=True needs momentum > 0 and dampening == 0, .*dampening=0\.1"),
        (lambda: rules.Adam(betas=(1.0, 0.9)), r"betas\[0\] must be in \[0, 1\), got 1\.0"),
        (lambda: rules.AdamW(betas=(0.9, -0.1)), r"betas\[1\] must be a finite number >= 0"),
    ],
)  # fmt: skip
def test_degenerate_hyperparameters_are_refused_by_name_and_value(
    make: Callable[[], object], pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        make()


# 8. behaviour that had no test


@pytest.mark.parametrize("foreach", [None, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    ("opt_cls", "rule_cls", "hyper"),
    [
        (torch.optim.Adam, rules.Adam, {"maximize": True, "weight_decay": 0.2}),
        (torch.optim.Adam, rules.Adam, {"maximize": True, "weight_decay": 0.2, "amsgrad": True}),
        (torch.optim.RMSprop, rules.RMSprop, {"maximize": True, "weight_decay": 0.2}),
        (torch.optim.RMSprop, rules.RMSprop,
         {"maximize": True, "weight_decay": 0.2, "momentum": 0.5, "centered": True}),
    ],
)  # fmt: skip
def test_maximize_with_weight_decay_equals_torch(
    opt_cls: Callable[..., torch.optim.Optimizer],
    rule_cls: Callable[..., rules.Rule],
    hyper: dict[str, Any],
    dtype: torch.dtype,
    foreach: bool | None,
) -> None:
    g = torch.Generator().manual_seed(5)
    ours = [torch.randn(s, generator=g).to(dtype).requires_grad_() for s in [(3, 4), (6,)]]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    rule, opt = (
        rule_cls(foreach=foreach, **hyper),
        opt_cls(theirs, lr=0.01, foreach=foreach, **hyper),
    )
    for _ in range(8):
        for p, q in zip(ours, theirs, strict=True):
            grad = torch.randn(p.shape, generator=g).to(dtype)
            p.grad, q.grad = grad.clone(), grad.clone()
        rule(ours, 0.01)
        opt.step()
    _same(ours, theirs)


def test_a_loaded_state_shares_no_tensor_with_its_source() -> None:
    ps = [torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)]
    for p in ps:
        p.grad = torch.ones_like(p)
    source = rules.Adam(amsgrad=True)
    source(ps, 0.1)
    saved = source.state_dict()
    rule = rules.Adam(amsgrad=True)
    rule.load_state_dict(saved, ps)
    assert rule.state is not None
    before = {k: [t.clone() for t in v] if isinstance(v, list) else v.clone()
              for k, v in rule.state._asdict().items()}  # fmt: skip
    for value in saved["state"].values():
        for t in value if isinstance(value, list) else [value]:
            t.add_(7.0)  # mutate the source in place
    for k, v in rule.state._asdict().items():
        want = before[k]
        if isinstance(v, list) and isinstance(want, list):
            assert all(torch.equal(a, b) for a, b in zip(v, want, strict=True)), k
        else:
            assert isinstance(v, Tensor) and isinstance(want, Tensor) and torch.equal(v, want), k
