"""Step engines: choice, the graph engine's refusals and its static-buffer bookkeeping.

The graph engine's bookkeeping (static permutation, batch counter, loss slots, sticky
flag, warm-up steps undone) runs on the CPU with a stand-in that calls the step function
eagerly instead of replaying a captured graph: it must give the device engine's bits.
On CUDA the real captured graphs must give them too.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import gradbasics.training as training
from gradbasics import (
    ChainModel,
    DivergenceError,
    FrozenFirstModel,
    legacy_data_step,
    manual_sgd_step,
    mse_loss,
    train_loop,
)
from gradbasics.engines import graph as graph_engine
from helpers import assert_same_bits, params_of


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let graph=True run on the CPU, its captures replaced by eager calls."""
    monkeypatch.setattr(graph_engine, "REQUIRE_CUDA", False)


def _models(device: torch.device) -> dict[str, Callable[[], nn.Module]]:
    def linear() -> nn.Module:
        torch.manual_seed(2)
        return nn.Linear(3, 1).to(device)

    return {
        "chain": lambda: ChainModel(0.5, 0.5, 0.5, device=device),
        "frozen": lambda: FrozenFirstModel(1.0, 0.5, device=device),
        "linear": linear,
    }


def _data(kind: str, device: torch.device) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    if kind == "linear":
        x = torch.randn(50, 3, generator=g)
        return x.to(device), x.sum(1, keepdim=True).to(device)
    x = torch.rand(50, generator=g) + 0.5
    return x.to(device), (2 * x).to(device)


def _run(
    kind: str, device: torch.device, *, graph: bool, **kw: object
) -> tuple[list[float], dict[str, Tensor], dict[str, Tensor]]:
    model = _models(device)[kind]()
    x, t = _data(kind, device)
    h = train_loop(
        model,
        x,
        t,
        epochs=4,
        lr=0.05,
        generator=torch.Generator().manual_seed(3),
        graph=graph,
        record=True,
        **kw,  # type: ignore[arg-type]
    )
    return h.losses, params_of(model), h.activations


def _deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "_losses_stay_on_device", lambda *args: True)


@pytest.mark.usefixtures("stand_in")
@pytest.mark.parametrize("kind", ["chain", "frozen", "linear"])
@pytest.mark.parametrize("batch_size", [None, 10, 7])  # all rows, whole batches, a tail
@pytest.mark.parametrize("update", [manual_sgd_step, legacy_data_step])
def test_graph_bookkeeping_gives_the_device_engines_bits(
    monkeypatch: pytest.MonkeyPatch, kind: str, batch_size: int | None, update: object
) -> None:
    cpu = torch.device("cpu")
    _deferred(monkeypatch)
    want = _run(kind, cpu, graph=False, batch_size=batch_size, update=update)
    got = _run(kind, cpu, graph=True, batch_size=batch_size, update=update)
    assert got[0] == want[0]
    assert_same_bits(got[1], want[1])
    assert_same_bits(got[2], want[2])


