from __future__ import annotations

import math

import pytest
import torch

from gradbasics import (
    ChainModel,
    DivergenceError,
    FrozenFirstModel,
    TrainHistory,
    legacy_data_step,
    train_loop,
)
from helpers import assert_same_bits, hand_chain_loop, params_of


def test_seed_walkthrough_equals_hand_written_loop(device: torch.device) -> None:
    x = torch.tensor([2.0], device=device)
    t = torch.tensor([1.0], device=device)
    model = ChainModel(device=device)
    history = train_loop(model, x, t, epochs=100, lr=1e-4)
    ws, losses = hand_chain_loop(x, t, epochs=100, lr=1e-4)
    assert history.losses == losses
    for p, w in zip((model.w1, model.w2, model.w3), ws, strict=True):
        assert torch.equal(p.detach(), w)


def test_task2_closed_form_and_frozen_w1(device: torch.device) -> None:
    model = FrozenFirstModel(w1=1.0, w2=1.0, device=device, dtype=torch.float64)
    one = torch.tensor([1.0], dtype=torch.float64, device=device)
    history = train_loop(model, one, 2 * one, epochs=20, lr=0.01)
    # w2_{k+1} = w2_k - 0.01 * 2 (w2_k - 2)  =>  w2_k = 2 - 0.98**k
    assert model.w2.item() == pytest.approx(2 - 0.98**20, rel=1e-14)
    assert model.w1.item() == 1.0
    expected = [(0.98**k) ** 2 for k in range(20)]  # loss_k = (w2_k - 2)^2
    assert history.losses == pytest.approx(expected, rel=1e-13)


def test_optimizer_path_equals_hand_written_sgd_loop(device: torch.device) -> None:
    x = torch.tensor([2.0, 1.0, 0.5], device=device)
    t = torch.tensor([1.0, 0.5, 0.25], device=device)
    model = ChainModel(device=device)
    train_loop(model, x, t, epochs=50, optimizer=torch.optim.SGD(model.parameters(), lr=1e-4))
    ref = ChainModel(device=device)
    opt = torch.optim.SGD(ref.parameters(), lr=1e-4)
    for _ in range(50):
        ((ref(x) - t) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
    assert_same_bits(params_of(model), params_of(ref))


def test_adam_optimizer_path(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=gen).to(device)
    t = x.sum(1, keepdim=True)
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 1).to(device)
    ref = torch.nn.Linear(4, 1).to(device)
    ref.load_state_dict(model.state_dict())
    train_loop(model, x, t, epochs=5, optimizer=torch.optim.Adam(model.parameters(), lr=0.01))
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    for _ in range(5):
        ((ref(x) - t) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
    assert_same_bits(params_of(model), params_of(ref))


def test_minibatches_equal_hand_written_loop(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(23, 3, generator=gen)
    t = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
    torch.manual_seed(5)
    model = torch.nn.Linear(3, 1)
    ref = torch.nn.Linear(3, 1)
    ref.load_state_dict(model.state_dict())
    model.to(device)
    history = train_loop(
        model, x, t, epochs=4, lr=0.05, batch_size=5, generator=torch.Generator().manual_seed(9)
    )
    # Oracle on the CPU: the same permutations, slices of 5 (the last of 3), p.add_ updates.
    perm_gen = torch.Generator().manual_seed(9)
    losses = []
    for _ in range(4):
        total = 0.0
        for rows in torch.randperm(23, generator=perm_gen).split(5):
            loss = ((ref(x[rows]) - t[rows]) ** 2).mean()
            total += loss.item() * len(rows)
            loss.backward()
            with torch.no_grad():
                for p in ref.parameters():
                    assert p.grad is not None
                    p.add_(p.grad, alpha=-0.05)
                    p.grad = None
        losses.append(total / 23)
    if device.type == "cpu":
        assert_same_bits(params_of(model), params_of(ref))
        assert history.losses == losses
    else:
        for k, v in params_of(model).items():
            torch.testing.assert_close(v.cpu(), params_of(ref)[k])
        assert history.losses == pytest.approx(losses, rel=1e-5)


def test_seeded_runs_are_deterministic() -> None:
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    t = x[:, :1] * 3
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        gen = torch.Generator().manual_seed(4)
        runs.append(
            (
                train_loop(model, x, t, epochs=3, lr=0.1, batch_size=7, generator=gen).losses,
                params_of(model),
            )
        )
    assert runs[0][0] == runs[1][0]
    assert_same_bits(runs[0][1], runs[1][1])


def test_legacy_update_rule_is_used_when_chosen() -> None:
    x, t = torch.tensor([2.0]), torch.tensor([1.0])
    model = ChainModel(dtype=torch.float64)
    train_loop(model, x.double(), t.double(), epochs=30, lr=1e-4, update=legacy_data_step)
    ws = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in (3.0, 4.0, 5.0)]
    for _ in range(30):
        ((ws[2] * torch.relu(ws[1] * (ws[0] * 2.0)) - 1.0) ** 2).mean().backward()
        for p in ws:
            assert p.grad is not None
            p.data -= 1e-4 * p.grad
            p.grad = None
    assert [p.item() for p in model.parameters()] == [w.item() for w in ws]


def test_divergence_at_the_notes_learning_rate(device: torch.device) -> None:
    model = ChainModel(device=device)
    x, t = torch.tensor([2.0], device=device), torch.tensor([1.0], device=device)
    with pytest.raises(DivergenceError) as info:
        train_loop(model, x, t, epochs=100, lr=0.01)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.epoch == 2
    assert math.isinf(err.loss)
    # The hand-written loop's first two steps: the parameters stop there.
    ws, losses = hand_chain_loop(x, t, epochs=2, lr=0.01)
    assert err.history.losses == losses
    assert losses[0] == 14161.0 and losses[1] == pytest.approx(4.196e11, rel=1e-3)
    for p, w in zip(model.parameters(), ws, strict=True):
        assert torch.equal(p.detach(), w)
        assert torch.isfinite(p).all()
    assert "in epoch 3 of 100" in str(err) and "4.19616e+11" in str(err)  # 1-based in messages


def test_divergence_mid_epoch_keeps_last_finite_step() -> None:
    x = torch.tensor([[1.0], [1.0], [1e30]])
    t = torch.zeros(3, 1)
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1e10)
    seen: list[torch.Tensor] = []

    def spy(epoch: int, history: TrainHistory) -> None:
        seen.append(model.weight.detach().clone())

    with pytest.raises(DivergenceError) as info:
        # The 1e30 row squares to inf; in order, it is the third batch of epoch 0.
        train_loop(
            model,
            x,
            t,
            epochs=3,
            lr=0.0,
            batch_size=1,
            callbacks=[spy],
            generator=_gen_putting_row_last(),
        )
    assert info.value.epoch == 0
    assert info.value.history.losses == []
    assert seen == []
    assert model.weight.item() == 1e10


