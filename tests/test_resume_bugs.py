"""The eight resume failures of the callbacks issue, each through the public keywords.

Every test here failed before train_loop's features became callbacks with settings and
state; they use only what a user writes, so they run against any version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradbasics import CheckpointError, EarlyStopping, load_checkpoint, train_loop
from helpers import assert_same_bits, params_of, reseal

sched = torch.optim.lr_scheduler


def _data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    vx = torch.randn(12, 3, generator=g)
    return x, x.sum(1, keepdim=True), vx, vx.sum(1, keepdim=True)


def _model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Dropout(dropout), nn.Linear(6, 1))


def _neg_mae(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -(out - t).abs().mean()


def _twice(
    path: Path, first: dict[str, Any], then: Callable[[nn.Module], dict[str, Any]]
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Train 2 epochs into ``path``; return a fresh model (and its bits) for the resume."""
    x, t, *_ = _data()
    train_loop(_model(), x, t, epochs=2, batch_size=8, checkpoint=path, **first)
    model = _model()
    return model, params_of(model)


@pytest.mark.parametrize("kind", ["onecycle", "cyclic"])
def test_a_run_whose_scheduler_moves_momentum_resumes_from_its_own_checkpoint(
    tmp_path: Path, kind: str
) -> None:
    x, t, *_ = _data()

    def run(epochs: int, resume: bool) -> tuple[nn.Module, list[float]]:
        m = _model()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        s: Any = (sched.OneCycleLR(opt, 0.05, total_steps=30) if kind == "onecycle"
                  else sched.CyclicLR(opt, 0.001, 0.05, step_size_up=7))  # fmt: skip
        h = train_loop(m, x, t, epochs=epochs, batch_size=8, optimizer=opt, scheduler=s,
                       scheduler_interval="batch", checkpoint=tmp_path / "c.pt", resume=resume,
                       generator=torch.Generator().manual_seed(1))  # fmt: skip
        return m, h.losses

    run(2, False)
    resumed, losses = run(5, True)
    (tmp_path / "c.pt").unlink()
    whole, all_losses = run(5, False)
    assert losses == all_losses
    assert_same_bits(params_of(resumed), params_of(whole))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda o: sched.LambdaLR(o, lambda e: 0.5**e), "scheduler"),
        (lambda o: sched.StepLR(o, 3, gamma=0.5), "config"),
        (lambda o: sched.StepLR(o, 2, gamma=0.9), "config"),
    ],
)
def test_a_scheduler_of_another_kind_or_setting_is_refused_before_anything_changes(
    tmp_path: Path, make: Callable[[torch.optim.Optimizer], Any], field: str
) -> None:
    x, t, *_ = _data()
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    train_loop(m, x, t, epochs=2, optimizer=opt, scheduler=sched.StepLR(opt, 2, gamma=0.5),
               checkpoint=tmp_path / "c.pt")  # fmt: skip
    m2 = _model()
    opt2 = torch.optim.SGD(m2.parameters(), lr=0.01)
    before, opt_before = params_of(m2), opt2.state_dict()
    s2 = make(opt2)
    with pytest.raises(CheckpointError, match=rf"'Schedule' had another '{field}'"):
        train_loop(m2, x, t, epochs=4, optimizer=opt2, scheduler=s2,
                   checkpoint=tmp_path / "c.pt", resume=True)  # fmt: skip
    assert_same_bits(params_of(m2), before)
    assert opt2.state_dict()["param_groups"][0]["lr"] == opt_before["param_groups"][0]["lr"]


@pytest.mark.parametrize(
    ("first", "then", "named"),
    [
        ({"lr": 0.05}, {"lr": 0.05, "loss_fn": nn.L1Loss()}, "loss"),
        ({"lr": 0.05, "clip_grad_norm": 1.0}, {"lr": 0.05, "clip_grad_norm": 2.0}, "max_norm"),
        ({"lr": 0.05}, {"lr": 0.05, "clip_grad_norm": 2.0}, "GradientClip"),
        ("batch", "epoch", "interval"),
        ({"lr": 0.05, "early_stopping": EarlyStopping("val_loss", patience=9)},
         {"lr": 0.05, "early_stopping": EarlyStopping("neg_mae", mode="max", patience=9)},
         "monitor"),
        ({"lr": 0.05, "early_stopping": EarlyStopping("neg_mae", patience=9)},
         {"lr": 0.05, "early_stopping": EarlyStopping("neg_mae", mode="max", patience=9)},
         "mode"),
    ],
)  # fmt: skip
def test_another_loss_clip_interval_or_monitor_is_refused(
    tmp_path: Path, first: Any, then: Any, named: str
) -> None:
    x, t, vx, vt = _data()
    val: dict[str, Any] = {"val": (vx, vt), "metrics": {"neg_mae": _neg_mae}}
    m = _model()
    kws: list[dict[str, Any]] = []
    for interval in (first, then):
        if isinstance(interval, str):
            opt = torch.optim.SGD(m.parameters(), lr=0.01)
            kws.append({"optimizer": opt, "scheduler": sched.StepLR(opt, 50),
                        "scheduler_interval": interval})  # fmt: skip
        else:
            kws.append(interval)
    train_loop(m, x, t, epochs=2, checkpoint=tmp_path / "c.pt", **val, **kws[0])
    if "optimizer" in kws[1]:
        m = _model()
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        kws[1] = {**kws[1], "optimizer": opt, "scheduler": sched.StepLR(opt, 50)}
    else:
        m = _model()
    before = params_of(m)
    with pytest.raises(CheckpointError, match=named):
        train_loop(m, x, t, epochs=4, checkpoint=tmp_path / "c.pt", resume=True, **val, **kws[1])
    assert_same_bits(params_of(m), before)


