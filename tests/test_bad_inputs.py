# mypy: disable-error-code="arg-type"
# (this file passes arguments of the wrong type on purpose)
"""The bad-input matrix: every public function, every kind of wrong argument.

Each case asserts the exception type, that the message names the argument (and the value
received), and that the model is unchanged afterwards: bad input is refused before
anything is changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradbasics import (
    ActivationRecorder,
    ChainModel,
    FrozenFirstModel,
    TrainHistory,
    batched_loss,
    legacy_data_step,
    load_checkpoint,
    manual_sgd_step,
    mse_loss,
    plot_activations,
    plot_losses,
    save_checkpoint,
    train_loop,
)
from helpers import assert_same_bits, params_of

X = torch.tensor([[1.0], [2.0], [3.0]])
T = torch.tensor([[0.0], [1.0], [2.0]])
NAN_X = torch.tensor([[1.0], [float("nan")], [3.0]])
INF_T = torch.tensor([[0.0], [float("-inf")], [2.0]])

Call = Callable[[nn.Module], object]


def fit(**kw: object) -> Call:
    """train_loop on the test's model with X, T, one epoch and lr=0.1, overridden by kw."""

    def call(model: nn.Module) -> object:
        args: dict[str, object] = {"inputs": X, "targets": T, "epochs": 1, "lr": 0.1, **kw}
        if args.get("optimizer") == "sgd":
            args["optimizer"] = torch.optim.SGD(model.parameters(), lr=0.1)
        inputs, targets = args.pop("inputs"), args.pop("targets")
        return train_loop(model, inputs, targets, **args)

    return call


def loss(*args: object, **kw: object) -> Call:
    """batched_loss on the test's model."""
    return lambda model: batched_loss(model, *args, **kw)


def step(rule: Callable[..., None], params: str | object, lr: object, **kw: object) -> Call:
    """An update rule on the model's parameters ("model"), or on ``params`` as given."""

    def call(model: nn.Module) -> object:
        ps = {"model": list(model.parameters()), "nonleaf": [p * 2 for p in model.parameters()]}
        rule(ps.get(params, params) if isinstance(params, str) else params, lr, **kw)
        return None

    return call


