"""lr_find against a hand-written range test, and everything it changes put back."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from gradbasics import ChainModel, DivergenceError, LRFindResult, lr_find, plot_lr_find, train_loop


def _data(rows: int = 24, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 3, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3 * torch.randn(rows, 1, generator=gen)
    return x, y


def _net(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def _hand_range_test(
    model: nn.Module,
    batches: Any,
    *,
    start: float,
    end: float,
    steps: int,
    optimizer: torch.optim.Optimizer | None = None,
) -> tuple[list[float], list[float]]:
    """Smith's range test written out: the ramp, the 4x stop, plain SGD or the optimizer."""
    lrs, losses = [], []
    for i in range(steps):
        lr = start * (end / start) ** (i / (steps - 1))
        xb, yb = next(batches)
        loss = nn.functional.mse_loss(model(xb), yb)
        lrs.append(lr)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]) or losses[-1] > 4 * min(losses):
            break
        loss.backward()
        with torch.no_grad():
            if optimizer is None:
                for p in model.parameters():
                    assert p.grad is not None
                    p.add_(p.grad, alpha=-lr)  # torch.optim.SGD's update
            else:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
        model.zero_grad(set_to_none=True)
    return lrs, losses


def _permuted(x: Tensor, y: Tensor, size: int, gen: torch.Generator) -> Any:
    """train_loop's batches: a fresh permutation per epoch, cut in batches of ``size``."""
    while True:
        for rows in torch.randperm(x.shape[0], generator=gen).split(size):
            yield x[rows], y[rows]


def test_lr_find_equals_a_hand_written_range_test_over_several_epochs() -> None:
    x, y = _data(rows=40)
    result = lr_find(_net(), x, y, start_lr=1e-4, end_lr=100.0, steps=60, batch_size=16,
                     generator=torch.Generator().manual_seed(3))  # fmt: skip
    lrs, losses = _hand_range_test(_net(), _permuted(x, y, 16, torch.Generator().manual_seed(3)),
                                   start=1e-4, end=100.0, steps=60)  # fmt: skip
    assert len(losses) > 3, "the run must go past one epoch of 3 batches"
    assert result.lrs == lrs
    assert result.losses == losses
    assert len(losses) < 60 and losses[-1] > 4 * min(losses)  # it stopped by the 4x rule


def test_lr_find_with_an_optimizer_sets_its_rate_per_step() -> None:
    x, y = _data()
    net, twin = _net(), _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.5, momentum=0.9)
    result = lr_find(net, x, y, start_lr=1e-5, end_lr=10.0, steps=40, optimizer=opt)
    lrs, losses = _hand_range_test(twin, iter(lambda: (x, y), None), start=1e-5, end=10.0,
                                   steps=40, optimizer=twin_opt)  # fmt: skip
    assert (result.lrs, result.losses) == (lrs, losses)
    assert opt.param_groups[0]["lr"] == 0.5 and not opt.state  # put back as it was


def test_lr_find_takes_a_dataloader_as_train_loop_does() -> None:
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=7, shuffle=True,
                        generator=torch.Generator().manual_seed(5))  # fmt: skip
    twin = DataLoader(TensorDataset(x, y), batch_size=7, shuffle=True,
                      generator=torch.Generator().manual_seed(5))  # fmt: skip

    def forever() -> Any:
        while True:
            yield from twin

    result = lr_find(_net(), loader, start_lr=1e-4, end_lr=1e3, steps=30)
    lrs, losses = _hand_range_test(_net(), forever(), start=1e-4, end=1e3, steps=30)
    assert (result.lrs, result.losses) == (lrs, losses)
    assert len(losses) > 4  # more than one epoch of 4 batches


def test_lr_find_stops_after_a_non_finite_loss_and_keeps_it() -> None:
    x, y = _data()
    result = lr_find(_net(), x * 1e3, y, start_lr=1.0, end_lr=1e30, steps=50)
    assert not math.isfinite(result.losses[-1]) or result.losses[-1] > 4 * min(result.losses)
    assert all(math.isfinite(v) for v in result.losses[:-1])
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) < 50


