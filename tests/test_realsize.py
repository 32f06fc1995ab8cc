"""Data at real sizes: finiteness checked in chunks with no copy, batches drawn one by one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradbasics._validate as validate
from gradbasics import train_loop
from helpers import assert_same_bits, params_of


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 64 elements, so a test's few rows span many of them."""
    monkeypatch.setattr(validate, "CHUNK_ELEMENTS", 64)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("what", ["inputs", "targets"])
def test_a_bad_value_in_any_chunk_is_refused_before_anything_changes(
    bad: float, where: str, what: str
) -> None:
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))  # 24 chunks of rows
    t = x.sum(1, keepdim=True)
    row = {"first": 0, "middle": 150, "last": 299}[where]
    (x if what == "inputs" else t)[row, -1] = bad
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    before = params_of(model)
    with pytest.raises(ValueError, match=rf"{what} must be finite, got 1 NaN or infinite"):
        train_loop(model, x, t, epochs=1, lr=0.1, batch_size=16)
    assert_same_bits(params_of(model), before)


@pytest.mark.usefixtures("small_chunks")
def test_chunks_agree_with_a_whole_check_on_odd_layouts() -> None:
    g = torch.Generator().manual_seed(1)
    for t in (
        torch.randn(50, 7, generator=g).t(),  # non-contiguous
        torch.randn(3, 40, 2, generator=g)[:, ::3],  # strided rows
        torch.randn(1000, generator=g).half(),
        torch.randn(129, generator=g).bfloat16(),
        torch.tensor(2.0),
        torch.empty(0, 3),
    ):
        assert validate.all_finite(t) is bool(torch.isfinite(t).all())
        if t.numel():
            broken = t.clone()  # same layout: the strides of t
            broken[(-1,) * broken.dim()] = float("nan")
            assert validate.all_finite(broken) is False


def test_an_epoch_draws_its_batches_one_at_a_time() -> None:
    """The batch a step trains on is gathered when the step comes, not before."""
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(2))
    t = x.sum(1, keepdim=True)
    gathered: list[int] = []
    stepped: list[int] = []
    real = torch.Tensor.index_select

    def spy(self: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
        if self.shape[0] == 40 and self.shape[1:] == (3,):
            gathered.append(len(stepped))
        return real(self, dim, index)

    model = nn.Linear(3, 1)
    original = model.forward

    def forward(xb: torch.Tensor) -> torch.Tensor:
        stepped.append(xb.shape[0])
        return original(xb)

    model.forward = forward  # type: ignore[method-assign,assignment]
    mp = pytest.MonkeyPatch()
    mp.setattr(torch.Tensor, "index_select", spy)
    try:
        train_loop(model, x, t, epochs=1, lr=0.01, batch_size=8)
    finally:
        mp.undo()
    checks = len(stepped) - 5  # train_loop first tries the model on a sample of rows
    assert checks in (0, 1) and stepped[checks:] == [8] * 5
    assert gathered == [checks + i for i in range(5)]  # each batch right before its own step