def _gen_putting_row_last() -> torch.Generator:
    for seed in range(100):
        if torch.randperm(3, generator=torch.Generator().manual_seed(seed))[2].item() == 2:
            return torch.Generator().manual_seed(seed)
    raise AssertionError("no seed puts row 2 last")


def test_dead_relu_regime_sticks_at_one() -> None:
    model = ChainModel()
    history = train_loop(model, torch.tensor([2.0]), torch.tensor([1.0]), epochs=100, lr=1e-3)
    assert history.losses[-1] == 1.0  # output 0, target 1
    assert (model.w2 * model.w1 * 2.0).item() <= 0


def test_callbacks_see_each_epoch_and_history_so_far() -> None:
    calls: list[tuple[int, int]] = []
    train_loop(
        FrozenFirstModel(),
        torch.tensor([1.0]),
        torch.tensor([2.0]),
        epochs=4,
        lr=0.1,
        callbacks=[lambda e, h: calls.append((e, len(h.losses)))],
    )
    assert calls == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_record_fills_one_row_per_epoch_before_the_update(device: torch.device) -> None:
    model = FrozenFirstModel(w1=1.0, w2=1.0, device=device, dtype=torch.float64)
    one = torch.tensor([1.0], dtype=torch.float64, device=device)
    history = train_loop(model, one, 2 * one, epochs=20, lr=0.01, record=True)
    assert list(history.activations) == ["input", "hidden", "output"]
    for name, rows in history.activations.items():
        assert rows.shape == (20, 1), name
        assert rows.device.type == "cpu"
        assert not rows.requires_grad
    w2 = torch.tensor([2 - 0.98**k for k in range(20)], dtype=torch.float64)
    torch.testing.assert_close(history.activations["output"][:, 0], w2, rtol=1e-14, atol=0)
    assert history.activations["hidden"].eq(1.0).all()


def test_record_chain_with_minibatches_keeps_the_last_batch() -> None:
    x = torch.arange(1.0, 8.0).reshape(7, 1)
    history = train_loop(
        ChainModel(),
        x,
        x,
        epochs=3,
        lr=0.0,
        batch_size=3,
        generator=torch.Generator().manual_seed(2),
        record=True,
    )
    assert list(history.activations) == ["input", "hidden1", "hidden2", "output"]
    assert history.activations["input"].shape == (3, 1, 1)  # last batch: 7 = 3 + 3 + 1
    perm_gen = torch.Generator().manual_seed(2)
    for e in range(3):
        last = torch.randperm(7, generator=perm_gen)[-1].item() + 1.0
        assert history.activations["hidden1"][e].item() == 3.0 * last
        assert history.activations["output"][e].item() == 60.0 * last


def test_zero_epochs_and_stale_gradients() -> None:
    model = FrozenFirstModel()
    model.w2.grad = torch.tensor([100.0])
    history = train_loop(model, torch.tensor([1.0]), torch.tensor([2.0]), epochs=0, lr=0.1)
    assert history.losses == [] and model.w2.item() == 1.0
    model.w2.grad = torch.tensor([100.0])
    train_loop(model, torch.tensor([1.0]), torch.tensor([2.0]), epochs=1, lr=0.1)
    assert model.w2.item() == pytest.approx(1.0 - 0.1 * 2 * (1.0 - 2.0))


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    train_loop(
        FrozenFirstModel(),
        torch.tensor([1.0]),
        torch.tensor([2.0]),
        epochs=3,
        lr=0.1,
        progress=True,
    )
    assert "3/3" in capsys.readouterr().err


def test_data_are_moved_to_the_model_device(device: torch.device) -> None:
    model = FrozenFirstModel(device=device)
    train_loop(model, torch.tensor([1.0]), torch.tensor([2.0]), epochs=1, lr=0.5)
    assert model.w2.item() == 2.0