def test_lr_find_puts_the_model_optimizer_and_every_rng_back() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Linear(8, 1))
    net[1].eval()  # a frozen batch norm in a model in train mode stays frozen
    x, y = _data()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    ((net(x) - y) ** 2).mean().backward()
    opt.step()  # the optimizer has state, and the gradients are kept
    gen = torch.Generator().manual_seed(9)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    opt_state = {
        k: {n: t.clone() for n, t in s.items()} for k, s in opt.state_dict()["state"].items()
    }
    gen_state, rng = gen.get_state(), torch.get_rng_state()
    modes = [m.training for m in net.modules()]
    lr_find(net, x, y, batch_size=6, optimizer=opt, generator=gen, steps=20)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.grad for p in net.parameters()].count(None) == 0
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters(), strict=True))  # type: ignore[arg-type]
    saved = opt.state_dict()["state"]
    assert all(torch.equal(opt_state[k][n], saved[k][n]) for k in opt_state for n in opt_state[k])
    assert opt.param_groups[0]["lr"] == 0.01
    assert torch.equal(gen.get_state(), gen_state) and torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in net.modules()] == modes


def test_lr_find_puts_everything_back_when_the_loss_raises() -> None:
    x, y = _data()
    net, calls = _net(), []

    def flaky(out: Tensor, target: Tensor) -> Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the loss broke")
        return ((out - target) ** 2).mean()

    before = [p.clone() for p in net.parameters()]
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="the loss broke"):
        lr_find(net, x, y, loss_fn=flaky, batch_size=4)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    assert torch.equal(torch.get_rng_state(), rng)


def _scripted(values: list[float]) -> Any:
    """A loss taking the given values in turn (its gradient is zero)."""
    it = iter(values)

    def loss_fn(out: Tensor, target: Tensor) -> Tensor:
        if not torch.is_grad_enabled():  # lr_find's look at the loss before it starts
            return (out - target).sum() * 0.0 + 1.0
        return (out - target).sum() * 0.0 + next(it)

    return loss_fn


@pytest.mark.parametrize(
    ("values", "taken"),
    [
        ([2.0, 1.0, 4.0, 4.5, 1.0], 4),  # exactly 4x the lowest goes on, above it stops
        ([1.0, math.nan, 1.0], 2),
        ([1.0, math.inf, 1.0], 2),
        ([3.0, 2.0, 1.0, 0.5], 4),
    ],
)
def test_the_stop_rule_is_above_4x_the_lowest_or_not_finite(
    values: list[float], taken: int
) -> None:
    x, y = _data()
    result = lr_find(_net(), x, y, steps=len(values), loss_fn=_scripted(values))
    assert len(result.losses) == taken
    np.testing.assert_array_equal(result.losses, values[:taken])


def test_smoothed_losses_and_suggestion_follow_their_formulas() -> None:
    x, y = _data()
    result = lr_find(_net(), x, y, start_lr=1e-4, end_lr=100.0, steps=80)
    losses = np.array(result.losses, dtype=np.float64)
    i = np.arange(len(losses))
    weights = 0.02 * 0.98 ** (i[:, None] - i[None, :]) * (i[None, :] <= i[:, None])
    expected = weights @ losses / (1 - 0.98 ** (i + 1))
    np.testing.assert_allclose(result.smoothed, expected, rtol=1e-12)
    slopes = np.diff(expected) / np.diff(np.log(result.lrs))
    first = len(losses) // 10  # the first tenth is skipped
    assert result.suggestion == result.lrs[first + int(np.nanargmin(slopes[first:]))]
    assert slopes[first:].min() < 0


def test_the_suggestion_skips_the_first_tenth_of_the_steps() -> None:
    values = [2.0, 1.0] + [1.0] * 18  # the steepest fall is the first step's
    x, y = _data()
    result = lr_find(_net(), x, y, steps=20, loss_fn=_scripted(values))
    s = np.array(result.smoothed)
    slopes = np.diff(s) / np.diff(np.log(result.lrs))
    assert int(np.argmin(slopes)) == 0
    assert result.suggestion == result.lrs[2 + int(np.argmin(slopes[2:]))] == result.lrs[2]


