"""train_loop for real training, each option against a hand-written loop doing the same.

Validation and metrics, train/eval modes, early stopping with the best weights, stopping
from a callback, learning-rate schedules, gradient clipping, DataLoader input, the
progress bar, the loss reduction and the epoch numbering of messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import gradbasics.callbacks.progress as progress_module
from gradbasics import (
    EarlyStopping,
    TrainHistory,
    TrainingInterrupted,
    evaluate,
    mse_loss,
    train_loop,
)
from helpers import assert_same_bits, params_of


def _data(rows: int = 40, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(rows, 1, generator=g)


def _mlp(dropout: float = 0.0, norm: bool = False) -> nn.Module:
    torch.manual_seed(4)
    layers: list[nn.Module] = [nn.Linear(3, 8)]
    if norm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 1)]
    return nn.Sequential(*layers)


def _hand(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    epochs: int,
    step: Callable[[int], None],
    val: tuple[Tensor, Tensor] | None = None,
) -> tuple[list[float], list[float]]:
    """The loop a user writes: full batch, train mode, then validation in eval mode."""
    losses, val_losses = [], []
    for epoch in range(epochs):
        model.train()
        loss = mse_loss(model(x), t)
        losses.append(loss.item())
        loss.backward()
        step(epoch)
        if val is not None:
            model.eval()
            with torch.no_grad():
                val_losses.append(mse_loss(model(val[0]), val[1]).item())
    return losses, val_losses


def _sgd_by_hand(model: nn.Module, lr: Callable[[int], float]) -> Callable[[int], None]:
    def step(epoch: int) -> None:
        with torch.no_grad():
            for p in model.parameters():
                assert p.grad is not None
                p.add_(p.grad, alpha=-lr(epoch))
                p.grad = None

    return step


@pytest.mark.parametrize(("dropout", "norm"), [(0.0, False), (0.5, False), (0.0, True)])
def test_validation_runs_in_eval_mode_and_equals_the_hand_loop(dropout: float, norm: bool) -> None:
    x, t = _data()
    vx, vy = _data(17, seed=1)
    ours = _mlp(dropout, norm)
    ours.eval()  # left in eval mode, say after an earlier validation
    torch.manual_seed(9)  # dropout draws from the global RNG, the same in both runs
    h = train_loop(ours, x, t, epochs=5, lr=0.05, val=(vx, vy))
    assert not ours.training  # the mode it was found in
    hand = _mlp(dropout, norm)
    torch.manual_seed(9)
    losses, val_losses = _hand(hand, x, t, 5, _sgd_by_hand(hand, lambda e: 0.05), (vx, vy))
    assert h.losses == losses  # trained in train mode: dropout on, batch statistics used
    assert h.val_losses == val_losses
    assert_same_bits(params_of(ours), params_of(hand))  # running stats included


def test_metrics_and_the_validation_mean_do_not_depend_on_the_batch_size() -> None:
    vx, vy = _data(23, seed=1)
    model = _mlp()

    def mae(out: Tensor, t: Tensor) -> Tensor:
        return (out - t).abs().mean()

    whole = evaluate(model, vx, vy, metrics={"mae": mae})
    batched = evaluate(model, vx, vy, metrics={"mae": mae}, batch_size=5)
    with torch.no_grad():
        out = model(vx).double()
        want = {"loss": ((out - vy) ** 2).mean().item(), "mae": (out - vy).abs().mean().item()}
    for got in (whole, batched):
        assert got == pytest.approx(want, rel=1e-6)
    x, t = _data()
    h = train_loop(_mlp(), x, t, epochs=2, lr=0.05, val=(vx, vy), metrics={"mae": mae})
    assert len(h.metrics["mae"]) == 2 and len(h.val_losses) == 2


def test_training_metrics_are_row_weighted_means_over_the_epochs_batches() -> None:
    x, t = _data()

    def mae(out: Tensor, target: Tensor) -> Tensor:
        return (out - target).abs().mean()

    ours = _mlp()
    h = train_loop(
        ours, x, t, epochs=3, lr=0.05, batch_size=16, metrics={"mae": mae},
        train_metrics=True, generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    hand = _mlp()
    step = _sgd_by_hand(hand, lambda e: 0.05)
    g, want = torch.Generator().manual_seed(2), []
    for epoch in range(3):
        total = 0.0
        for rows in torch.randperm(40, generator=g).split(16):  # 16, 16 and 8 rows
            out = hand(x[rows])
            total += mae(out, t[rows]).double().item() * len(rows)
            mse_loss(out, t[rows]).backward()
            step(epoch)
        want.append(total / 40)
    assert h.metrics["train_mae"] == pytest.approx(want, rel=1e-12)
    assert "mae" not in h.metrics  # no validation data, no validation metric


def test_the_mode_is_restored_when_training_fails() -> None:
    model = _mlp()
    model.eval()
    x, t = _data()

    def boom(epoch: int, history: TrainHistory) -> None:
        assert model.training  # trains in train mode, whatever it was given in
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train_loop(model, x, t, epochs=3, lr=0.05, callbacks=[boom])
    assert not model.training


def test_early_stopping_stops_after_patience_and_restores_the_best_weights() -> None:
    x, t = _data()
    # The first call is train_loop's check of the metric on a few rows, before training.
    scores = iter([99.0, 5.0, 3.0, 4.0, 2.5, 2.6, 2.7, 1.0])  # best at epoch 3, then 2 worse
    seen: dict[int, dict[str, Tensor]] = {}

    def score(out: Tensor, target: Tensor) -> Tensor:
        return torch.tensor(next(scores))

    model = _mlp()
    stopper = EarlyStopping("score", patience=2, min_delta=0.05)
    h = train_loop(
        model, x, t, epochs=7, lr=0.05, val=_data(9, seed=2), metrics={"score": score},
        early_stopping=stopper, callbacks=[lambda e, hist: seen.update({e: params_of(model)})],
    )  # fmt: skip
    # Hand: epochs 0..5 run; 2.6 and 2.7 do not beat 2.5 by 0.05: stop after epoch 5.
    assert len(h.losses) == 6
    assert (h.best_epoch, h.stopped_epoch) == (3, 5)
    assert_same_bits(params_of(model), seen[3])
    ref = _mlp()
    train_loop(ref, x, t, epochs=6, lr=0.05)
    assert not torch.equal(params_of(ref)["0.weight"], seen[3]["0.weight"])


def test_a_callback_stops_the_run_cleanly_with_history_stop() -> None:
    x, t = _data()

    def stop_at_two(epoch: int, history: TrainHistory) -> None:
        if epoch == 2:
            history.stop()

    h = train_loop(_mlp(), x, t, epochs=10, lr=0.05, callbacks=[stop_at_two])
    assert len(h.losses) == 3 and h.stopped_epoch == 2
    assert train_loop(_mlp(), x, t, epochs=3, lr=0.05).stopped_epoch is None


@pytest.mark.parametrize("interval", ["epoch", "batch"])
def test_a_torch_scheduler_steps_as_it_would_by_hand(interval: str) -> None:
    x, t = _data()
    ours = _mlp()
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    h = train_loop(
        ours, x, t, epochs=6, optimizer=opt, scheduler=sched, scheduler_interval=interval,
        batch_size=10, generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    hand = _mlp()
    hopt = torch.optim.SGD(hand.parameters(), lr=0.1)
    hsched = torch.optim.lr_scheduler.StepLR(hopt, step_size=2, gamma=0.5)
    g, lrs = torch.Generator().manual_seed(1), []
    for _ in range(6):
        lrs.append(hopt.param_groups[0]["lr"])
        for rows in torch.randperm(40, generator=g).split(10):
            mse_loss(hand(x[rows]), t[rows]).backward()
            hopt.step()
            hopt.zero_grad()
            if interval == "batch":
                hsched.step()
        if interval == "epoch":
            hsched.step()
    assert h.lrs == lrs
    assert_same_bits(params_of(ours), params_of(hand))


def test_reduce_on_plateau_is_fed_the_validation_loss() -> None:
    x, t = _data()
    vx, vy = _data(11, seed=3)
    ours = _mlp()
    opt = torch.optim.SGD(ours.parameters(), lr=0.5)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    h = train_loop(ours, x, t, epochs=8, optimizer=opt, scheduler=plateau, val=(vx, vy))
    hand = _mlp()
    hopt = torch.optim.SGD(hand.parameters(), lr=0.5)
    hplateau = torch.optim.lr_scheduler.ReduceLROnPlateau(hopt, patience=0, factor=0.5)

    def step(epoch: int) -> None:
        hopt.step()
        hopt.zero_grad()

    lrs = []
    for _ in range(8):
        lrs.append(hopt.param_groups[0]["lr"])
        _, val_losses = _hand(hand, x, t, 1, step, (vx, vy))
        hplateau.step(val_losses[0])
    assert h.lrs == lrs and len(set(lrs)) > 1
    assert_same_bits(params_of(ours), params_of(hand))


def test_a_callable_schedule_sets_each_epochs_rate() -> None:
    x, t = _data()

    def halving(epoch: int) -> float:
        return 0.1 * 0.5**epoch

    ours = _mlp()
    h = train_loop(ours, x, t, epochs=5, lr=0.1, scheduler=halving)
    hand = _mlp()
    losses, _ = _hand(hand, x, t, 5, _sgd_by_hand(hand, halving))
    assert h.lrs == [halving(e) for e in range(5)]
    assert h.losses == losses
    assert_same_bits(params_of(ours), params_of(hand))


def test_clipping_equals_torchs_clip_grad_norm_in_a_hand_loop() -> None:
    x, t = _data()
    t = t * 50  # large gradients, so the clip bites
    ours = _mlp()
    h = train_loop(ours, x, t, epochs=4, lr=0.05, clip_grad_norm=0.5)
    hand = _mlp()
    plain = _sgd_by_hand(hand, lambda e: 0.05)

    def clipped(epoch: int) -> None:
        norm = torch.nn.utils.clip_grad_norm_(hand.parameters(), 0.5)
        assert norm > 0.5
        plain(epoch)

    losses, _ = _hand(hand, x, t, 4, clipped)
    assert h.losses == losses
    assert_same_bits(params_of(ours), params_of(hand))


def _loader(seed: int) -> DataLoader[tuple[Tensor, ...]]:
    x, t = _data()
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, t), batch_size=7, shuffle=True, generator=g)


def test_a_dataloader_trains_as_the_hand_loop_over_it() -> None:
    ours = _mlp()
    h = train_loop(ours, _loader(5), epochs=3, lr=0.05, record=True)
    hand = _mlp()
    step = _sgd_by_hand(hand, lambda e: 0.05)
    losses = []
    loader = _loader(5)
    for epoch in range(3):
        total = 0.0
        for xb, yb in loader:
            loss = mse_loss(hand(xb), yb)
            total += loss.item() * xb.shape[0]
            loss.backward()
            step(epoch)
        losses.append(total / 40)
    assert h.losses == pytest.approx(losses, rel=1e-12)
    assert_same_bits(params_of(ours), params_of(hand))
    assert h.activations["2"].shape[:2] == (3, 40 % 7)  # each epoch's last (partial) batch


def test_resume_is_bit_identical_with_a_scheduler_and_a_dataloader(tmp_path: Path) -> None:
    def run(epochs: int, path: Path | None, resume: bool = False) -> tuple[nn.Module, Any]:
        model = _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        g = torch.Generator().manual_seed(11)
        x, t = _data()
        loader = DataLoader(TensorDataset(x, t), batch_size=6, shuffle=True, generator=g)
        h = train_loop(
            model, loader, epochs=epochs, optimizer=opt, scheduler=sched, generator=g,
            checkpoint=path, resume=resume, val=_data(9, seed=2),
            early_stopping=EarlyStopping(patience=50),
        )  # fmt: skip
        return model, h

    whole, h_whole = run(7, None)
    path = tmp_path / "run.pt"
    run(3, path)
    resumed, h_resumed = run(7, path, resume=True)
    assert h_resumed.losses == h_whole.losses
    assert h_resumed.lrs == h_whole.lrs and h_resumed.val_losses == h_whole.val_losses
    assert h_resumed.best_epoch == h_whole.best_epoch
    assert_same_bits(params_of(resumed), params_of(whole))


def test_the_progress_bar_shows_the_epoch_just_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[tuple[str, object]] = []

    class Bar:
        def update(self, n: int) -> None:
            shown.append(("update", n))

        def set_postfix(self, values: dict[str, str], refresh: bool) -> None:
            shown.append(("postfix", values))

        def close(self) -> None:
            pass

    monkeypatch.setattr(progress_module, "progress_bar", lambda epochs: Bar())
    x, t = _data()
    h = train_loop(_mlp(), x, t, epochs=2, lr=0.05, progress=True, val=_data(5, seed=2))
    assert shown == [
        ("update", 0),
        ("postfix", {"loss": f"{h.losses[0]:.4g}", "val_loss": f"{h.val_losses[0]:.4g}"}),
        ("update", 1),
        ("postfix", {"loss": f"{h.losses[1]:.4g}", "val_loss": f"{h.val_losses[1]:.4g}"}),
        ("update", 1),
    ]


def test_a_loss_that_sums_is_refused_and_says_why() -> None:
    x, t = _data()
    model = _mlp()
    before = params_of(model)
    with pytest.raises(ValueError, match=r"MSELoss with reduction='sum'.*epoch loss"):
        train_loop(model, x, t, epochs=1, lr=0.05, loss_fn=nn.MSELoss(reduction="sum"))
    assert_same_bits(params_of(model), before)
    train_loop(model, x, t, epochs=1, lr=0.05, loss_fn=nn.MSELoss())


def test_messages_count_epochs_from_one() -> None:
    x, t = _data()

    def interrupt(epoch: int, history: TrainHistory) -> None:
        if epoch == 3:
            raise TrainingInterrupted(epoch, history, 10)

    with pytest.raises(TrainingInterrupted, match="in epoch 4 of 10"):
        train_loop(_mlp(), x, t, epochs=10, lr=0.05, callbacks=[interrupt])


def _one_shot() -> Iterator[tuple[Tensor, Tensor]]:
    yield _data()


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"val": _data()[0]}, TypeError, r"val must be a pair"),
        ({"val": (torch.randn(5, 4), torch.randn(5, 1))}, ValueError, r"val inputs .* \(3,\)"),
        ({"val": (torch.randn(5, 3), torch.randn(4, 1))}, ValueError, r"val: inputs and targets"),
        ({"val": _data(5), "metrics": {"m": 3}}, TypeError, r"metrics\['m'\] must be callable"),
        ({"metrics": {"m": mse_loss}}, ValueError, r"metrics are computed on the validation"),
        ({"val": _data(5), "metrics": {"m": lambda o, t: o}}, TypeError, r"0-d tensor"),
        ({"early_stopping": EarlyStopping("val_loss")}, ValueError, r"monitors 'val_loss'"),
        ({"early_stopping": EarlyStopping("acc"), "val": _data(5)}, ValueError, r"'acc'"),
        ({"scheduler": "cosine"}, TypeError, r"scheduler must be a torch"),
        ({"scheduler": lambda e: 0.1, "scheduler_interval": "step"}, ValueError, r"'epoch' or"),
        ({"clip_grad_norm": 0.0}, ValueError, r"clip_grad_norm must be a finite number > 0"),
    ],
)
def test_bad_options_are_refused_by_name_before_anything_changes(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    x, t = _data()
    model = _mlp()
    before = params_of(model)
    with pytest.raises(error, match=pattern):
        train_loop(model, x, t, epochs=2, lr=0.05, **kwargs)
    assert_same_bits(params_of(model), before)


def test_bad_schedulers_loaders_and_patience_are_refused() -> None:
    x, t = _data()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = torch.optim.lr_scheduler.StepLR(opt, 2)
    with pytest.raises(ValueError, match=r"scheduler must be a torch scheduler of the optimizer"):
        train_loop(model, x, t, epochs=1, lr=0.1, scheduler=step)
    with pytest.raises(ValueError, match=r"callable epoch -> lr needs lr="):
        train_loop(model, x, t, epochs=1, optimizer=opt, scheduler=lambda e: 0.1)
    with pytest.raises(ValueError, match="patience must be >= 1, got 0"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'up'"):
        EarlyStopping(mode="up")
    with pytest.raises(
        ValueError, match=r"targets must be omitted with a DataLoader .*got a tensor"
    ):
        train_loop(model, _loader(0), t, epochs=1, lr=0.1)
    with pytest.raises(ValueError, match=r"batch_size must be None with a DataLoader .*got 4"):
        train_loop(model, _loader(0), epochs=1, lr=0.1, batch_size=4)
    with pytest.raises(TypeError, match="one-shot iterator"):
        train_loop(model, _one_shot(), epochs=1, lr=0.1)


def test_the_practice_options_give_the_cpus_numbers_on_every_device(device: torch.device) -> None:
    # Validation, metrics, early stopping, a schedule and clipping together; on CUDA the
    # losses stay on the device (masked updates), the validation is read once per epoch.
    def run(dev: torch.device) -> tuple[TrainHistory, dict[str, Tensor]]:
        x, t = (v.to(dev) for v in _data())
        vx, vy = (v.to(dev) for v in _data(13, seed=1))
        model = _mlp().to(dev)

        def halving(epoch: int) -> float:
            return 0.1 * 0.7**epoch

        h = train_loop(
            model, x, t, epochs=12, lr=0.1, scheduler=halving, batch_size=8,
            generator=torch.Generator().manual_seed(3), val=(vx, vy),
            metrics={"mae": lambda o, y: (o - y).abs().mean()}, clip_grad_norm=1.0,
            early_stopping=EarlyStopping(patience=2, min_delta=1e-3),
        )  # fmt: skip
        return h, {k: v.cpu() for k, v in params_of(model).items()}

    got, got_params = run(device)
    want, want_params = run(torch.device("cpu"))
    assert got.losses == pytest.approx(want.losses, rel=1e-5)
    assert got.val_losses == pytest.approx(want.val_losses, rel=1e-5)
    assert got.metrics["mae"] == pytest.approx(want.metrics["mae"], rel=1e-5)
    assert (got.best_epoch, got.stopped_epoch) == (want.best_epoch, want.stopped_epoch)
    for k, v in want_params.items():
        torch.testing.assert_close(got_params[k], v, rtol=1e-5, atol=1e-6)
