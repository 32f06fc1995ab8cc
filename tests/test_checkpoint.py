from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from _killable import run
from gradbasics import (
    ChainModel,
    CheckpointError,
    FrozenFirstModel,
    TrainHistory,
    TrainingInterrupted,
    legacy_data_step,
    load_checkpoint,
    rules,
    save_checkpoint,
    train_loop,
)
from helpers import assert_same_bits, params_of

HERE = Path(__file__).resolve().parent


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    return x, x.sum(1, keepdim=True)


def _fresh(kind: str) -> tuple[torch.nn.Module, dict[str, object]]:
    torch.manual_seed(3)
    model = torch.nn.Linear(3, 1)
    if kind == "lr":
        return model, {"lr": 0.05}
    if kind == "momentum":
        return model, {"optimizer": torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)}
    if kind == "rule-adam":
        return model, {"lr": 0.01, "update": rules.Adam(amsgrad=True)}
    if kind == "rule-rmsprop":
        return model, {"lr": 0.01, "update": rules.RMSprop(momentum=0.5, centered=True)}
    return model, {"optimizer": torch.optim.Adam(model.parameters(), lr=0.01)}


@pytest.mark.parametrize("kind", ["lr", "momentum", "adam", "rule-adam", "rule-rmsprop"])
@pytest.mark.parametrize("generator", [True, False], ids=["seeded", "global-rng"])
def test_resume_is_bit_identical(tmp_path: Path, kind: str, generator: bool) -> None:
    x, t = _data()

    def gen() -> torch.Generator | None:
        return torch.Generator().manual_seed(5) if generator else None

    def fit(
        model: torch.nn.Module, kw: dict[str, object], epochs: int, **extra: object
    ) -> TrainHistory:
        return train_loop(model, x, t, epochs=epochs, batch_size=4, record=True, **kw, **extra)  # type: ignore[arg-type]

    whole, kw = _fresh(kind)
    torch.manual_seed(99)  # the global RNG draws the batches when generator is None
    h_whole = fit(whole, kw, 9, generator=gen())
    path = tmp_path / "run.pt"
    first, kw = _fresh(kind)
    torch.manual_seed(99)
    fit(first, kw, 4, generator=gen(), checkpoint=path)
    torch.manual_seed(12345)  # a resumed process starts with another global RNG state
    second, kw = _fresh(kind)
    h_resumed = fit(second, kw, 9, generator=gen(), checkpoint=path, resume=True)
    assert h_resumed.losses == h_whole.losses
    assert_same_bits(params_of(second), params_of(whole))
    assert h_resumed.activations.keys() == h_whole.activations.keys()
    for k, v in h_whole.activations.items():
        assert torch.equal(h_resumed.activations[k], v)


@pytest.mark.parametrize("mode", ["lr", "momentum", "adam", "rule-adam"])
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, mode: str
) -> None:
    ckpt, out = tmp_path / "ckpt.pt", tmp_path / "out.pt"
    rng = random.Random(f"kill-{mode}")
    kills = 0
    for _ in range(12):
        child = subprocess.Popen(
            [sys.executable, str(HERE / "_killable.py"), mode, str(ckpt), str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        line = child.stdout.readline()  # "running": training has started
        if kills < 3 and line.strip() == "running":
            try:
                child.wait(timeout=rng.uniform(0.0, 0.3))
            except subprocess.TimeoutExpired:
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
        child.wait(timeout=120)
        child.stdout.close()
        if child.returncode == 0 and out.exists():
            break
        assert child.returncode == -signal.SIGKILL
    assert kills >= 1
    assert not list(tmp_path.glob(".*.tmp")), "a torn temporary file was left behind"
    model, history = run(mode, None, None)  # the uninterrupted oracle
    saved = torch.load(out, weights_only=True)
    assert saved["losses"] == history.losses
    assert_same_bits(dict(saved["state"]), params_of(model))


def test_save_and_load_round_trip_restores_everything(tmp_path: Path) -> None:
    model = ChainModel(1.0, 2.0, 3.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ((model(torch.tensor([1.0])) - 2) ** 2).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(7)
    torch.randperm(10, generator=gen)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, epoch=3, optimizer=opt, generator=gen, settings={"lr": 0.1})
    other = ChainModel()
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    other_gen = torch.Generator().manual_seed(0)
    ck = load_checkpoint(
        path, other, optimizer=other_opt, generator=other_gen, settings={"lr": 0.1}
    )
    assert ck.epoch == 3
    assert ck.settings == {"lr": 0.1}
    assert_same_bits(params_of(other), params_of(model))
    bufs = [other_opt.state[p]["momentum_buffer"] for p in other.parameters()]
    assert all(
        torch.equal(b, opt.state[p]["momentum_buffer"])
        for b, p in zip(bufs, model.parameters(), strict=True)
    )
    assert torch.equal(torch.randperm(10, generator=other_gen), torch.randperm(10, generator=gen))


def test_a_file_that_runs_code_when_unpickled_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "gradbasics.checkpoint", "version": 1, "model": Evil()}, path)
    model = ChainModel()
    before = params_of(model)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="could run code"):
        train_loop(
            model, torch.ones(1), torch.ones(1), epochs=2, lr=0.1, checkpoint=path, resume=True
        )
    assert not marker.exists()
    assert_same_bits(params_of(model), before)