def test_a_probe_of_another_size_is_refused_and_a_new_recording_joins(tmp_path: Path) -> None:
    x, t, vx, _ = _data()
    path = tmp_path / "c.pt"
    train_loop(_model(), x, t, epochs=2, lr=0.05, record=True, probe=vx[:3], checkpoint=path)
    m = _model()
    before = params_of(m)
    for probe in (vx[:5], None):
        with pytest.raises(CheckpointError, match="'ActivationRecording' had another 'probe'"):
            train_loop(m, x, t, epochs=4, lr=0.05, record=True, probe=probe, checkpoint=path,
                       resume=True)  # fmt: skip
        assert_same_bits(params_of(m), before)
    # A run that did not record may start recording, with a probe, on resume.
    other = tmp_path / "d.pt"
    train_loop(_model(), x, t, epochs=2, lr=0.05, checkpoint=other)
    h = train_loop(_model(), x, t, epochs=4, lr=0.05, record=True, probe=vx[:3],
                   checkpoint=other, resume=True)  # fmt: skip
    ref = train_loop(_model(), x, t, epochs=4, lr=0.05, record=True, probe=vx[:3])
    for name, stats in h.activation_stats.items():
        assert torch.isnan(stats.mean[:2]).all()
        assert torch.equal(stats.mean[2:], ref.activation_stats[name].mean[2:])
    assert load_checkpoint(other, _model()).epoch == 4


def _drop_waited(p: dict[str, Any]) -> None:
    if "callbacks" in p:
        del p["callbacks"]["EarlyStopping"]["state"]["waited"]
    else:
        del p["extra"]["early_stopping"]["waited"]


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda p: p["history_extra"].update(surprise=[1.0]), "unexpected history field"),
        (lambda p: p.update(extra=[1, 2]), "extra"),
        (_drop_waited, "EarlyStopping"),
    ],
    ids=["history field", "extra", "early stopping state"],
)
def test_a_checksummed_file_with_bad_entries_is_refused_before_the_model_changes(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], says: str
) -> None:
    x, t, vx, vt = _data()
    path = tmp_path / "c.pt"
    kw: dict[str, Any] = {"lr": 0.05, "val": (vx, vt), "early_stopping": EarlyStopping(patience=9)}
    train_loop(_model(), x, t, epochs=2, checkpoint=path, **kw)
    reseal(path, edit)
    m = _model()
    before = params_of(m)
    with pytest.raises(CheckpointError, match=says):
        train_loop(m, x, t, epochs=4, checkpoint=path, resume=True, **kw)
    assert_same_bits(params_of(m), before)


def test_dropout_with_a_generator_resumes_bit_identically_in_a_new_process(
    tmp_path: Path,
) -> None:
    x, t, *_ = _data()

    def run(epochs: int, resume: bool) -> nn.Module:
        m = _model(dropout=0.3)
        train_loop(m, x, t, epochs=epochs, lr=0.05, batch_size=8, checkpoint=tmp_path / "c.pt",
                   resume=resume, generator=torch.Generator().manual_seed(1))  # fmt: skip
        return m

    run(2, False)
    torch.manual_seed(1234)  # what a fresh process's global RNG holds: not the run's
    resumed = run(5, True)
    (tmp_path / "c.pt").unlink()
    whole = run(5, False)
    assert_same_bits(params_of(resumed), params_of(whole))


def test_plateau_watches_its_own_monitor_not_the_early_stopping_one() -> None:
    x, t, vx, vt = _data()
    lrs = []
    for stopper in (None, EarlyStopping("neg_mae", mode="max", patience=50)):
        m = _model()
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        plateau = sched.ReduceLROnPlateau(opt, patience=0, factor=0.5)  # mode="min"
        h = train_loop(m, x, t, epochs=8, optimizer=opt, scheduler=plateau, val=(vx, vt),
                       metrics={"neg_mae": _neg_mae}, early_stopping=stopper)  # fmt: skip
        lrs.append(h.lrs)
    assert lrs[0] == lrs[1]  # val_loss in both: the early stopping's monitor is its own
    assert lrs[0][0] == 0.05 and min(lrs[0]) >= 0.05 * 0.5**3  # not halved every epoch


