"""The resume contract, for every feature and a user-written callback with state.

1. Trained k epochs, killed with SIGKILL in the middle of epoch k + 1, resumed to N: the
   same bits as N epochs uninterrupted (weights, optimizer or rule state, history,
   global RNG, and every callback's state in the final checkpoint).
2. Each setting of each callback changed on resume: a ``CheckpointError`` naming the
   callback's key and the setting, with the model, the optimizer and the RNG untouched.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import _contract as contract
from gradbasics import CheckpointError, EarlyStopping, TrainHistory, rules, train_loop
from gradbasics.callbacks import BestCheckpoint, Callback, Schedule, Step
from gradbasics.checkpoint import load_checkpoint
from helpers import assert_same_bits, params_of

HERE = Path(__file__).resolve().parent


def same(a: object, b: object, where: str = "") -> None:
    """Assert ``a`` and ``b`` equal bit for bit (tensors by bytes, floats NaN-aware)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Every feature's killed, resumed and uninterrupted runs (one process, forked)."""
    out = tmp_path_factory.mktemp("contract")
    done = subprocess.run(
        [sys.executable, str(HERE / "_contract.py"), str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    status = {}
    for line in done.stdout.splitlines():
        feature, kind, how = line.split()
        status[f"{feature}-{kind}"] = how
    return out, status


@pytest.mark.parametrize("feature", contract.FEATURES)
def test_killed_and_resumed_equals_uninterrupted(
    runs: tuple[Path, dict[str, str]], feature: str
) -> None:
    out, status = runs
    assert status[f"{feature}-killed"] == "SIGKILL"  # the data and kill reached epoch k + 1
    assert status[f"{feature}-resumed"] == status[f"{feature}-whole"] == "0"
    resumed = torch.load(out / f"{feature}-resumed.out", weights_only=True)
    whole = torch.load(out / f"{feature}-whole.out", weights_only=True)
    assert len(whole["history"]["losses"]) > contract.KILL_AT + 1
    same(resumed, whole, feature)
    # Every callback's settings and state as the run ended, read back from the files.
    ends = [
        load_checkpoint(out / f"{feature}-{k}.pt", contract.model()) for k in ("killed", "whole")
    ]
    same(ends[0].callbacks, ends[1].callbacks, f"{feature} callbacks")
    assert ends[0].epoch == ends[1].epoch == len(whole["history"]["losses"])
    # What the callbacks wrote besides the checkpoint: the best weights, the CSV log.
    if feature == "best":
        best = [out / f"{feature}-{k}.pt.best" for k in ("killed", "whole")]
        models = [contract.model(), contract.model()]
        loaded = [load_checkpoint(p, m) for p, m in zip(best, models, strict=True)]
        same(loaded[0].extra, loaded[1].extra, "best")
        assert loaded[1].extra["epoch"] > contract.KILL_AT  # it moved after the kill
        same(models[0].state_dict(), models[1].state_dict(), "best weights")
    if feature == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        for sub, tag in (("", "loss"), ("/steps", "batch/loss")):
            read = []
            for k in ("killed", "whole"):
                events = EventAccumulator(str(out / f"{feature}-{k}.pt.tb") + sub)
                events.Reload()
                read.append([(e.step, e.value) for e in events.Scalars(tag)])
            assert read[0] == read[1] and len(read[1]) >= contract.EPOCHS
    if feature == "csv":
        logs = [(out / f"{feature}-{k}.pt.csv").read_text() for k in ("killed", "whole")]
        assert logs[0] == logs[1] and logs[1].count("\n") == 1 + contract.EPOCHS


# ---------------------------------------------------------------------------------------
# Changed settings are refused by name, before anything changes.


def _first(tmp: Path, feature: str) -> Path:
    """Train a feature 2 epochs into a checkpoint; return its path."""
    path = tmp / f"{feature}.pt"
    x, t, vx, vt = contract.data()
    m = contract.model()
    train_loop(m, x, t, epochs=2, batch_size=contract.BATCH, checkpoint=path,
               generator=torch.Generator().manual_seed(2),
               **contract.features(m, vx, vt, path)[feature])  # fmt: skip
    return path


def _other_val(m: nn.Module, vx: torch.Tensor, vt: torch.Tensor) -> dict[str, Any]:
    return {"val": (vx + 1, vt), "metrics": {"mae": contract.mae}}


Change = Callable[[nn.Module, torch.Tensor, torch.Tensor, dict[str, Any]], dict[str, Any]]


def _sched(kw: dict[str, Any], make: Callable[[torch.optim.Optimizer], Any]) -> dict[str, Any]:
    return {**kw, "scheduler": make(kw["optimizer"])}


lr_sched = torch.optim.lr_scheduler


def tmp_best(kw: dict[str, Any]) -> Path:
    """The path the feature's BestCheckpoint writes to."""
    return Path(kw["callbacks"][0].path)


CHANGES: list[tuple[str, str, str, Change]] = [
    ("validation", "Validation", "data", lambda m, vx, vt, kw: {**kw, **_other_val(m, vx, vt)}),
    ("validation", "Validation", "metrics",
     lambda m, vx, vt, kw: {**kw, "metrics": {"l1": contract.mae}}),
    ("train_metrics", "TrainMetrics", "metrics",
     lambda m, vx, vt, kw: {**kw, "metrics": {"l1": contract.mae}, "early_stopping": None}),
    ("early_stopping", "EarlyStopping", "monitor",
     lambda m, vx, vt, kw: {**kw, "early_stopping": EarlyStopping("mae", patience=2)}),
    ("early_stopping", "EarlyStopping", "mode",
     lambda m, vx, vt, kw: {**kw, "early_stopping": EarlyStopping(patience=2, mode="max")}),
    ("early_stopping", "EarlyStopping", "patience",
     lambda m, vx, vt, kw: {**kw, "early_stopping": EarlyStopping(patience=3)}),
    ("early_stopping", "EarlyStopping", "min_delta",
     lambda m, vx, vt, kw: {**kw, "early_stopping": EarlyStopping(patience=2, min_delta=0.1)}),
    ("early_stopping", "EarlyStopping", "restore_best",
     lambda m, vx, vt, kw: {**kw, "early_stopping": EarlyStopping(patience=2, restore_best=False)}),
    ("steplr", "Schedule", "config",
     lambda m, vx, vt, kw: _sched(kw, lambda o: lr_sched.StepLR(o, 2, gamma=0.25))),
    ("steplr", "Schedule", "scheduler",
     lambda m, vx, vt, kw: _sched(kw, lambda o: lr_sched.LambdaLR(o, lambda e: 0.5**e))),
    ("steplr", "Schedule", "interval",
     lambda m, vx, vt, kw: {**kw, "scheduler_interval": "batch"}),
    ("onecycle", "Schedule", "config",
     lambda m, vx, vt, kw: _sched(kw, lambda o: lr_sched.OneCycleLR(o, 0.05, total_steps=70))),
    ("plateau", "Schedule", "monitor",
     lambda m, vx, vt, kw: {**kw, "scheduler": None,
                            "callbacks": [Schedule(kw["scheduler"], monitor="mae")]}),
    ("callable", "Schedule", "schedule",
     lambda m, vx, vt, kw: {**kw, "scheduler": contract.mae}),
    ("clip", "GradientClip", "max_norm", lambda m, vx, vt, kw: {**kw, "clip_grad_norm": 0.25}),
    ("record", "ActivationRecording", "probe", lambda m, vx, vt, kw: {**kw, "probe": vx[:4]}),
    ("record", "ActivationRecording", "names", lambda m, vx, vt, kw: {**kw, "record": ["0"]}),
    ("user", "LossTrend", "beta",
     lambda m, vx, vt, kw: {**kw, "callbacks": [contract.LossTrend(beta=0.9, patience=2)]}),
    ("best", "BestCheckpoint", "monitor",
     lambda m, vx, vt, kw: {**kw, "callbacks": [BestCheckpoint(tmp_best(kw), monitor="mae")]}),
    ("best", "BestCheckpoint", "mode",
     lambda m, vx, vt, kw: {**kw, "callbacks": [BestCheckpoint(tmp_best(kw), mode="max")]}),
    ("csv", "CSVLogger", "", lambda m, vx, vt, kw: {**kw, "callbacks": []}),
    # a callback with state or settings removed, or added
    ("early_stopping", "EarlyStopping", "", lambda m, vx, vt, kw: {**kw, "early_stopping": None}),
    ("plain", "GradientClip", "", lambda m, vx, vt, kw: {**kw, "clip_grad_norm": 1.0}),
    ("user", "LossTrend", "", lambda m, vx, vt, kw: {**kw, "callbacks": []}),
]  # fmt: skip


@pytest.mark.parametrize(("feature", "key", "field", "change"), CHANGES,
                         ids=[f"{c[0]}-{c[1]}-{c[2] or 'presence'}" for c in CHANGES])  # fmt: skip
def test_a_changed_setting_is_refused_by_key_and_field_with_nothing_changed(
    tmp_path: Path, feature: str, key: str, field: str, change: Change
) -> None:
    path = _first(tmp_path, feature)
    x, t, vx, vt = contract.data()
    m = contract.model()
    kw = change(m, vx, vt, contract.features(m, vx, vt, path)[feature])
    kw = {k: v for k, v in kw.items() if v is not None}
    opt = kw.get("optimizer")
    before, opt_before = params_of(m), None if opt is None else opt.state_dict()
    rng, g = torch.get_rng_state(), torch.Generator().manual_seed(2)
    pattern = rf"callback '{key}'" + (rf" had another '{field}'" if field else "")
    with pytest.raises(CheckpointError, match=pattern):
        train_loop(m, x, t, epochs=4, batch_size=contract.BATCH, checkpoint=path, resume=True,
                   generator=g, **kw)  # fmt: skip
    assert_same_bits(params_of(m), before)
    if opt is not None:
        same(opt.state_dict(), opt_before)
    same(torch.get_rng_state(), rng)
    same(g.get_state(), torch.Generator().manual_seed(2).get_state())


def test_another_loss_is_refused_on_resume(tmp_path: Path) -> None:
    path = _first(tmp_path, "plain")
    x, t, *_ = contract.data()
    m = contract.model()
    before = params_of(m)
    with pytest.raises(CheckpointError, match=r"loss: saved .*mse_loss.*, now .*L1Loss"):
        train_loop(m, x, t, epochs=4, lr=0.02, batch_size=contract.BATCH, checkpoint=path,
                   resume=True, loss_fn=nn.L1Loss())  # fmt: skip
    assert_same_bits(params_of(m), before)


# ---------------------------------------------------------------------------------------
# A new feature is one class.


class ClipByHand(Callback):
    """What ``clip_grad_norm=`` does, written as a user would."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm

    def on_before_update(self, step: Step) -> None:
        torch.nn.utils.clip_grad_norm_(self.loop.params, self.max_norm)


def _rule_kw(how: str, m: nn.Module) -> dict[str, Any]:
    if how == "optimizer":
        return {"optimizer": torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9)}
    if how == "rule":
        return {"lr": 0.05, "update": rules.Adam()}
    return {"lr": 0.2}


@pytest.mark.parametrize("how", ["lr", "optimizer", "rule"])
def test_a_user_clipping_callback_equals_clip_grad_norm(device: torch.device, how: str) -> None:
    x, t, *_ = contract.data()
    results = []
    for clip in ({"clip_grad_norm": 0.3}, {"callbacks": [ClipByHand(0.3)]}, {}):
        m = contract.model().to(device)
        h = train_loop(m, x.to(device), t.to(device), epochs=4, batch_size=6,
                       generator=torch.Generator().manual_seed(3), **_rule_kw(how, m),
                       **clip)  # fmt: skip
        results.append((params_of(m), h.losses))
    assert results[0][1] == results[1][1]
    assert_same_bits(results[0][0], results[1][0])
    assert results[2][1] != results[0][1]  # the clipping did bite


def test_hooks_see_every_step_and_epoch_in_order() -> None:
    """Each hook runs when its docstring says, with what it says."""
    seen: list[tuple[Any, ...]] = []

    class Spy(Callback):
        def on_train_begin(self) -> None:
            seen.append(("begin", self.loop.start, len(self.loop.history.losses)))

        def on_epoch_begin(self, epoch: int) -> None:
            seen.append(("epoch", epoch))

        def on_before_update(self, step: Step) -> None:
            grads = [p.grad is not None for p in self.loop.params]
            seen.append(("before", step.batch, step.inputs.shape[0], all(grads), step.last))

        def on_after_update(self, step: Step) -> None:
            seen.append(("after", step.batch, all(p.grad is None for p in self.loop.params)))

        def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
            seen.append(("end", epoch, len(history.losses)))

        def on_train_end(self, history: TrainHistory) -> None:
            seen.append(("done", self.loop.failed))

    x, t, *_ = contract.data()
    train_loop(contract.model(), x[:12], t[:12], epochs=2, lr=0.01, batch_size=5,
               callbacks=[Spy()])  # fmt: skip
    epoch = [
        ("before", 0, 5, True, False), ("after", 0, True),
        ("before", 1, 5, True, False), ("after", 1, True),
        ("before", 2, 2, True, True), ("after", 2, True),
    ]  # fmt: skip
    assert seen == [
        ("begin", 0, 0),
        ("epoch", 0), *epoch, ("end", 0, 1),
        ("epoch", 1), *epoch, ("end", 1, 2),
        ("done", None),
    ]  # fmt: skip


def test_a_user_callback_stops_the_run_by_returning_true(tmp_path: Path) -> None:
    class StopAt(Callback):
        def on_epoch_end(self, epoch: int, history: TrainHistory) -> bool:
            return epoch == 2

    x, t, *_ = contract.data()
    path = tmp_path / "s.pt"
    h = train_loop(contract.model(), x, t, epochs=9, lr=0.01, callbacks=[StopAt()],
                   checkpoint=path, checkpoint_every=5)  # fmt: skip
    assert h.stopped_epoch == 2 and len(h.losses) == 3
    saved = load_checkpoint(path, contract.model())
    assert saved.epoch == 3 and saved.history.stopped_epoch == 2


@pytest.mark.parametrize("hook", ["on_train_begin", "on_epoch_end", "on_before_update"])
def test_a_hook_that_raises_is_named_and_the_mode_restored(tmp_path: Path, hook: str) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    boom.__name__ = hook
    Bad = type("Bad", (Callback,), {hook: boom})
    m = contract.model().eval()
    x, t, *_ = contract.data()
    path = tmp_path / "b.pt"
    with pytest.raises(RuntimeError, match="boom") as err:
        train_loop(m, x, t, epochs=2, lr=0.01, callbacks=[Bad()], checkpoint=path)
    assert not m.training
    if sys.version_info >= (3, 11):
        assert f"callback 'Bad', {hook}" in "".join(err.value.__notes__)
    assert not list(tmp_path.glob(".*.tmp"))


def test_duplicate_keys_and_unsafe_state_are_refused_by_name(tmp_path: Path) -> None:
    x, t, *_ = contract.data()
    m = contract.model()
    before = params_of(m)
    with pytest.raises(ValueError, match=r"two callbacks share the key 'LossTrend'"):
        train_loop(m, x, t, epochs=1, lr=0.01,
                   callbacks=[contract.LossTrend(), contract.LossTrend()])  # fmt: skip

    class Unsafe(contract.LossTrend):
        def state_dict(self) -> dict[str, Any]:
            return {"fn": print}

    with pytest.raises(TypeError, match=r"callback 'Unsafe' state_dict\(\)\['fn'\]"):
        train_loop(m, x, t, epochs=1, lr=0.0, callbacks=[Unsafe()], checkpoint=tmp_path / "u.pt")
    assert not (tmp_path / "u.pt").exists() and not list(tmp_path.glob(".*"))
    assert_same_bits(params_of(m), before)
    bad_key = contract.LossTrend()
    bad_key.key = ""
    with pytest.raises(TypeError, match=r"LossTrend.key must be a non-empty str"):
        train_loop(m, x, t, epochs=1, lr=0.01, callbacks=[bad_key])


def test_a_step_hook_under_graph_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradbasics.engines import graph as graph_engine

    monkeypatch.setattr(graph_engine, "REQUIRE_CUDA", False)
    m = nn.Linear(4, 1)
    before = params_of(m)
    x, t, *_ = contract.data()
    with pytest.raises(ValueError, match=r"graph=True cannot serve this run's callback "
                                         r"'ClipByHand'.*on_before_update"):  # fmt: skip
        train_loop(m, x, t, epochs=1, lr=0.01, graph=True, callbacks=[ClipByHand(1.0)])
    assert_same_bits(params_of(m), before)
