from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from gradbasics import legacy_data_step, manual_sgd_step

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _params_with_grads(
    device: torch.device, dtype: torch.dtype, seed: int, count: int = 5
) -> tuple[list[Tensor], list[Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(7,), (3, 5), (2, 3, 4), (1,), (64,), (2, 2), (9,)][:count]
    values = [torch.randn(s, generator=gen).to(device, dtype) for s in shapes]
    grads = [torch.randn(s, generator=gen).mul(10).to(device, dtype) for s in shapes]
    return values, grads


def _leaves(values: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
    out = []
    for v, g in zip(values, grads, strict=True):
        p = v.clone().requires_grad_(True)
        p.grad = g.clone()
        out.append(p)
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lr", [0.1, 0.01, 1e-3, 0.3333])
@pytest.mark.parametrize("count", [2, 7], ids=["per-tensor", "foreach"])
def test_manual_sgd_step_is_bit_identical_to_torch_sgd(
    device: torch.device, dtype: torch.dtype, lr: float, count: int
) -> None:
    values, grads = _params_with_grads(device, dtype, seed=int(lr * 1e4), count=count)
    mine, theirs = _leaves(values, grads), _leaves(values, grads)
    manual_sgd_step(mine, lr)
    torch.optim.SGD(theirs, lr=lr).step()
    for a, b in zip(mine, theirs, strict=True):
        assert torch.equal(a.detach(), b.detach())
        assert a.requires_grad and a.is_leaf


def test_two_roundings_differ_from_sgd_so_the_bit_test_can_fail() -> None:
    # Oracle check: the naive p -= lr * g must NOT always agree with SGD, otherwise the
    # bit-identity test above would prove nothing.
    values, grads = _params_with_grads(torch.device("cpu"), torch.float32, seed=1)
    naive, theirs = _leaves(values, grads), _leaves(values, grads)
    with torch.no_grad():
        for p in naive:
            assert p.grad is not None
            p -= 0.3333 * p.grad
    torch.optim.SGD(theirs, lr=0.3333).step()
    assert not all(torch.equal(a, b) for a, b in zip(naive, theirs, strict=True))


def test_manual_sgd_step_skips_none_grads_and_keeps_grads(device: torch.device) -> None:
    a = torch.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = torch.tensor([5.0], device=device, requires_grad=True)
    a.grad = torch.tensor([0.5, -1.0], device=device)
    manual_sgd_step(iter([a, b]), 2.0)
    assert a.tolist() == [0.0, 4.0]
    assert b.tolist() == [5.0]
    assert b.grad is None
    assert a.grad is not None and a.grad.tolist() == [0.5, -1.0]


def test_manual_sgd_step_accepts_model_parameters(device: torch.device) -> None:
    model = torch.nn.Linear(3, 2).to(device)
    ref = torch.nn.Linear(3, 2).to(device)
    ref.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).to(device)
    for m in (model, ref):
        m(x).square().sum().backward()
    manual_sgd_step(model.parameters(), 0.05)
    torch.optim.SGD(ref.parameters(), lr=0.05).step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_legacy_data_step_rounds_twice(device: torch.device) -> None:
    values, grads = _params_with_grads(device, torch.float64, seed=3)
    mine = _leaves(values, grads)
    legacy_data_step(mine, 0.25)
    for p, v, g in zip(mine, values, grads, strict=True):
        # Oracle: the same two roundings written out by hand.
        assert torch.equal(p.detach(), v - 0.25 * g)


def test_data_write_between_forward_and_backward_silently_corrupts_the_gradient() -> None:
    w = torch.tensor([3.0], requires_grad=True)
    w.grad = torch.tensor([1.0])
    loss = (w**2).sum()  # saves w for backward: d/dw = 2 w = 6
    legacy_data_step([w], 1.0)  # w.data becomes 2, hidden from autograd
    loss.backward()
    assert w.grad is not None
    # The correct gradient of this graph is 2 * 3 = 6 (plus the 1 already there): 7.
    # The .data write made backward use the new w = 2: it silently returns 1 + 4 = 5.
    assert w.grad.item() == 5.0 != 1.0 + 2 * 3.0


def test_no_grad_write_between_forward_and_backward_raises() -> None:
    w = torch.tensor([3.0], requires_grad=True)
    w.grad = torch.tensor([1.0])
    loss = (w**2).sum()
    manual_sgd_step([w], 1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_in_place_update_of_a_leaf_without_no_grad_raises() -> None:
    w = torch.tensor([3.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w -= 0.1


def test_zero_lr_changes_nothing() -> None:
    w = torch.tensor([1.0, -0.0], requires_grad=True)
    w.grad = torch.tensor([3.0, 3.0])
    manual_sgd_step([w], 0)
    assert torch.equal(w.detach(), torch.tensor([1.0, -0.0]))


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(
        st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple), min_size=1, max_size=8
    ),
    dtype=st.sampled_from(DTYPES),
    lr=st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False),
    seed=st.integers(0, 2**16),
    guarded=st.booleans(),
)
def test_property_manual_sgd_step_equals_sgd(
    shapes: list[tuple[int, ...]], dtype: torch.dtype, lr: float, seed: int, guarded: bool
) -> None:
    gen = torch.Generator().manual_seed(seed)
    values = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    grads = [torch.randn(s, generator=gen).mul(100).to(dtype) for s in shapes]
    mine, theirs = _leaves(values, grads), _leaves(values, grads)
    if guarded:  # a finite guard must not change a single bit
        manual_sgd_step(mine, lr, guard=torch.tensor(1.5))
    else:
        manual_sgd_step(mine, lr)
    torch.optim.SGD(theirs, lr=lr).step()
    for a, b in zip(mine, theirs, strict=True):
        assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("step", [manual_sgd_step, legacy_data_step])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_non_finite_guard_skips_the_step(device: torch.device, step: object, bad: float) -> None:
    w = torch.tensor([1.0, 2.0], device=device, requires_grad=True)
    w.grad = torch.tensor([float("nan"), 1.0], device=device)
    step([w], 0.5, guard=torch.tensor([0.0, bad], device=device))  # type: ignore[operator]
    assert w.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("count", [1, 6])  # below and above the multi-tensor threshold
def test_a_non_finite_guard_masks_the_multi_tensor_path_too(count: int) -> None:
    ws = [torch.full((3,), float(i), requires_grad=True) for i in range(count)]
    for w in ws:
        w.grad = torch.tensor([float("nan"), 1.0, -2.0])
    manual_sgd_step(ws, 0.5, guard=torch.tensor(float("inf")))
    assert all(w.tolist() == [float(i)] * 3 for i, w in enumerate(ws))
    for w in ws:
        w.grad = torch.tensor([4.0, 1.0, -2.0])
    manual_sgd_step(ws, 0.5, guard=torch.tensor(1.0))  # finite: the plain step's bits
    assert all(w.tolist() == [i - 2.0, i - 0.5, i + 1.0] for i, w in enumerate(ws))