def test_the_best_weights_are_loadable_from_the_checkpoint_after_restore_best(
    tmp_path: Path,
) -> None:
    x, t, vx, vt = _data()
    path = tmp_path / "c.pt"
    best: dict[str, torch.Tensor] = {}
    model = _model()

    def keep(epoch: int, history: Any) -> None:
        if history.best_epoch == epoch:
            best.update(params_of(model))

    h = train_loop(model, x, t, epochs=30, lr=0.3, val=(vx, vt), callbacks=[keep],
                   early_stopping=EarlyStopping(patience=2), checkpoint=path)  # fmt: skip
    assert h.stopped_epoch is not None and h.best_epoch is not None
    assert h.best_epoch < h.stopped_epoch  # the last weights are not the best ones
    assert_same_bits(params_of(model), best)  # the model ends with the best weights
    last, loaded = _model(), _model()
    assert load_checkpoint(path, last).epoch == h.stopped_epoch + 1
    assert not torch.equal(params_of(last)["0.weight"], best["0.weight"])
    load_checkpoint(path, loaded, weights="EarlyStopping")
    assert_same_bits(params_of(loaded), best)


def _extra_key(m: nn.Module) -> torch.optim.Optimizer:
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    opt.param_groups[0]["warmup"] = 3  # a key the saved groups do not have
    return opt


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda m: torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9),
         "lr: saved 0.01, now 0.02"),
        (lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.5),
         "momentum: saved 0.9, now 0.5"),
        (_extra_key, "warmup: saved None, now 3"),
        (lambda m: torch.optim.SGD([{"params": list(m.parameters())[:2]},
                                    {"params": list(m.parameters())[2:]}],
                                   lr=0.01, momentum=0.9), "sizes [4], this optimizer [2, 2]"),
    ],
)  # fmt: skip
def test_an_optimizer_with_another_rate_setting_or_groups_is_refused_by_name(
    tmp_path: Path, make: Callable[[nn.Module], torch.optim.Optimizer], named: str
) -> None:
    """Without a scheduler, the checkpoint's groups would silently replace the new ones."""
    x, t, *_ = _data()
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    train_loop(m, x, t, epochs=2, optimizer=opt, batch_size=8, checkpoint=tmp_path / "c.pt")
    m2 = _model()
    opt2 = make(m2)
    before, groups = params_of(m2), [dict(g, params=None) for g in opt2.param_groups]
    with pytest.raises(CheckpointError, match=re.escape(named)):
        train_loop(m2, x, t, epochs=4, optimizer=opt2, batch_size=8,
                   checkpoint=tmp_path / "c.pt", resume=True)  # fmt: skip
    assert_same_bits(params_of(m2), before)
    assert [dict(g, params=None) for g in opt2.param_groups] == groups
    assert not opt2.state


@pytest.mark.parametrize("first_gen", [True, False], ids=["generator dropped", "generator added"])
def test_a_resume_that_draws_its_batches_from_another_rng_is_refused(
    tmp_path: Path, first_gen: bool
) -> None:
    x, t, *_ = _data()

    def gen() -> torch.Generator | None:
        return torch.Generator().manual_seed(0) if first_gen else None

    train_loop(_model(), x, t, epochs=2, lr=0.05, batch_size=8, generator=gen(),
               checkpoint=tmp_path / "c.pt")  # fmt: skip
    m2 = _model()
    before, rng = params_of(m2), torch.get_rng_state()
    other = None if first_gen else torch.Generator().manual_seed(0)
    with pytest.raises(CheckpointError, match="batch_rng: saved"):
        train_loop(m2, x, t, epochs=4, lr=0.05, batch_size=8, generator=other,
                   checkpoint=tmp_path / "c.pt", resume=True)  # fmt: skip
    assert_same_bits(params_of(m2), before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_checkpoint_written_before_batch_rng_was_kept_still_resumes(tmp_path: Path) -> None:
    x, t, *_ = _data()
    whole = _model()
    train_loop(
        whole, x, t, epochs=4, lr=0.05, batch_size=8, generator=torch.Generator().manual_seed(0)
    )
    path = tmp_path / "c.pt"
    train_loop(_model(), x, t, epochs=2, lr=0.05, batch_size=8,
               generator=torch.Generator().manual_seed(0), checkpoint=path)  # fmt: skip
    reseal(tmp_path / "c.pt", lambda data: data["settings"].pop("batch_rng"))
    resumed = _model()
    train_loop(resumed, x, t, epochs=4, lr=0.05, batch_size=8,
               generator=torch.Generator().manual_seed(0), checkpoint=tmp_path / "c.pt",
               resume=True)  # fmt: skip
    assert_same_bits(params_of(resumed), params_of(whole))