def _valid(tmp_path: Path) -> Path:
    path = tmp_path / "ok.pt"
    save_checkpoint(path, ChainModel(1.5, 2.5, 3.5), epoch=2)
    return path


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_truncated_or_corrupted_files_are_refused(tmp_path: Path, damage: str) -> None:
    path = _valid(tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        middle = len(data) // 2
        path.write_bytes(
            data[:middle]
            + bytes(b ^ 0xFF for b in data[middle : middle + 64])
            + data[middle + 64 :]
        )
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"not a checkpoint at all" * 10)
    model = ChainModel()
    before = params_of(model)
    with pytest.raises(CheckpointError, match=r"truncated or corrupted|not a gradbasics"):
        load_checkpoint(path, model)
    assert_same_bits(params_of(model), before)


def test_a_checkpoint_of_another_model_is_refused_and_says_what_differs(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    model = FrozenFirstModel()
    before = params_of(model)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model)
    assert "unexpected keys ['w3']" in str(info.value)
    assert_same_bits(params_of(model), before)

    save_checkpoint(tmp_path / "lin.pt", torch.nn.Linear(3, 1), epoch=1)
    wide = torch.nn.Linear(4, 1)
    before = params_of(wide)
    with pytest.raises(
        CheckpointError, match=r"weight: saved \(1, 3\) torch.float32, model \(1, 4\)"
    ):
        load_checkpoint(tmp_path / "lin.pt", wide)
    assert_same_bits(params_of(wide), before)


def test_a_checkpoint_of_another_update_rule_or_lr_is_refused(tmp_path: Path) -> None:
    x, t = torch.tensor([1.0]), torch.tensor([2.0])
    path = tmp_path / "run.pt"
    train_loop(FrozenFirstModel(), x, t, epochs=2, lr=0.1, checkpoint=path)
    model = FrozenFirstModel()
    with pytest.raises(CheckpointError, match=r"update: saved .*manual_sgd_step.*legacy_data_step"):
        train_loop(
            model, x, t, epochs=4, lr=0.1, update=legacy_data_step, checkpoint=path, resume=True
        )
    with pytest.raises(CheckpointError, match=r"lr: saved 0\.1, now 0\.2"):
        train_loop(model, x, t, epochs=4, lr=0.2, checkpoint=path, resume=True)
    with pytest.raises(CheckpointError, match="optimizer None, but this run uses SGD"):
        train_loop(
            model,
            x,
            t,
            epochs=4,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            checkpoint=path,
            resume=True,
        )
    with pytest.raises(CheckpointError, match="holds 2 epochs, more than the epochs=1"):
        train_loop(model, x, t, epochs=1, lr=0.1, checkpoint=path, resume=True)
    assert model.w2.item() == 1.0


def test_resume_without_a_file_starts_fresh_and_writes_one(tmp_path: Path) -> None:
    path = tmp_path / "new.pt"
    model = FrozenFirstModel()
    history = train_loop(
        model,
        torch.tensor([1.0]),
        torch.tensor([2.0]),
        epochs=3,
        lr=0.1,
        checkpoint=path,
        resume=True,
    )
    assert len(history.losses) == 3
    assert load_checkpoint(path, FrozenFirstModel()).epoch == 3


