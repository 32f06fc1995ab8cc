from __future__ import annotations

import pytest
import torch

from gradbasics import ActivationRecorder, ChainModel, FrozenFirstModel


def test_chain_activations_equal_closed_forms(device: torch.device) -> None:
    model = ChainModel(0.5, -2.0, 3.0, device=device, dtype=torch.float64)
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0]], dtype=torch.float64, device=device)
    with ActivationRecorder(model) as rec:
        out = model(x)
    h1 = 0.5 * x
    h2 = torch.clamp(-2.0 * h1, min=0)
    expected = {"input": x, "hidden1": h1, "hidden2": h2, "output": 3.0 * h2}
    assert list(rec.activations) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(rec.activations[name], value, rtol=0, atol=0)
        assert not rec.activations[name].requires_grad
    assert out.requires_grad


def test_frozen_first_names() -> None:
    model = FrozenFirstModel(w1=2.0, w2=3.0)
    with ActivationRecorder(model) as rec:
        model(torch.tensor([1.0]))
    assert {k: v.item() for k, v in rec.activations.items()} == {
        "input": 1.0,
        "hidden": 2.0,
        "output": 6.0,
    }


def test_hooks_are_removed_on_exit_even_when_the_body_raises() -> None:
    model = ChainModel()
    rec = ActivationRecorder(model)

    def body() -> None:
        with rec:
            model(torch.tensor([1.0]))
            raise KeyError("boom")

    with pytest.raises(KeyError):
        body()
    assert all(not m._forward_hooks for m in model.modules())
    before = rec.activations["output"].item()
    model(torch.tensor([2.0]))
    assert rec.activations["output"].item() == before  # nothing recorded after exit


def test_only_the_latest_pass_is_kept_and_it_can_be_reentered() -> None:
    model = FrozenFirstModel(w2=2.0)
    rec = ActivationRecorder(model)
    with rec:
        for v in (1.0, 2.0, 3.0):
            model(torch.tensor([v]))
    assert rec.activations["output"].item() == 6.0
    with rec:
        with pytest.raises(RuntimeError, match="already active"):
            rec.__enter__()
        model(torch.tensor([5.0]))
    assert rec.activations["output"].item() == 10.0


def test_generic_modules_use_leaf_submodule_names() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    x = torch.randn(4, 2)
    with ActivationRecorder(model) as rec:
        model(x)
    assert list(rec.activations) == ["0", "1", "2"]
    h = model[0](x)
    torch.testing.assert_close(rec.activations["1"], torch.relu(h))
    torch.testing.assert_close(rec.activations["2"], model[2](torch.relu(h)))


def test_a_leaf_model_records_its_output_and_names_can_be_chosen() -> None:
    model = torch.nn.Linear(2, 1)
    x = torch.ones(3, 2)
    with ActivationRecorder(model) as rec:
        y = model(x)
    assert list(rec.activations) == ["output"]
    assert torch.equal(rec.activations["output"], y.detach())
    chain = ChainModel()
    with ActivationRecorder(chain, names=["hidden2"]) as rec2:
        chain(torch.tensor([1.0]))
    assert list(rec2.activations) == ["hidden2"]
