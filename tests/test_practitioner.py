"""What practitioners reach for first: the best checkpoint, a CSV log, predict."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from gradbasics import TrainHistory, load_checkpoint, predict, train_loop
from gradbasics.callbacks import BestCheckpoint, CSVLogger
from helpers import assert_same_bits, params_of


def _data() -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    vx = torch.randn(12, 3, generator=g)
    return x, x.sum(1, keepdim=True), vx, vx.sum(1, keepdim=True)


def _model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Dropout(dropout), nn.Linear(6, 1))


@pytest.mark.parametrize(("mode", "pick"), [("min", min), ("max", max)])
def test_the_best_checkpoint_holds_the_weights_captured_by_hand(
    tmp_path: Path, mode: str, pick: Any
) -> None:
    x, t, vx, vt = _data()
    model = _model()
    captured: dict[int, dict[str, Tensor]] = {}

    def capture(epoch: int, history: TrainHistory) -> None:
        captured[epoch] = params_of(model)

    path = tmp_path / "best.pt"
    h = train_loop(model, x, t, epochs=12, lr=0.3, batch_size=8, val=(vx, vt),
                   generator=torch.Generator().manual_seed(1),
                   callbacks=[BestCheckpoint(path, mode=mode), capture])  # fmt: skip
    best_epoch = h.val_losses.index(pick(h.val_losses))
    assert 0 < best_epoch < len(h.val_losses) - 1 or mode == "max"  # not a trivial end
    loaded = _model()
    saved = load_checkpoint(path, loaded)
    assert saved.extra == {
        "epoch": best_epoch,
        "monitor": "val_loss",
        "value": h.val_losses[best_epoch],
    }
    assert saved.epoch == best_epoch + 1
    assert_same_bits(params_of(loaded), captured[best_epoch])


def test_the_best_checkpoint_refuses_bad_arguments_and_unknown_monitors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"mode must be 'min' or 'max', got 'low'"):
        BestCheckpoint(tmp_path / "b.pt", mode="low")
    with pytest.raises(TypeError, match=r"monitor must be a str, got 3 \(int\)"):
        BestCheckpoint(tmp_path / "b.pt", monitor=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"path's folder must exist"):
        BestCheckpoint(tmp_path / "no" / "b.pt")
    x, t, *_ = _data()
    m = _model()
    before = params_of(m)
    best = BestCheckpoint(tmp_path / "b.pt", monitor="acc")
    with pytest.raises(ValueError, match=r"BestCheckpoint monitors 'acc'.*known: \['loss'\]"):
        train_loop(m, x, t, epochs=2, lr=0.1, callbacks=[best])
    assert_same_bits(params_of(m), before)
    assert not (tmp_path / "b.pt").exists()


def test_a_best_checkpoint_reused_in_a_new_run_starts_afresh(tmp_path: Path) -> None:
    x, t, vx, vt = _data()
    best = BestCheckpoint(tmp_path / "best.pt")
    for _ in range(2):  # the same run twice: the second must write its own best
        (tmp_path / "best.pt").unlink(missing_ok=True)
        h = train_loop(_model(), x, t, epochs=4, lr=0.1, val=(vx, vt), callbacks=[best])
        assert load_checkpoint(tmp_path / "best.pt", _model()).extra["value"] == min(h.val_losses)


def test_a_nan_never_improves() -> None:
    stopper = BestCheckpoint(Path("/tmp/x.pt"))
    assert stopper.improved(1.0)
    stopper.best = 1.0
    assert not stopper.improved(math.nan) and not stopper.improved(1.0)
    assert stopper.improved(0.5)


def test_the_csv_log_reads_back_equal_to_the_history(tmp_path: Path) -> None:
    x, t, vx, vt = _data()
    path = tmp_path / "log.csv"
    mae = lambda out, target: (out - target).abs().mean()  # noqa: E731
    h = train_loop(_model(), x, t, epochs=5, lr=0.1, batch_size=8, val=(vx, vt),
                   metrics={"mae": mae}, train_metrics=True,
                   callbacks=[CSVLogger(path)])  # fmt: skip
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "loss", "val_loss", "train_mae", "mae", "lr"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    assert [float(r["loss"]) for r in rows] == h.losses
    assert [float(r["val_loss"]) for r in rows] == h.val_losses
    assert [float(r["mae"]) for r in rows] == h.metrics["mae"]
    assert [float(r["train_mae"]) for r in rows] == h.metrics["train_mae"]
    assert [float(r["lr"]) for r in rows] == h.lrs


def test_a_new_run_starts_a_new_csv_and_a_resume_never_duplicates_a_row(tmp_path: Path) -> None:
    x, t, *_ = _data()
    log, ckpt = tmp_path / "log.csv", tmp_path / "c.pt"

    def run(epochs: int, resume: bool, every: int = 1) -> TrainHistory:
        return train_loop(_model(), x, t, epochs=epochs, lr=0.1, batch_size=8, checkpoint=ckpt,
                          checkpoint_every=every, resume=resume,
                          generator=torch.Generator().manual_seed(1),
                          callbacks=[CSVLogger(log)])  # fmt: skip

    whole = run(6, False)
    ckpt.unlink()

    def die_at_4(epoch: int, history: TrainHistory) -> None:
        if epoch == 4:
            raise KeyboardInterrupt  # after the log's row, before another checkpoint

    with pytest.raises(KeyboardInterrupt):
        train_loop(_model(), x, t, epochs=6, lr=0.1, batch_size=8, checkpoint=ckpt,
                   checkpoint_every=3, generator=torch.Generator().manual_seed(1),
                   callbacks=[CSVLogger(log), die_at_4])  # fmt: skip
    with open(log, newline="") as f:
        assert len(list(csv.reader(f))) == 1 + 5  # the checkpoint holds 3 epochs
    run(6, True)
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(6))
    assert [float(r["loss"]) for r in rows] == whole.losses


def test_predict_equals_the_model_in_eval_mode(device: torch.device) -> None:
    x, *_ = _data()
    model = _model(dropout=0.5).to(device)
    model.train()
    with torch.no_grad():
        whole = model.eval()(x.to(device))
        by_hand = torch.cat([model(b) for b in x.to(device).split(7)])
    model.train()
    assert torch.equal(predict(model, x.to(device)), whole)
    out = predict(model, x, batch_size=7)  # CPU rows, moved batch by batch
    assert torch.equal(out, by_hand) and out.device == whole.device and not out.requires_grad
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=7)
    assert torch.equal(predict(model, loader), by_hand)
    assert model.training  # the mode is restored


def test_predict_refuses_bad_input_and_restores_the_mode() -> None:
    model = _model().eval()
    with pytest.raises(TypeError, match=r"inputs must have the model's dtype torch.float32"):
        predict(model, torch.ones(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        predict(model, torch.ones(3, 3), batch_size=0)
    with pytest.raises(ValueError, match=r"at least one batch"):
        predict(model, [])
    with pytest.raises(TypeError, match=r"batch 0 must be a tensor of rows"):
        predict(model, [("a", "b")])
    assert not model.training


def test_evaluate_over_a_loader_equals_evaluate_over_tensors(device: torch.device) -> None:
    from gradbasics import evaluate

    x, t, *_ = _data()
    model = _model(dropout=0.5).to(device)
    mae = lambda out, target: (out - target).abs().mean()  # noqa: E731
    loader = DataLoader(TensorDataset(x, t), batch_size=7)  # CPU batches, moved as they come
    by_loader = evaluate(model, loader, metrics={"mae": mae})
    by_tensors = evaluate(model, x.to(device), t.to(device), metrics={"mae": mae}, batch_size=7)
    assert by_loader == by_tensors
    assert model.training
    with pytest.raises(ValueError, match="batch_size must be None with a DataLoader"):
        evaluate(model, loader, batch_size=7)
    with pytest.raises(ValueError, match="at least one batch"):
        evaluate(model, [])


def test_val_as_a_loader_equals_val_as_tensors(tmp_path: Path) -> None:
    x, t, vx, vt = _data()
    mae = lambda out, target: (out - target).abs().mean()  # noqa: E731
    runs = []
    for val in ((vx, vt), DataLoader(TensorDataset(vx, vt), batch_size=5)):
        m = _model()
        h = train_loop(m, x, t, epochs=4, lr=0.1, batch_size=5 if isinstance(val, tuple) else 8,
                       val=val, metrics={"mae": mae}, early_stopping=None)  # fmt: skip
        runs.append(h)
    # the same model trajectory needs the same training batches: compare validation only
    m = _model()
    h = train_loop(m, x, t, epochs=1, lr=0.1, val=DataLoader(TensorDataset(vx, vt), batch_size=5))
    from gradbasics import evaluate

    assert h.val_losses[0] == evaluate(m, vx, vt, batch_size=5)["loss"]
    assert len(runs[1].val_losses) == 4 and runs[1].metrics["mae"]


def test_a_val_loader_resumes_and_a_changed_one_is_refused(tmp_path: Path) -> None:
    from gradbasics import CheckpointError

    x, t, vx, vt = _data()
    path = tmp_path / "c.pt"

    def run(epochs: int, val: Any, resume: bool) -> TrainHistory:
        return train_loop(_model(), x, t, epochs=epochs, lr=0.1, val=val, checkpoint=path,
                          resume=resume)  # fmt: skip

    loader = DataLoader(TensorDataset(vx, vt), batch_size=5)
    whole = run(4, loader, False)
    path.unlink()
    run(2, loader, False)
    assert run(4, loader, True).val_losses == whole.val_losses
    path.unlink()
    run(2, loader, False)
    with pytest.raises(CheckpointError, match="'Validation' had another 'data'"):
        run(4, DataLoader(TensorDataset(vx + 1, vt), batch_size=5), True)
    with pytest.raises(CheckpointError, match="'Validation' had another 'batch_size'"):
        run(4, DataLoader(TensorDataset(vx, vt), batch_size=4), True)


def test_a_bad_val_loader_is_refused_before_anything_changes() -> None:
    x, t, *_ = _data()
    m = _model()
    before = params_of(m)
    with pytest.raises(ValueError, match="val must hold at least one batch"):
        train_loop(m, x, t, epochs=1, lr=0.1, val=[])
    with pytest.raises(TypeError, match="each batch of the loader must be a pair"):
        train_loop(m, x, t, epochs=1, lr=0.1, val=[(x,)])
    with pytest.raises(TypeError, match="val must be re-iterable"):
        train_loop(m, x, t, epochs=1, lr=0.1, val=iter([(x, t)]))
    assert_same_bits(params_of(m), before)


def test_plot_metrics_draws_each_quantity_training_against_validation() -> None:
    from gradbasics import EarlyStopping, plot_metrics

    x, t, vx, vt = _data()
    mae = lambda out, target: (out - target).abs().mean()  # noqa: E731
    h = train_loop(_model(), x, t, epochs=12, lr=0.3, batch_size=8, val=(vx, vt),
                   metrics={"mae": mae}, train_metrics=True,
                   early_stopping=EarlyStopping(patience=3))  # fmt: skip
    assert h.best_epoch is not None
    fig = plot_metrics(h)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "mae"]
    epochs = list(range(1, len(h.losses) + 1))
    want = [
        (h.losses, h.val_losses),
        (h.metrics["train_mae"], h.metrics["mae"]),
    ]
    for ax, (train, val) in zip(fig.axes, want, strict=True):
        lines = {line.get_label(): line for line in ax.lines}
        assert list(lines) == ["training", "validation", "best epoch"]
        data = {k: (np.asarray(v.get_xdata()), np.asarray(v.get_ydata())) for k, v in lines.items()}
        assert data["training"][0].tolist() == epochs
        assert data["training"][1].tolist() == train
        assert data["validation"][1].tolist() == val
        assert data["best epoch"][0].tolist() == [h.best_epoch + 1] * 2
    only = plot_metrics(h, names=["mae"])
    assert [ax.get_ylabel() for ax in only.axes] == ["mae"]
    with pytest.raises(ValueError, match=r"names must be quantities the history holds"):
        plot_metrics(h, names=["acc"])
    with pytest.raises(ValueError, match="at least one epoch"):
        plot_metrics(TrainHistory())


def test_an_unwritable_log_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"path's folder must exist"):
        CSVLogger(tmp_path / "no" / "log.csv")
    with pytest.raises(ValueError, match=r"path must be a file path, got the directory"):
        CSVLogger(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike, got 3 \(int\)"):
        CSVLogger(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["predict", "evaluate", "train_loop"])
def test_every_submodules_mode_is_restored(how: str) -> None:
    from gradbasics import evaluate

    x, t, *_ = _data()
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    m.train()
    m[1].eval()  # a frozen batch norm, as in fine-tuning
    if how == "predict":
        predict(m, x)
    elif how == "evaluate":
        evaluate(m, x, t)
    else:
        train_loop(m, x, t, epochs=1, lr=0.01, batch_size=8)
    assert [mod.training for mod in m.modules()] == [True, True, False, True]


def test_a_callback_with_settings_cannot_join_a_resumed_run(tmp_path: Path) -> None:
    from gradbasics import CheckpointError

    x, t, *_ = _data()
    path = tmp_path / "c.pt"
    train_loop(_model(), x, t, epochs=2, lr=0.1, checkpoint=path)
    for kw in ({"precision": "bf16"}, {"scheduler": lambda e: 0.1}):
        with pytest.raises(CheckpointError, match="cannot join a run in its middle"):
            train_loop(_model(), x, t, epochs=4, lr=0.1, checkpoint=path, resume=True, **kw)


@pytest.mark.parametrize("name", ["loss", "val_loss", "lr", "epoch", "train_acc"])
def test_metric_names_the_history_uses_are_refused(name: str) -> None:
    x, t, vx, vt = _data()
    m = _model()
    before = params_of(m)
    with pytest.raises(ValueError, match=rf"metrics' names must not be .* got '{name}'"):
        train_loop(m, x, t, epochs=1, lr=0.1, val=(vx, vt), metrics={name: lambda o, y: o.mean()})
    assert_same_bits(params_of(m), before)


def test_an_infinite_value_is_never_the_best(tmp_path: Path) -> None:
    best = BestCheckpoint(tmp_path / "b.pt", mode="max")
    assert not best.improved(math.inf) and not best.improved(-math.inf)
    assert best.improved(1.0)


def test_predict_refuses_empty_inputs() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        predict(_model(), torch.empty(0, 3), batch_size=0)