def test_no_suggestion_when_the_loss_never_falls() -> None:
    result = lr_find(ChainModel(), torch.tensor([2.0]), torch.tensor([1.0]), start_lr=1.0,
                     end_lr=10.0, steps=3)  # fmt: skip
    assert result.suggestion is None
    assert result.losses[-1] > 4 * result.losses[0]


def test_the_chain_trains_at_the_suggestion_and_diverges_at_the_notes_rate() -> None:
    x, t = torch.tensor([2.0]), torch.tensor([1.0])
    suggestion = lr_find(ChainModel(), x, t).suggestion
    assert suggestion is not None and suggestion < 0.01
    losses = train_loop(ChainModel(), x, t, epochs=100, lr=suggestion).losses
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] / 1000
    with pytest.raises(DivergenceError):
        train_loop(ChainModel(), x, t, epochs=100, lr=0.01)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"start_lr": 1.0, "end_lr": 1.0}, ValueError, "start_lr must be below end_lr"),
        ({"start_lr": 2.0, "end_lr": 1.0}, ValueError, "start_lr=2.0"),
        ({"start_lr": 0.0}, ValueError, "start_lr must be a finite number > 0"),
        ({"end_lr": -1.0}, ValueError, "end_lr must be a finite number"),
        ({"end_lr": math.inf}, ValueError, "end_lr must be a finite number"),
        ({"steps": 1}, ValueError, "steps must be >= 2, got 1"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"optimizer": "sgd"}, TypeError, "optimizer must be a torch.optim.Optimizer"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_arguments_are_refused_before_anything_changes(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    x, y = _data()
    net, gen = _net(), torch.Generator().manual_seed(0)
    before, state = [p.clone() for p in net.parameters()], gen.get_state()
    with pytest.raises(error, match=words):
        lr_find(net, x, y, generator=gen, **kwargs)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    assert torch.equal(gen.get_state(), state)


def test_an_empty_loader_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one batch"):
        lr_find(_net(), [])


def test_plot_lr_find_draws_loss_against_a_log_rate_with_the_suggestion() -> None:
    x, y = _data()
    result = lr_find(_net(), x, y, start_lr=1e-4, end_lr=100.0, steps=40)
    ax = plot_lr_find(result).axes[0]
    assert ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.lines}
    assert np.asarray(lines["loss"].get_ydata()).tolist() == result.losses
    assert np.asarray(lines["smoothed"].get_xdata()).tolist() == result.lrs
    assert result.suggestion is not None
    assert np.asarray(lines["suggestion"].get_xdata()).tolist() == [result.suggestion] * 2
    with pytest.raises(TypeError, match="result must be an LRFindResult, got"):
        plot_lr_find({"lrs": []})  # type: ignore[arg-type]


def test_plot_lr_find_without_a_suggestion_says_so() -> None:
    result = LRFindResult(lrs=[0.1, 1.0], losses=[1.0, 9.0], smoothed=[1.0, 9.0], suggestion=None)
    ax = plot_lr_find(result).axes[0]
    assert "no descent" in ax.get_title()
    assert "suggestion" not in [line.get_label() for line in ax.lines]


def test_gradients_left_by_an_earlier_backward_do_not_join_the_first_step() -> None:
    x, y = _data()
    net = _net()
    clean = lr_find(net, x, y, start_lr=1e-3, end_lr=1.0, steps=10).losses
    for p in net.parameters():
        p.grad = torch.full_like(p, 100.0)
    assert lr_find(net, x, y, start_lr=1e-3, end_lr=1.0, steps=10).losses == clean
    assert all(torch.equal(p.grad, torch.full_like(p, 100.0)) for p in net.parameters())  # type: ignore[arg-type]


