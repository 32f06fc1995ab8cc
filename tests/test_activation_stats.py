"""Issue 14: chosen layers, a fixed probe, per-unit statistics, dead units, their charts.

Oracles: statistics written out by hand in float64 from a forward hook of our own, run
on the same probe by a callback after each epoch; a layer forced dead; a run whose rows
fit against the same run whose rows do not.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from gradbasics import (
    ActivationRecorder,
    ChainModel,
    DeadUnitsWarning,
    DivergenceError,
    EpochFn,
    TrainHistory,
    UnitStats,
    dead_units,
    plot_activations,
    train_loop,
    unit_stats,
)
from gradbasics import _activationlog as log_module
from gradbasics.engines import graph as graph_engine
from helpers import assert_same_bits, params_of


def _mlp(device: torch.device | str = "cpu", dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.Dropout(dropout), nn.ReLU(), nn.Linear(16, 1)).to(
        device
    )


def _first(model: nn.Sequential) -> nn.Linear:
    layer = model[0]
    assert isinstance(layer, nn.Linear)
    return layer


def _data(rows: int = 96) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(rows, 3, generator=g)  # (rows, 3)
    return x, (x**2).sum(1, keepdim=True)  # (rows, 1)


def _by_hand(a: Tensor) -> tuple[list[float], list[float], list[float]]:
    """Mean, population std and share of exact zeros of each unit (last dim), in float64."""
    rows = a.detach().cpu().double().reshape(-1, a.shape[-1] if a.dim() > 1 else 1).tolist()
    r, units = len(rows), len(rows[0])
    mean = [sum(row[u] for row in rows) / r for u in range(units)]
    std = [math.sqrt(sum((row[u] - mean[u]) ** 2 for row in rows) / r) for u in range(units)]
    dead = [sum(row[u] == 0.0 for row in rows) / r for u in range(units)]
    return mean, std, dead


class _ProbeOracle:
    """A callback that runs the probe through its own forward hooks after each epoch."""

    def __init__(self, model: nn.Module, names: list[str], probe: Tensor) -> None:
        self.model, self.names, self.probe = model, names, probe
        self.seen: dict[str, list[Tensor]] = {n: [] for n in names}

    def __call__(self, epoch: int, history: TrainHistory) -> None:
        modules = dict(self.model.named_modules())
        out: dict[str, Tensor] = {}
        handles = [
            modules[n].register_forward_hook(
                lambda m, i, o, n=n: out.__setitem__(n, o.detach().clone())
            )
            for n in self.names
        ]
        self.model.eval()
        with torch.no_grad():
            self.model(self.probe)
        self.model.train()
        for h in handles:
            h.remove()
        for n in self.names:
            self.seen[n].append(out[n])


def test_probe_statistics_equal_a_hand_computation_from_a_forward_hook(
    device: torch.device,
) -> None:
    x, t = _data()
    probe = x[:40] + 0.5  # a fixed batch that is not a training batch
    model = _mlp(device, dropout=0.5)  # eval mode matters: dropout would change the probe rows
    oracle = _ProbeOracle(model, ["0", "2"], probe.to(device))
    g = torch.Generator().manual_seed(3)
    history = train_loop(model, x, t, epochs=4, lr=0.02, batch_size=32, generator=g,
                         record=["0", "2"], probe=probe, callbacks=[oracle])  # fmt: skip
    assert model.training  # mode restored
    assert list(history.activation_stats) == ["0", "2"]
    for name in ("0", "2"):
        stats = history.activation_stats[name]
        assert stats.mean.dtype == torch.float64 and stats.mean.shape == (4, 16)
        for e, seen in enumerate(oracle.seen[name]):
            assert torch.equal(history.activations[name][e], seen.cpu())
            mean, std, dead = _by_hand(seen)
            assert stats.mean[e].tolist() == pytest.approx(mean, rel=1e-12, abs=1e-12)
            assert stats.std[e].tolist() == pytest.approx(std, rel=1e-9, abs=1e-12)
            assert stats.dead[e].tolist() == dead
    # the ReLU zeroes some rows of some units, so the dead fractions are not all 0 or 1
    assert 0 < float(history.activation_stats["2"].dead.mean()) < 1
    assert history.activation_labels == {"0": "0: Linear(3→16)", "2": "2: ReLU"}


def test_without_a_probe_the_statistics_are_those_of_each_epochs_last_batch() -> None:
    x, t = _data(100)  # batches of 32: the last batch has 4 rows
    history = train_loop(_mlp(), x, t, epochs=3, lr=0.02, batch_size=32,
                         generator=torch.Generator().manual_seed(0), record=True)  # fmt: skip
    assert list(history.activations) == ["0", "1", "2", "3"]
    for name, rows in history.activations.items():
        assert rows.shape[:2] == (3, 4)
        for e in range(3):
            mean, std, dead = _by_hand(rows[e])
            stats = history.activation_stats[name]
            assert stats.mean[e].tolist() == pytest.approx(mean, rel=1e-12, abs=1e-12)
            assert stats.std[e].tolist() == pytest.approx(std, rel=1e-9, abs=1e-12)
            assert stats.dead[e].tolist() == dead


def test_a_probe_costs_one_forward_pass_per_epoch_and_runs_without_grad_in_eval_mode() -> None:
    calls: list[tuple[int, bool, bool]] = []

    class Counting(nn.Module):
        def forward(self, a: Tensor) -> Tensor:
            calls.append((a.shape[0], torch.is_grad_enabled(), self.training))
            return a

    x, t = _data(64)
    model = nn.Sequential(nn.Linear(3, 4), Counting(), nn.Linear(4, 1))
    train_loop(model, x, t, epochs=5, lr=0.01, batch_size=32, record=["0"], probe=x[:7])
    probe_calls = [c for c in calls if c[0] == 7]
    assert len(probe_calls) == 5 + 1  # one per epoch, and one to measure before training
    assert all(not grad and not training for _, grad, training in probe_calls)
    assert len([c for c in calls if c[0] == 32]) == 5 * 2  # the training steps, unchanged


def test_a_layer_forced_dead_has_dead_fraction_one_and_warns_once() -> None:
    x, t = _data(64)
    model = _mlp()
    with torch.no_grad():
        _first(model).weight.zero_()
        _first(model).bias.fill_(-1.0)  # every pre-activation is -1: the ReLU outputs 0
    with pytest.warns(DeadUnitsWarning) as caught:
        history = train_loop(model, x, t, epochs=6, lr=0.01, batch_size=32, record=["0", "2"],
                             probe=x[:10])  # fmt: skip
    dead_warnings = [w for w in caught if issubclass(w.category, DeadUnitsWarning)]
    assert len(dead_warnings) == 1
    text = str(dead_warnings[0].message)
    assert "16 of the 16 unit(s) of layer '2: ReLU'" in text and "epochs 4 to 6" in text
    assert dead_warnings[0].filename == __file__  # it points at the call of train_loop
    assert torch.equal(history.activation_stats["2"].dead, torch.ones(6, 16, dtype=torch.float64))
    assert torch.equal(history.activation_stats["0"].dead, torch.zeros(6, 16, dtype=torch.float64))
    assert history.dead_units == {"0": [], "2": list(range(16))}


def test_the_notes_chain_at_lr_1e_3_loses_its_relu_and_says_so() -> None:
    model = ChainModel()
    with pytest.warns(DeadUnitsWarning, match=r"layer 'hidden2' .* dead at the end of training"):
        history = train_loop(model, torch.tensor([2.0]), torch.tensor([1.0]), epochs=100,
                             lr=1e-3, record=["hidden2"])  # fmt: skip
    assert history.losses[-1] == 1.0
    assert history.dead_units == {"hidden2": [0]}


def test_dead_units_needs_the_last_epochs_in_a_row() -> None:
    d = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.5, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    assert dead_units(d, epochs=3) == [0, 2]
    assert dead_units(d, epochs=4) == [0]
    assert dead_units(d[:2], epochs=3) == []
    assert dead_units(torch.tensor([[float("nan")], [1.0]]), epochs=2) == []


def test_unit_stats_follows_its_formulas_for_every_shape() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(2, 5, 4, generator=g))  # rows: 2 * 5, units: 4
    for act in (a, a[0, :, 0], a[:1, :1]):  # 3-d, 1-d (one unit), a single row
        s = unit_stats(act)
        mean, std, dead = _by_hand(act)
        assert s.mean.tolist() == pytest.approx(mean, rel=1e-12, abs=1e-15)
        assert s.std.tolist() == pytest.approx(std, rel=1e-9, abs=1e-15)
        assert s.dead.tolist() == dead
    assert unit_stats(a[:1, :1]).std.tolist() == [0.0] * 4


def test_rows_over_the_limit_are_dropped_with_one_warning_and_statistics_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, t = _data()

    def run() -> TrainHistory:
        return train_loop(_mlp(), x, t, epochs=3, lr=0.02, batch_size=32, record=True,
                          probe=x[:20], generator=torch.Generator().manual_seed(0))  # fmt: skip

    kept = run()
    # 20 probe rows * (16 + 16 + 16 + 1) float32 units * 3 epochs = 11760 bytes
    monkeypatch.setattr(log_module, "ROWS_LIMIT_BYTES", 11_759)
    with pytest.warns(UserWarning, match=r"more than the 0 MiB kept") as caught:
        dropped = run()
    assert len(caught) == 1 and caught[0].filename == __file__  # points at train_loop's call
    assert dropped.activations == {} and kept.activations != {}
    for name, stats in kept.activation_stats.items():
        for a, b in zip(stats, dropped.activation_stats[name], strict=True):
            assert torch.equal(a, b)
    monkeypatch.setattr(log_module, "ROWS_LIMIT_BYTES", 11_760)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run().activations != {}


def test_a_loader_with_or_without_a_probe() -> None:
    x, t = _data(64)
    loader = DataLoader(TensorDataset(x, t), batch_size=16)
    with_probe = train_loop(_mlp(), loader, epochs=2, lr=0.02, record=["2"], probe=x[:5])
    assert with_probe.activations["2"].shape == (2, 5, 16)
    plain = train_loop(_mlp(), loader, epochs=2, lr=0.02, record=["2"])
    assert plain.activations["2"].shape == (2, 16, 16)
    assert plain.activation_stats["2"].mean.shape == (2, 16)
    # checked against the loader's first batch, before the model is tried
    with pytest.raises(ValueError, match="probe must have the inputs' row shape"):
        train_loop(_mlp(), loader, epochs=2, lr=0.02, record=True, probe=torch.ones(5, 4))


def test_resume_keeps_the_statistics_and_does_not_warn_twice(tmp_path: Path) -> None:
    x, t = _data(64)

    def run(epochs: int, ckpt: Path) -> TrainHistory:
        model = _mlp()
        with torch.no_grad():
            _first(model).bias[:4] = -50.0  # four units dead from the start
        return train_loop(model, x, t, epochs=epochs, lr=0.01, batch_size=32, record=["2"],
                          probe=x[:8], checkpoint=ckpt, resume=True,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip

    with pytest.warns(DeadUnitsWarning):
        whole = run(6, tmp_path / "whole.pt")
    with pytest.warns(DeadUnitsWarning):
        run(4, tmp_path / "part.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeadUnitsWarning)
        resumed = run(6, tmp_path / "part.pt")
    for a, b in zip(whole.activation_stats["2"], resumed.activation_stats["2"], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(whole.activations["2"], resumed.activations["2"])
    assert resumed.dead_units == whole.dead_units == {"2": [0, 1, 2, 3]}


def test_graph_stand_in_records_the_probe_like_the_device_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(graph_engine, "REQUIRE_CUDA", False)
    x, t = _data(64)
    runs = [
        train_loop(_mlp(), x, t, epochs=3, lr=0.02, batch_size=16, record=["2"], probe=x[:9],
                   generator=torch.Generator().manual_seed(0), graph=g)
        for g in (False, True)
    ]  # fmt: skip
    assert torch.equal(runs[0].activations["2"], runs[1].activations["2"])


def test_the_recorder_keeps_statistics_instead_of_tensors() -> None:
    model = _mlp()
    x, _ = _data(10)
    with ActivationRecorder(model, ["2", "3"]) as whole:
        model(x)
    with ActivationRecorder(model, ["2", "3"], statistics=True) as rec:
        model(x)
    assert rec.activations == {}
    for name in ("2", "3"):
        for a, b in zip(rec.stats[name], unit_stats(whole.activations[name]), strict=True):
            assert torch.equal(a, b)
    assert rec.labels == {"2": "2: ReLU", "3": "3: Linear(16→1)"}
    stacked = UnitStats.stack([rec.stats["2"], rec.stats["2"]])
    assert stacked.mean.shape == (2, 16)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"record": ["0", "9"]}, ValueError, r"unknown name\(s\) \['9'\]; known: \['0', '1'"),
        ({"record": []}, ValueError, r"record must name at least one submodule, got \[\]"),
        ({"record": "0"}, TypeError, r"record must be True, False or a list .* got .0. \(str\)"),
        ({"record": [0]}, TypeError, r"record must be a sequence of strings, got \[0\]"),
        ({"probe": torch.ones(4, 3)}, ValueError, r"probe needs record=True"),
        ({"record": True, "probe": torch.ones(4, 2)}, ValueError, r"row shape \(3,\), got"),
        ({"record": True, "probe": torch.ones(0, 3)}, ValueError, r"at least one row"),
        ({"record": True, "probe": torch.ones(4, 3).double()}, TypeError, r"model's dtype"),
        ({"record": True, "probe": [[1.0, 2.0, 3.0]]}, TypeError, r"probe must be a torch"),
        ({"record": True, "probe": torch.empty(4, 3, device="meta")}, ValueError, r"on meta"),
        ({"record": True, "probe": torch.full((2, 3), math.nan)}, ValueError, r"finite"),
    ],
)
def test_bad_record_and_probe_are_refused_before_anything_changes(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    x, t = _data(32)
    model = _mlp()
    before = params_of(model)
    with pytest.raises(error, match=match):
        train_loop(model, x, t, epochs=2, lr=0.01, **kwargs)  # type: ignore[arg-type]
    assert_same_bits(params_of(model), before)


def test_plot_kinds_draw_the_statistics() -> None:
    x, t = _data(64)
    history = train_loop(_mlp(), x, t, epochs=5, lr=0.02, batch_size=32, record=["0", "2"],
                         probe=x[:12])  # fmt: skip
    mean_fig = plot_activations(history)
    (ax,) = mean_fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0: Linear(3→16)", "2: ReLU"]
    units = plot_activations(history, kind="units")
    image = units.axes[0].images[0]
    want = history.activation_stats["0"].mean.T.numpy()
    assert np.array_equal(np.asarray(image.get_array()), want)
    stats = plot_activations(history, kind="stats", names=["2"])
    line = stats.axes[0].lines[0]
    rows = history.activations["2"].double().flatten(1)  # (epochs, rows * units)
    assert np.asarray(line.get_ydata()).tolist() == pytest.approx(rows.mean(1).tolist())
    band = np.asarray(stats.axes[0].collections[0].get_paths()[0].vertices)[:, 1]
    top = (rows.mean(1) + rows.std(1, correction=0)).tolist()
    assert sorted(band.tolist())[-1] == pytest.approx(max(top))
    zeros = stats.axes[1].lines[0]  # the twin axis: the share of exact zeros
    assert np.asarray(zeros.get_ydata()).tolist() == pytest.approx(
        (rows == 0).double().mean(1).tolist()
    )
    with pytest.raises(ValueError, match=r"kind must be 'mean', 'units' or 'stats', got 'x'"):
        plot_activations(history, kind="x")


@pytest.mark.filterwarnings("ignore::gradbasics.DeadUnitsWarning")  # one unit dies here
def test_callbacks_and_errors_see_the_statistics_of_every_completed_epoch() -> None:
    x, t = _data(64)
    seen: list[tuple[int, int, int]] = []

    def look(epoch: int, history: TrainHistory) -> None:
        stats = history.activation_stats["2"]
        seen.append((epoch, stats.mean.shape[0], history.activations["2"].shape[0]))

    def run(callbacks: list[EpochFn]) -> TrainHistory:
        return train_loop(_mlp(), x, t, epochs=4, lr=0.02, batch_size=32, record=["2"],
                          probe=x[:6], callbacks=callbacks,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip

    watched, alone = run([look]), run([])
    assert seen == [(e, e + 1, e + 1) for e in range(4)]
    for a, b in zip(watched.activation_stats["2"], alone.activation_stats["2"], strict=True):
        assert torch.equal(a, b)  # kept lazily or not: the same numbers
    with pytest.raises(DivergenceError) as err:
        train_loop(ChainModel(), torch.tensor([2.0]), torch.tensor([1.0]), epochs=10, lr=0.01,
                   record=True)  # fmt: skip
    kept = err.value.history
    assert kept.activation_stats["output"].mean.shape == (2, 1)  # the two finite epochs
    assert kept.activations["output"].shape == (2, 1)