@pytest.mark.usefixtures("stand_in")
def test_graph_warm_up_is_undone_when_setup_fails() -> None:
    # The tail's step function fails on its first call, after the full batches' warm-up
    # step has changed the model: the model must come back as it was.
    model = nn.Linear(3, 1)
    before = params_of(model)
    x, t = _data("linear", torch.device("cpu"))
    calls = 0

    def loss_fn(out: Tensor, target: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom")
        return mse_loss(out, target)

    with pytest.raises(RuntimeError, match="boom"):
        train_loop(model, x, t, epochs=3, lr=0.1, batch_size=7, loss_fn=loss_fn, graph=True)
    assert calls == 2
    assert_same_bits(params_of(model), before)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.usefixtures("stand_in")
def test_graph_divergence_keeps_the_last_finite_step() -> None:
    x = torch.tensor([[1.0], [1.0], [1e30], [1.0], [1.0]])
    t = torch.zeros(5, 1)
    runs = []
    for graph in (False, True):
        model = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.fill_(0.5)
        with pytest.raises(DivergenceError) as info:
            train_loop(
                model,
                x,
                t,
                epochs=2,
                lr=0.1,
                batch_size=2,
                generator=torch.Generator().manual_seed(0),
                graph=graph,
            )
        runs.append((info.value.epoch, info.value.last_finite_loss, model.weight.item()))
    assert runs[0] == runs[1]
    assert torch.isfinite(torch.tensor(runs[1][2]))


def test_graph_refuses_a_cpu_model_and_changes_nothing() -> None:
    model = ChainModel()
    before = params_of(model)
    with pytest.raises(ValueError, match=r"graph=True .*CUDA device, got one on cpu"):
        train_loop(model, torch.tensor([2.0]), torch.tensor([1.0]), epochs=2, lr=0.1, graph=True)
    assert_same_bits(params_of(model), before)


@pytest.mark.usefixtures("stand_in")
@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"optimizer": "sgd"}, "optimizer's step"),
        ({"lr": 0.1, "update": lambda ps, lr: None}, "built-in update rules"),
    ],
)
def test_graph_refuses_what_it_cannot_mask(kwargs: dict[str, object], reason: str) -> None:
    model = ChainModel()
    if kwargs.get("optimizer") == "sgd":
        kwargs = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    before = params_of(model)
    with pytest.raises(ValueError, match=reason):
        train_loop(model, torch.tensor([2.0]), torch.tensor([1.0]), epochs=2, graph=True, **kwargs)  # type: ignore[arg-type]
    assert_same_bits(params_of(model), before)


def test_graph_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"graph must be a bool, got 'yes' \(str\)"):
        train_loop(
            ChainModel(),
            torch.tensor([2.0]),
            torch.tensor([1.0]),
            epochs=1,
            lr=0.1,
            graph="yes",  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(("graph", "expected"), [(False, "EagerEngine"), (True, "GraphEngine")])
def test_engine_choice(
    monkeypatch: pytest.MonkeyPatch, stand_in: None, graph: bool, expected: str
) -> None:
    chosen: list[str] = []
    pick = training._pick_engine

    def spy(*args: object) -> object:
        engine = pick(*args)  # type: ignore[arg-type]
        chosen.append(type(engine).__name__)
        return engine

    monkeypatch.setattr(training, "_pick_engine", spy)
    train_loop(
        ChainModel(), torch.tensor([2.0]), torch.tensor([1.0]), epochs=1, lr=1e-4, graph=graph
    )
    assert chosen == [expected]


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["chain", "frozen", "linear"])
@pytest.mark.parametrize("batch_size", [None, 10, 7])
def test_cuda_graph_gives_the_device_engines_bits(kind: str, batch_size: int | None) -> None:
    cuda = torch.device("cuda")
    want = _run(kind, cuda, graph=False, batch_size=batch_size)
    got = _run(kind, cuda, graph=True, batch_size=batch_size)
    assert got[0] == want[0]
    assert_same_bits(got[1], want[1])
    assert_same_bits(got[2], want[2])


@pytest.mark.cuda
def test_cuda_graph_refuses_a_forward_that_syncs() -> None:
    class Syncing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor([0.5], device="cuda"))

        def forward(self, x: Tensor) -> Tensor:
            if self.w.item() > 10:  # a host read: not capturable
                return x
            return self.w * x

    model = Syncing()
    before = params_of(model)
    x = torch.ones(4, device="cuda")
    with pytest.raises(ValueError, match="could not capture"):
        train_loop(model, x, 2 * x, epochs=3, lr=0.1, graph=True)
    assert_same_bits(params_of(model), before)
    # The model still trains without graphs afterwards.
    train_loop(model, x, 2 * x, epochs=3, lr=0.1)


@pytest.mark.cuda
def test_cuda_graph_makes_no_hidden_sync() -> None:
    x = torch.randn(64, 1, generator=torch.Generator().manual_seed(0)).cuda()
    model = ChainModel(0.5, 0.5, 0.5, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        # Setup (capture) is allowed to wait; the epochs are not, but for their one read.
        history = train_loop(model, x, 3 * x, epochs=5, lr=1e-3, batch_size=8, graph=True)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len(history.losses) == 5