def test_a_flat_curve_has_no_suggestion() -> None:
    x, y = _data()
    flat = lr_find(_net(), x, y, steps=30, loss_fn=_scripted([4.008] * 30))
    assert flat.smoothed != flat.losses  # the average's rounding wobbles ...
    assert flat.suggestion is None  # ... but is no descent
    tiny = lr_find(nn.Linear(3, 1), x, y, start_lr=1e-30, end_lr=1e-25, steps=50)
    assert len(set(tiny.losses)) == 1 and tiny.suggestion is None


def test_buffers_left_out_of_the_state_dict_are_put_back() -> None:
    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(3, 1)
            self.register_buffer("calls", torch.zeros(()), persistent=False)

        calls: Tensor

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1
            out: Tensor = self.layer(x)
            return out

    x, y = _data()
    model = Counting()
    lr_find(model, x, y, start_lr=1e-3, end_lr=1.0, steps=10)
    assert model.calls.item() == 0


def test_a_loaders_own_generator_is_put_back() -> None:
    x, y = _data()
    gen = torch.Generator().manual_seed(4)
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True, generator=gen)
    state = gen.get_state()
    lr_find(_net(), loader, start_lr=1e-3, end_lr=1.0, steps=12)
    assert torch.equal(gen.get_state(), state)


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("nan_in_loader", ValueError, "inputs' first batch"),
        ("int32_classes", TypeError, "int64 class indices"),
        ("class_out_of_range", ValueError, "class indices from 0 to 3"),
        ("wrong_features", ValueError, "inputs must fit the model"),
        ("negative_loss", ValueError, "loss_fn must give losses >= 0"),
    ],
)
def test_bad_data_and_losses_are_refused_as_train_loop_refuses_them(
    case: str, error: type[Exception], words: str
) -> None:
    x, y = _data()
    net: nn.Module = _net()
    kwargs: dict[str, Any] = {}
    data: tuple[Any, ...] = (x, y)
    if case == "nan_in_loader":
        data = (DataLoader(TensorDataset(x.index_fill(0, torch.tensor([0]), math.nan), y), 8),)
    elif case in ("int32_classes", "class_out_of_range"):
        net, kwargs["loss_fn"] = nn.Linear(3, 4), nn.CrossEntropyLoss()
        classes = torch.arange(len(x)) % (4 if case == "int32_classes" else 5)  # 4: one too many
        data = (x, classes.int() if case == "int32_classes" else classes)
    elif case == "wrong_features":
        data = (torch.randn(len(x), 5), y)
    else:
        kwargs["loss_fn"] = lambda out, t: ((out - t) ** 2).mean() - 100.0
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(error, match=words):
        lr_find(net, *data, steps=10, **kwargs)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))


@pytest.mark.parametrize(
    ("start", "end"), [(1.0, 1.0 + 2 * 2.2e-16), (1e-300, 1e10)], ids=["too close", "too wide"]
)
def test_a_ramp_without_distinct_finite_rates_is_refused_naming_both_ends(
    start: float, end: float
) -> None:
    x, y = _data()
    with pytest.raises(ValueError, match=r"start_lr and end_lr must give 20 distinct finite"):
        lr_find(_net(), x, y, start_lr=start, end_lr=end, steps=20)


def test_plot_lr_find_takes_a_suggestion_between_the_rates() -> None:
    result = LRFindResult(lrs=[0.01, 0.1], losses=[2.0, 1.0], smoothed=[2.0, 1.5], suggestion=0.05)
    lines = {line.get_label(): line for line in plot_lr_find(result).axes[0].lines}
    assert np.asarray(lines["suggestion"].get_xdata()).tolist() == [0.05, 0.05]


def test_a_loader_that_runs_dry_after_its_first_epochs_is_refused_not_looped_on() -> None:
    x, y = _data()

    class RunsDry:
        """Batches on the first two passes (lr_find's look, then epoch 1), none after."""

        def __init__(self) -> None:
            self.passes = 0

        def __iter__(self) -> Any:
            self.passes += 1
            return iter([(x, y)] if self.passes <= 2 else [])

    with pytest.raises(ValueError, match="inputs must give at least one batch"):
        lr_find(nn.Linear(3, 1), RunsDry(), start_lr=1e-4, end_lr=1e-3, steps=5)