CASES: list[tuple[str, Call, type[Exception], list[str]]] = [
    # models
    ("ChainModel/w1 str", lambda m: ChainModel(w1="3"), TypeError, ["w1", "'3'"]),
    ("ChainModel/w2 bool", lambda m: ChainModel(w2=True), TypeError, ["w2", "True"]),
    (
        "ChainModel/w1 tensor",
        lambda m: ChainModel(w1=torch.tensor(1.0)),
        TypeError,
        ["w1", "tensor"],
    ),
    ("ChainModel/w3 nan", lambda m: ChainModel(w3=float("nan")), ValueError, ["w3", "nan"]),
    (
        "ChainModel/activation name",
        lambda m: ChainModel(activation="tanh"),
        ValueError,
        ["activation", "'tanh'"],
    ),
    (
        "ChainModel/activation type",
        lambda m: ChainModel(activation=3),
        TypeError,
        ["activation", "3"],
    ),
    (
        "ChainModel/int dtype",
        lambda m: ChainModel(dtype=torch.int64),
        TypeError,
        ["dtype", "torch.int64"],
    ),
    ("FrozenFirst/w1 inf", lambda m: FrozenFirstModel(w1=float("inf")), ValueError, ["w1", "inf"]),
    ("FrozenFirst/w2 list", lambda m: FrozenFirstModel(w2=[1.0]), TypeError, ["w2", "[1.0]"]),
    # update rules
    *[
        (f"{rule.__name__}/{name}", step(rule, params, lr), exc, words)
        for rule in (manual_sgd_step, legacy_data_step)
        for name, params, lr, exc, words in [
            (
                "single tensor",
                torch.ones(1, requires_grad=True),
                0.1,
                TypeError,
                ["params", "iterable of tensors"],
            ),
            ("floats", [1.0, 2.0], 0.1, TypeError, ["params[0]", "1.0"]),
            ("numpy", np.ones(3), 0.1, TypeError, ["params[0]", "float64"]),
            ("not leaves", "nonleaf", 0.1, ValueError, ["params[0]", "not a leaf"]),
            (
                "lr 0-d tensor",
                "model",
                torch.tensor(0.1),
                TypeError,
                ["lr", "tensor", "float(lr.item())"],
            ),
            ("lr str", "model", "0.1", TypeError, ["lr", "'0.1'"]),
            ("lr bool", "model", True, TypeError, ["lr", "True"]),
            ("lr negative", "model", -0.1, ValueError, ["lr", "-0.1"]),
            ("lr nan", "model", float("nan"), ValueError, ["lr", "nan"]),
            ("lr inf", "model", float("inf"), ValueError, ["lr", "inf"]),
        ]
    ],
    (
        "manual_sgd_step/guard float",
        step(manual_sgd_step, "model", 0.1, guard=1.0),
        TypeError,
        ["guard", "1.0"],
    ),
    # losses
    ("mse_loss/list", lambda m: mse_loss([1.0], T), TypeError, ["outputs", "[1.0]"]),
    ("mse_loss/float target", lambda m: mse_loss(T, 1.0), TypeError, ["targets", "1.0"]),
    (
        "mse_loss/broadcast",
        lambda m: mse_loss(T, T[:, 0]),
        ValueError,
        ["targets", "(3, 1)", "(3,)"],
    ),
    # batched_loss
    ("batched_loss/model", lambda m: batched_loss(object(), X, T), TypeError, ["model", "object"]),
    ("batched_loss/list inputs", loss([[1.0], [2.0], [3.0]], T), TypeError, ["inputs", "list"]),
    ("batched_loss/numpy inputs", loss(np.ones((3, 1)), T), TypeError, ["inputs", "ndarray"]),
    ("batched_loss/float targets", loss(X, 1.0), TypeError, ["targets", "1.0"]),
    (
        "batched_loss/0-d inputs",
        loss(torch.tensor(1.0), torch.tensor(1.0)),
        ValueError,
        ["inputs", "0-d"],
    ),
    ("batched_loss/rows", loss(X, T[:2]), ValueError, ["3 inputs", "2 targets"]),
    ("batched_loss/empty", loss(X[:0], T[:0]), ValueError, ["inputs", "0 rows"]),
    ("batched_loss/nan inputs", loss(NAN_X, T), ValueError, ["inputs", "NaN"]),
    ("batched_loss/inf targets", loss(X, INF_T), ValueError, ["targets", "infinite"]),
    ("batched_loss/int inputs", loss(X.long(), T), TypeError, ["inputs", "torch.int64"]),
    (
        "batched_loss/complex inputs",
        loss(X.to(torch.complex64), T),
        TypeError,
        ["inputs", "complex64"],
    ),
    (
        "batched_loss/float64 inputs",
        loss(X.double(), T),
        TypeError,
        ["inputs", "torch.float32", "float64"],
    ),
    ("batched_loss/int targets", loss(X, T.long()), TypeError, ["targets", "int64"]),
    ("batched_loss/shape", loss(X, T[:, 0]), ValueError, ["targets", "(3,)"]),
    ("batched_loss/batch 0", loss(X, T, 0), ValueError, ["batch_size", "0"]),
    ("batched_loss/batch > N", loss(X, T, 4), ValueError, ["batch_size", "4", "(3)"]),
    ("batched_loss/batch float", loss(X, T, 1.5), TypeError, ["batch_size", "1.5"]),
    ("batched_loss/generator", loss(X, T, 1, generator=3), TypeError, ["generator", "3"]),
    ("batched_loss/loss_fn", loss(X, T, loss_fn="mse"), TypeError, ["loss_fn", "'mse'"]),
    (
        "batched_loss/loss not 0-d",
        loss(X, T, loss_fn=lambda a, b: (a - b) ** 2),
        ValueError,
        ["loss_fn", "0-d"],
    ),
    # train_loop
    (
        "train_loop/model",
        lambda m: train_loop([m], X, T, epochs=1, lr=0.1),
        TypeError,
        ["model", "list"],
    ),
    ("train_loop/epochs -1", fit(epochs=-1), ValueError, ["epochs", "-1"]),
    ("train_loop/epochs float", fit(epochs=2.0), TypeError, ["epochs", "2.0"]),
    ("train_loop/neither", fit(lr=None), ValueError, ["lr", "optimizer", "None"]),
    ("train_loop/both", fit(optimizer="sgd"), ValueError, ["Exactly one", "lr=0.1", "SGD"]),
    (
        "train_loop/optimizer type",
        fit(lr=None, optimizer="adam"),
        TypeError,
        ["optimizer", "'adam'"],
    ),
    ("train_loop/lr tensor", fit(lr=torch.tensor(0.1)), TypeError, ["lr", "tensor"]),
    ("train_loop/lr negative", fit(lr=-1.0), ValueError, ["lr", "-1.0"]),
    ("train_loop/lr nan", fit(lr=float("nan")), ValueError, ["lr", "nan"]),
    ("train_loop/update", fit(update=3), TypeError, ["update", "3"]),
    (
        "train_loop/update+optimizer",
        fit(lr=None, optimizer="sgd", update=legacy_data_step),
        ValueError,
        ["update", "lr"],
    ),
    ("train_loop/list inputs", fit(inputs=[[1.0], [2.0], [3.0]]), TypeError, ["inputs", "list"]),
    ("train_loop/numpy targets", fit(targets=np.zeros((3, 1))), TypeError, ["targets", "ndarray"]),
    ("train_loop/rows", fit(targets=T[:1]), ValueError, ["3 inputs", "1 targets"]),
    ("train_loop/empty", fit(inputs=X[:0], targets=T[:0]), ValueError, ["inputs", "0 rows"]),
    ("train_loop/nan inputs", fit(inputs=NAN_X), ValueError, ["inputs", "NaN"]),
    ("train_loop/inf targets", fit(targets=INF_T), ValueError, ["targets", "infinite"]),
    ("train_loop/int inputs", fit(inputs=X.int()), TypeError, ["inputs", "torch.int32"]),
    (
        "train_loop/complex targets",
        fit(targets=T.to(torch.complex64)),
        TypeError,
        ["targets", "complex64"],
    ),
    ("train_loop/shape", fit(targets=T[:, 0]), ValueError, ["targets", "(3,)"]),
    ("train_loop/batch 0", fit(batch_size=0), ValueError, ["batch_size", "0"]),
    ("train_loop/batch > N", fit(batch_size=5), ValueError, ["batch_size", "5"]),
    ("train_loop/generator", fit(generator="g"), TypeError, ["generator", "'g'"]),
    ("train_loop/callbacks item", fit(callbacks=[1]), TypeError, ["callbacks[0]", "1"]),
    ("train_loop/callbacks callable", fit(callbacks=print), TypeError, ["callbacks", "print"]),
    ("train_loop/checkpoint type", fit(checkpoint=3), TypeError, ["checkpoint", "3"]),
    (
        "train_loop/checkpoint_every",
        fit(checkpoint="c.pt", checkpoint_every=0),
        ValueError,
        ["checkpoint_every", "0"],
    ),
    ("train_loop/resume without path", fit(resume=True), ValueError, ["resume", "checkpoint"]),
    (
        "train_loop/no trainable params",
        lambda m: train_loop(nn.Linear(1, 1).requires_grad_(False), X, T, epochs=1, lr=0.1),
        ValueError,
        ["model", "no trainable parameters"],
    ),
    # recording and plotting
    ("ActivationRecorder/model", lambda m: ActivationRecorder(3), TypeError, ["model", "3"]),
    (
        "ActivationRecorder/names str",
        lambda m: ActivationRecorder(m, names="input"),
        TypeError,
        ["names", "'input'"],
    ),
    (
        "ActivationRecorder/unknown",
        lambda m: ActivationRecorder(m, names=["nope"]),
        ValueError,
        ["names", "'nope'"],
    ),
    (
        "plot_activations/history",
        lambda m: plot_activations({"losses": []}),
        TypeError,
        ["history", "dict"],
    ),
    (
        "plot_activations/empty",
        lambda m: plot_activations(TrainHistory([1.0])),
        ValueError,
        ["history", "record=True"],
    ),
    (
        "plot_activations/label_every",
        lambda m: plot_activations(TrainHistory([1.0], {"a": torch.ones(1, 1)}), label_every=0),
        ValueError,
        ["label_every", "0"],
    ),
    ("plot_losses/history", lambda m: plot_losses([1.0]), TypeError, ["history", "[1.0]"]),
    # checkpoints
    ("save_checkpoint/path", lambda m: save_checkpoint(3, m, epoch=1), TypeError, ["path", "3"]),
    (
        "save_checkpoint/model",
        lambda m: save_checkpoint("x.pt", "m", epoch=1),
        TypeError,
        ["model", "'m'"],
    ),
    ("load_checkpoint/path", lambda m: load_checkpoint(None, m), TypeError, ["path", "None"]),
]


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nn.Module:
    """A ChainModel whose gradients are set, so a rule that ran would change it."""
    monkeypatch.chdir(tmp_path)  # any stray file lands in the test's folder
    m = ChainModel()
    ((m(torch.tensor([2.0])) - 1.0) ** 2).sum().backward()
    return m


