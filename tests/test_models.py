from __future__ import annotations

import math

import pytest
import torch

from gradbasics import ActivationRecorder, ChainModel, FrozenFirstModel


def test_chain_forward_matches_closed_form_float64(device: torch.device) -> None:
    model = ChainModel(0.5, -1.5, 2.0, device=device, dtype=torch.float64)
    x = torch.linspace(-3, 3, 24, dtype=torch.float64, device=device).reshape(2, 3, 4)
    expected = 2.0 * torch.clamp(-1.5 * (0.5 * x), min=0.0)
    out = model(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_chain_gradients_at_the_notes_values(device: torch.device) -> None:
    model = ChainModel(device=device, dtype=torch.float64)
    x = torch.tensor([2.0], dtype=torch.float64, device=device)
    ((model(x) - 1.0) ** 2).sum().backward()
    # Closed form: y = w3 w2 w1 x = 120; dL/dw_k = 2 (y - t) * prod(other weights) * x.
    w1, w2, w3, xv, t = 3.0, 4.0, 5.0, 2.0, 1.0
    r = 2 * (w3 * w2 * w1 * xv - t)
    expected = [r * w3 * w2 * xv, r * w3 * w1 * xv, r * w2 * w1 * xv]
    got = [p.grad.item() for p in (model.w1, model.w2, model.w3) if p.grad is not None]
    assert got == expected == [9520.0, 7140.0, 5712.0]


def test_chain_dead_relu_gives_zero_gradient_to_w1_w2() -> None:
    model = ChainModel(3.0, -4.0, 5.0, dtype=torch.float64)
    ((model(torch.tensor([2.0], dtype=torch.float64)) - 1.0) ** 2).sum().backward()
    assert [p.grad.item() for p in model.parameters() if p.grad is not None] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("activation", "oracle"),
    [("relu", lambda z: max(z, 0.0)), ("sigmoid", lambda z: 1 / (1 + 2.718281828459045**-z))],
)
def test_chain_named_activations(activation: str, oracle: object) -> None:
    model = ChainModel(0.5, 0.25, 2.0, activation=activation, dtype=torch.float64)
    for xv in (-2.0, 0.3, 1.7):
        z = 0.25 * (0.5 * xv)
        expected = 2.0 * oracle(z)  # type: ignore[operator]
        got = model(torch.tensor([xv], dtype=torch.float64)).item()
        assert got == pytest.approx(expected, rel=1e-12)


def test_chain_callable_activation() -> None:
    model = ChainModel(activation=torch.tanh, dtype=torch.float64)
    got = model(torch.tensor([0.1], dtype=torch.float64)).item()
    assert got == pytest.approx(5.0 * math.tanh(4.0 * 0.3), rel=1e-15)


def test_chain_module_activation_is_a_child_with_trainable_parameters() -> None:
    model = ChainModel(activation=torch.nn.PReLU(init=0.5))
    assert [n for n, _ in model.named_parameters()] == ["w1", "w2", "w3", "act.weight"]
    # w2 * w1 * x = -12 < 0: PReLU gives 0.5 * -12 = -6, times w3 = 5.
    assert model(torch.tensor([-1.0])).item() == -30.0
    with ActivationRecorder(model) as rec:
        model(torch.tensor([1.0]))
    assert list(rec.activations) == ["input", "hidden1", "hidden2", "output"]


def test_chain_weights_are_parameters_of_shape_1(device: torch.device) -> None:
    model = ChainModel(1, 2, 3, device=device, dtype=torch.float16)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["w1", "w2", "w3"]
    for p in model.parameters():
        assert isinstance(p, torch.nn.Parameter)
        assert p.shape == (1,)
        assert p.dtype == torch.float16
        assert p.device.type == device.type


def test_frozen_first_w1_is_a_buffer(device: torch.device) -> None:
    model = FrozenFirstModel(w1=2.0, w2=3.0)
    assert list(model.parameters()) == [model.w2]
    assert set(model.state_dict()) == {"w1", "w2"}
    assert [n for n, _ in model.named_buffers()] == ["w1"]
    model = model.to(device)
    assert model.w1.device.type == device.type
    assert not model.w1.requires_grad
    x = torch.tensor([1.5, -2.0], device=device)
    torch.testing.assert_close(model(x), 3.0 * (2.0 * x), rtol=0, atol=0)


def test_frozen_first_state_dict_round_trip() -> None:
    a = FrozenFirstModel(w1=2.5, w2=-1.0)
    b = FrozenFirstModel()
    b.load_state_dict(a.state_dict())
    assert (b.w1.item(), b.w2.item()) == (2.5, -1.0)