def test_checkpoint_every_k_epochs_and_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "k.pt"
    seen: list[int] = []

    def peek(epoch: int, history: object) -> None:
        seen.append(load_checkpoint(path, FrozenFirstModel()).epoch if path.exists() else 0)

    train_loop(
        FrozenFirstModel(),
        torch.tensor([1.0]),
        torch.tensor([2.0]),
        epochs=7,
        lr=0.1,
        checkpoint=path,
        checkpoint_every=3,
        callbacks=[peek],
    )
    assert seen == [0, 0, 3, 3, 3, 6, 7]


def test_a_full_disk_names_the_path_and_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _valid(tmp_path)
    good = path.read_bytes()

    def full(fd: int) -> None:  # where a full disk surfaces on delayed-allocation filesystems
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        OSError, match=r"Cannot write the checkpoint .*ok\.pt: no space left"
    ) as info:
        save_checkpoint(path, ChainModel(), epoch=9)
    assert info.value.errno == errno.ENOSPC
    assert ".tmp" not in str(info.value)
    assert path.read_bytes() == good
    assert list(tmp_path.iterdir()) == [path]


@pytest.fixture
def default_signals() -> Iterator[None]:
    """Python's own SIGINT and SIGTERM handlers, whatever pytest inherited (nohup, CI)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.usefixtures("default_signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_mid_step_finishes_the_step_and_keeps_the_checkpoint(
    tmp_path: Path, sig: signal.Signals
) -> None:
    path = tmp_path / "int.pt"
    x, t = torch.tensor([2.0]), torch.tensor([1.0])
    calls = 0

    def interrupting_rule(params: object, lr: float) -> None:
        nonlocal calls
        calls += 1
        ps = list(params)  # type: ignore[call-overload]
        manual = ps[:1]
        legacy_data_step(manual, lr)
        if calls == 4:  # Ctrl-C between the first and the second parameter's update
            signal.raise_signal(sig)
        legacy_data_step(ps[1:], lr)

    model = ChainModel()
    with pytest.raises(TrainingInterrupted) as info:
        train_loop(model, x, t, epochs=10, lr=1e-4, update=interrupting_rule, checkpoint=path)
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.epoch == 3
    assert len(info.value.history.losses) == 3
    # Oracle: four complete legacy steps by hand; no parameter is one step behind.
    ref = ChainModel()
    for _ in range(4):
        ((ref(x) - t) ** 2).mean().backward()
        legacy_data_step(ref.parameters(), 1e-4)
        ref.zero_grad(set_to_none=True)
    assert_same_bits(params_of(model), params_of(ref))
    assert load_checkpoint(path, ChainModel()).epoch == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.usefixtures("default_signals")
def test_a_second_ctrl_c_within_a_step_aborts_at_once(tmp_path: Path) -> None:
    path = tmp_path / "int.pt"
    x, t = torch.tensor([2.0]), torch.tensor([1.0])
    calls = 0

    def hung_rule(params: object, lr: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:  # a step that would never finish: the user presses Ctrl-C twice
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            raise AssertionError("the second Ctrl-C did not abort the step")
        legacy_data_step(params, lr)  # type: ignore[arg-type]

    with pytest.raises(KeyboardInterrupt, match="aborted at once") as info:
        train_loop(ChainModel(), x, t, epochs=10, lr=1e-4, update=hung_rule, checkpoint=path)
    assert not isinstance(info.value, TrainingInterrupted)
    assert load_checkpoint(path, ChainModel()).epoch == 3  # the last checkpoint is intact
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_bad_checkpoint_arguments(tmp_path: Path) -> None:
    x, t = torch.tensor([1.0]), torch.tensor([2.0])
    with pytest.raises(ValueError, match="resume=True needs a checkpoint path"):
        train_loop(FrozenFirstModel(), x, t, epochs=1, lr=0.1, resume=True)
    with pytest.raises(TypeError, match=r"checkpoint must be a str or os\.PathLike, got 3"):
        train_loop(FrozenFirstModel(), x, t, epochs=1, lr=0.1, checkpoint=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1, got 0"):
        train_loop(
            FrozenFirstModel(),
            x,
            t,
            epochs=1,
            lr=0.1,
            checkpoint=tmp_path / "a",
            checkpoint_every=0,
        )
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt", FrozenFirstModel())