@pytest.mark.parametrize(("name", "call", "exc", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(
    model: nn.Module, name: str, call: Call, exc: type[Exception], words: list[str]
) -> None:
    before = params_of(model)
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    with pytest.raises(exc) as info:
        call(model)
    assert isinstance(info.value, exc)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert_same_bits(params_of(model), before)
    for p, g in zip(model.parameters(), grads, strict=True):
        assert g is not None and p.grad is not None and torch.equal(p.grad, g)
    assert list(Path.cwd().iterdir()) == []


@pytest.mark.cuda
def test_data_on_another_device_than_the_model(model: nn.Module) -> None:
    before = params_of(model)
    with pytest.raises(ValueError, match="inputs must be on the model's device cpu, got cuda"):
        batched_loss(model, X.cuda(), T.cuda())
    assert_same_bits(params_of(model), before)
    # train_loop moves the data to the model's device once, by design
    train_loop(ChainModel(), X.cuda(), T.cuda(), epochs=1, lr=1e-4)


@pytest.mark.cuda
def test_a_generator_on_the_gpu_is_refused(model: nn.Module) -> None:
    before = params_of(model)
    with pytest.raises(ValueError, match="generator must live on the CPU"):
        train_loop(model, X, T, epochs=1, lr=0.1, batch_size=1, generator=torch.Generator("cuda"))
    assert_same_bits(params_of(model), before)
