"""The built-in callbacks one by one: boundaries, reuse, failures, and what is a setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from gradbasics import EarlyStopping, TrainHistory, load_checkpoint, save_checkpoint, train_loop
from gradbasics.callbacks import Callback, Schedule
from helpers import assert_same_bits, params_of, reseal


def _data() -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g)
    vx = torch.randn(10, 3, generator=g)
    return x, x.sum(1, keepdim=True), vx, vx.sum(1, keepdim=True)


def _model() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))


@pytest.mark.parametrize(
    ("mode", "value", "improves"),
    [
        ("min", 0.75, False),  # exactly best - min_delta: not more than min_delta
        ("min", 0.5, True),
        ("min", 0.875, False),
        ("max", 1.25, False),  # exactly best + min_delta
        ("max", 1.5, True),
        ("max", 1.125, False),  # better, but by less than min_delta
        ("max", 0.5, False),
    ],
)
def test_early_stopping_improves_only_by_more_than_min_delta(
    mode: str, value: float, improves: bool
) -> None:
    stopper = EarlyStopping(mode=mode, min_delta=0.25)  # binary fractions: exact sums
    assert stopper.improved(value, 1.0) is improves
    assert stopper.improved(value, None) is True
    assert stopper.improved(float("nan"), 1.0) is False


def test_an_early_stopping_reused_in_a_new_run_starts_afresh() -> None:
    x, t, vx, vt = _data()
    stopper = EarlyStopping(patience=2)
    runs = []
    for fresh in (stopper, stopper, EarlyStopping(patience=2)):
        m = _model()
        h = train_loop(m, x, t, epochs=12, lr=0.4, val=(vx, vt), early_stopping=fresh)
        runs.append((h.losses, h.best_epoch, h.stopped_epoch, params_of(m)))
    assert runs[0][:3] == runs[1][:3] == runs[2][:3]
    assert runs[0][2] is not None  # it did stop, so its state was not empty
    assert_same_bits(runs[1][3], runs[2][3])


def test_a_failed_run_keeps_its_last_weights_not_the_best() -> None:
    x, t, vx, vt = _data()
    m = _model()
    at_failure: dict[str, Tensor] = {}

    class FailAt3(Callback):
        def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
            if epoch == 3:
                at_failure.update(params_of(self.loop.model))
                raise RuntimeError("stop here")

    # val_loss falls, so with mode="max" the best epoch is the first
    stopper = EarlyStopping(mode="max", patience=50)
    with pytest.raises(RuntimeError, match="stop here"):
        train_loop(m, x, t, epochs=8, lr=0.05, val=(vx, vt), early_stopping=stopper,
                   callbacks=[FailAt3()])  # fmt: skip
    assert stopper.best_epoch == 0 and stopper.weights is not None
    assert_same_bits(params_of(m), at_failure)


def test_a_stop_asked_by_a_plain_function_is_saved(tmp_path: Path) -> None:
    x, t, *_ = _data()
    path = tmp_path / "c.pt"

    def stop_at_2(epoch: int, history: TrainHistory) -> None:
        if epoch == 2:
            history.stop()

    h = train_loop(_model(), x, t, epochs=9, lr=0.05, checkpoint=path, checkpoint_every=5,
                   callbacks=[stop_at_2])  # fmt: skip
    assert h.stopped_epoch == 2
    saved = load_checkpoint(path, _model())
    assert (saved.epoch, saved.history.stopped_epoch) == (3, 2)
    again = train_loop(_model(), x, t, epochs=9, lr=0.05, checkpoint=path, resume=True)
    assert again.losses == h.losses  # a stopped run resumes as stopped


@pytest.mark.parametrize(
    "make",
    [
        lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=3),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 2),
        lambda o: torch.optim.lr_scheduler.StepLR(o, 2),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.5, total_steps=20),
    ],
)
def test_a_schedulers_settings_do_not_move_as_it_steps(make: Any) -> None:
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
    schedule = Schedule(make(opt))
    schedule.watching = "loss"
    before = schedule.settings()
    state = schedule.state_dict()
    for value in (3.0, 2.0, 2.5, 2.6, 2.7):
        opt.step()  # no gradients: changes nothing, keeps torch's order of calls
        if schedule.kind == "plateau":
            schedule.scheduler.step(value)
        else:
            schedule.scheduler.step()
    assert schedule.settings() == before
    assert schedule.state_dict() != state  # what moved is state


def test_a_progress_bar_may_come_and_go_on_resume(tmp_path: Path) -> None:
    x, t, *_ = _data()
    path = tmp_path / "c.pt"
    train_loop(_model(), x, t, epochs=2, lr=0.05, checkpoint=path, progress=True)
    resumed = _model()
    h = train_loop(resumed, x, t, epochs=4, lr=0.05, checkpoint=path, resume=True)
    whole = _model()
    h2 = train_loop(whole, x, t, epochs=4, lr=0.05)
    assert h.losses == h2.losses
    assert_same_bits(params_of(resumed), params_of(whole))


def test_save_checkpoint_scheduler_is_deprecated_but_kept(tmp_path: Path) -> None:
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    step = torch.optim.lr_scheduler.StepLR(opt, 3)
    with pytest.warns(DeprecationWarning, match=r"callbacks=\[gradbasics.callbacks.Schedule"):
        save_checkpoint(tmp_path / "c.pt", m, epoch=1, optimizer=opt, scheduler=step)
    saved = load_checkpoint(tmp_path / "c.pt", _model())
    assert saved.callbacks["scheduler"]["state"] == step.state_dict()


def test_weights_of_a_callback_without_weights_are_refused(tmp_path: Path) -> None:
    from gradbasics import CheckpointError

    x, t, *_ = _data()
    path = tmp_path / "c.pt"
    train_loop(_model(), x, t, epochs=1, lr=0.05, checkpoint=path)
    m = _model()
    before = params_of(m)
    with pytest.raises(CheckpointError, match=r"no weights in the state of callback 'Nope'"):
        load_checkpoint(path, m, weights="Nope")
    with pytest.raises(TypeError, match=r"weights must be a callback key \(str\) or None"):
        load_checkpoint(path, m, weights=3)  # type: ignore[arg-type]
    assert_same_bits(params_of(m), before)


def test_a_format_2_file_with_early_stopping_still_resumes(tmp_path: Path) -> None:
    """A file as gradbasics wrote it before callbacks: the state under extra and scheduler."""
    import hashlib
    import io

    from gradbasics._ckptio import MAGIC

    x, t, vx, vt = _data()
    path = tmp_path / "c.pt"
    kw: dict[str, Any] = {"lr": 0.05, "val": (vx, vt), "batch_size": 10}

    def run(epochs: int, resume: bool) -> tuple[nn.Module, TrainHistory]:
        m = _model()
        h = train_loop(m, x, t, epochs=epochs, checkpoint=path, resume=resume,
                       early_stopping=EarlyStopping(patience=50),
                       generator=torch.Generator().manual_seed(0), **kw)  # fmt: skip
        return m, h

    run(2, False)
    raw = path.read_bytes()
    p = torch.load(io.BytesIO(raw[len(MAGIC) + 32 :]), weights_only=True)
    p["extra"]["early_stopping"] = p.pop("callbacks")["EarlyStopping"]["state"]
    del p["rng"]  # format 2 kept the generator's state only
    del p["format"]
    buf = io.BytesIO()
    torch.save(p, buf)
    body = buf.getvalue()
    path.write_bytes(MAGIC + hashlib.sha256(body).digest() + body)
    resumed, h = run(4, True)
    path.unlink()
    whole, h2 = run(4, False)
    assert h.losses == h2.losses and h.val_losses == h2.val_losses
    assert_same_bits(params_of(resumed), params_of(whole))


class Halve(Callback):
    """Halve the rate after every epoch through ``self.loop.lr``."""

    requires = frozenset({"lr_change"})

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        self.loop.lr = self.loop.lr / 2


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_a_rate_set_by_a_callback_resumes_as_state(tmp_path: Path, with_optimizer: bool) -> None:
    x, t, *_ = _data()

    def run(epochs: int, path: Path, resume: bool = False) -> TrainHistory:
        m = _model()
        kw: dict[str, Any] = {"lr": 0.1}
        if with_optimizer:
            kw = {"optimizer": torch.optim.SGD(m.parameters(), lr=0.1)}
        return train_loop(m, x, t, epochs=epochs, checkpoint=path, resume=resume,
                          callbacks=[Halve()], **kw)  # fmt: skip

    whole = run(4, tmp_path / "w.pt")
    run(2, tmp_path / "p.pt")
    resumed = run(4, tmp_path / "p.pt", resume=True)
    assert whole.lrs == resumed.lrs == [0.1, 0.05, 0.025, 0.0125]
    assert whole.losses == resumed.losses


def test_a_rate_set_by_an_undeclared_callback_is_refused_by_name() -> None:
    class Sneaky(Callback):
        def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
            self.loop.lr = 0.5

    x, t, *_ = _data()
    with pytest.raises(RuntimeError, match=r"requires = frozenset\(\{'lr_change'\}\)"):
        train_loop(_model(), x, t, epochs=2, lr=0.1, callbacks=[Sneaky()])


def test_a_loader_of_another_batch_size_or_data_is_refused(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from gradbasics import CheckpointError

    x, t, *_ = _data()
    path = tmp_path / "c.pt"
    train_loop(_model(), DataLoader(TensorDataset(x, t), batch_size=4), epochs=1, lr=0.05,
               checkpoint=path)  # fmt: skip
    for loader, says in [
        (DataLoader(TensorDataset(x, t), batch_size=16), "batch_size: saved 4, now 16"),
        (DataLoader(TensorDataset(x * 10, t), batch_size=4), "data: saved"),
    ]:
        m = _model()
        before = params_of(m)
        with pytest.raises(CheckpointError, match=says):
            train_loop(m, loader, epochs=2, lr=0.05, checkpoint=path, resume=True)
        assert_same_bits(params_of(m), before)


def test_loop_stop_from_a_step_hook_stops_after_the_epoch() -> None:
    class StopInStep(Callback):
        def on_after_update(self, step: Any) -> None:
            if self.loop.epoch == 1:
                self.loop.stop()

    x, t, *_ = _data()
    h = train_loop(_model(), x, t, epochs=5, lr=0.05, batch_size=10, callbacks=[StopInStep()])
    assert (len(h.losses), h.stopped_epoch) == (2, 1)


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ({"counts": {len: 1}}, r"keys that are strings.*built-in function len"),
        ({"fn": print}, r"state_dict\(\)\['fn'\] must hold only"),
    ],
)
def test_state_a_checkpoint_cannot_hold_is_refused_before_the_first_epoch(
    tmp_path: Path, state: dict[str, Any], says: str
) -> None:
    class Holds(Callback):
        def state_dict(self) -> dict[str, Any]:
            return state

    x, t, *_ = _data()
    m = _model()
    before = params_of(m)
    with pytest.raises(TypeError, match=says):
        train_loop(m, x, t, epochs=3, lr=0.05, checkpoint=tmp_path / "c.pt",
                   checkpoint_every=3, callbacks=[Holds()])  # fmt: skip
    assert_same_bits(params_of(m), before)
    assert not list(tmp_path.iterdir())


def test_settings_that_are_enums_or_nested_tensors_resume(tmp_path: Path) -> None:
    import enum

    class Kind(str, enum.Enum):
        FAST = "fast"

    class Configured(Callback):
        def settings(self) -> dict[str, Any]:
            return {"kind": Kind.FAST, "cfg": {"w": torch.tensor([1.0, 2.0]), "eps": float("nan")}}

    x, t, *_ = _data()
    path = tmp_path / "c.pt"
    train_loop(_model(), x, t, epochs=1, lr=0.05, checkpoint=path, callbacks=[Configured()])
    h = train_loop(_model(), x, t, epochs=2, lr=0.05, checkpoint=path, resume=True,
                   callbacks=[Configured()])  # fmt: skip
    assert len(h.losses) == 2


def test_a_late_callback_refusing_to_begin_changes_nothing(tmp_path: Path) -> None:
    ended: list[str] = []

    class Late(Callback):
        order = 85

        def on_train_begin(self) -> None:
            raise ValueError("not today")

    class Early(Callback):
        def on_train_end(self, history: TrainHistory) -> None:
            ended.append("early")

    x, t, *_ = _data()
    path = tmp_path / "c.pt"
    train_loop(_model(), x, t, epochs=1, lr=0.05, checkpoint=path)
    m = _model()
    before, rng = params_of(m), torch.get_rng_state()
    with pytest.raises(ValueError, match="not today"):
        train_loop(m, x, t, epochs=3, lr=0.05, checkpoint=path, resume=True,
                   callbacks=[Late(), Early()])  # fmt: skip
    assert_same_bits(params_of(m), before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert ended == ["early"]  # what began is ended


def _es_state(p: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = p["callbacks"]["EarlyStopping"]["state"]
    return state


def _doubled_best(p: dict[str, Any]) -> None:
    weights = _es_state(p)["weights"]
    _es_state(p)["weights"] = {k: v.double() for k, v in weights.items()}


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda p: p["rng"].update(cpu=torch.zeros(3, dtype=torch.uint8)), "bad RNG state"),
        (lambda p: p["history_extra"].update(lrs="ab"), "bad history: lrs"),
        (lambda p: p["history_extra"].update(stopped_epoch="x"), "stopped_epoch"),
        (lambda p: p["history_extra"].update(best_epoch=99), "not an epoch of the history"),
        (lambda p: p["losses"].__setitem__(0, float("nan")), "not finite"),
        (lambda p: p.update(epoch=1), r"losses \(2 for 1 epochs\)"),
        (lambda p: p["callbacks"]["Schedule"]["state"].update(last_epoch="x"), "another kind"),
        (_doubled_best, "best weights do not fit"),
    ],
)  # fmt: skip
def test_odd_contents_under_a_valid_checksum_are_refused_with_nothing_changed(
    tmp_path: Path, edit: Any, says: str
) -> None:
    from gradbasics import CheckpointError

    x, t, vx, vt = _data()
    path = tmp_path / "c.pt"

    def kw(m: nn.Module) -> dict[str, Any]:
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        return {"optimizer": opt, "scheduler": torch.optim.lr_scheduler.StepLR(opt, 1),
                "val": (vx, vt), "early_stopping": EarlyStopping(patience=9)}  # fmt: skip

    first = _model()
    train_loop(first, x, t, epochs=2, checkpoint=path, **kw(first))
    reseal(path, edit)
    m = _model()
    args = kw(m)
    before, opt_before, rng = params_of(m), args["optimizer"].state_dict(), torch.get_rng_state()
    with pytest.raises(CheckpointError, match=says):
        train_loop(m, x, t, epochs=4, checkpoint=path, resume=True, **args)
    assert_same_bits(params_of(m), before)
    assert args["optimizer"].state_dict() == opt_before
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_late_stop_saves_the_last_weights_not_the_restored_best(tmp_path: Path) -> None:
    x, t, vx, vt = _data()
    path = tmp_path / "c.pt"
    last: dict[str, Tensor] = {}
    model = _model()

    def stop_at_3(epoch: int, history: TrainHistory) -> None:
        if epoch == 3:
            last.update(params_of(model))
            history.stop()

    stopper = EarlyStopping(mode="max", patience=50)  # val_loss falls: the best is epoch 0
    train_loop(model, x, t, epochs=9, lr=0.05, val=(vx, vt), early_stopping=stopper,
               checkpoint=path, checkpoint_every=5, callbacks=[stop_at_3])  # fmt: skip
    saved = _model()
    assert load_checkpoint(path, saved).epoch == 4
    assert_same_bits(params_of(saved), last)  # the run's state: what a resume continues
    assert not torch.equal(params_of(model)["0.weight"], last["0.weight"])  # model: best


def test_an_error_in_the_update_is_not_blamed_on_a_step_hook() -> None:
    class Watch(Callback):
        def on_before_update(self, step: Any) -> None:
            pass

    def broken(params: Any, lr: float) -> None:
        raise RuntimeError("update failed")

    x, t, *_ = _data()
    with pytest.raises(RuntimeError, match="update failed") as err:
        train_loop(_model(), x, t, epochs=1, lr=0.1, update=broken, callbacks=[Watch()])
    assert "Watch" not in "".join(getattr(err.value, "__notes__", []))
