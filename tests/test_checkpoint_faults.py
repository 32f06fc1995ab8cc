"""Checkpoints under attack: flipped tensor bits, crafted files, odd values, races, links.

Each test reproduces a fault found by trying to break the checkpoints on purpose, or a
semantic change to src/ that the rest of the suite let through.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from gradbasics import (
    ChainModel,
    CheckpointError,
    TrainHistory,
    export_state_dict,
    load_checkpoint,
    save_checkpoint,
    train_loop,
)
from gradbasics._ckptio import MAGIC
from helpers import assert_same_bits, format_1_file, params_of

HERE = Path(__file__).resolve().parent


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    return x, x.sum(1, keepdim=True)


def _linear() -> torch.nn.Linear:
    torch.manual_seed(3)
    return torch.nn.Linear(3, 1)


def _rewrite(path: Path, edit: object) -> None:
    """Load the payload, change it with ``edit``, write it back with a valid checksum."""
    raw = path.read_bytes()
    payload = torch.load(io.BytesIO(raw[len(MAGIC) + 32 :]), weights_only=True)
    edit(payload)  # type: ignore[operator]
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    path.write_bytes(MAGIC + hashlib.sha256(body).digest() + body)


def test_one_flipped_bit_inside_a_tensor_is_caught_by_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, ChainModel(1.5, 2.5, 3.5), epoch=1)
    raw = bytearray(path.read_bytes())
    at = raw.find(np.float32(2.5).tobytes(), len(MAGIC) + 32)  # w2's bytes in the zip
    assert at > 0
    raw[at] ^= 0x01  # 2.5 -> 2.5000002: still a valid zip and a valid float
    path.write_bytes(bytes(raw))
    model = ChainModel()
    before = params_of(model)
    with pytest.raises(CheckpointError, match="SHA-256 checksum does not match"):
        load_checkpoint(path, model)
    assert_same_bits(params_of(model), before)


def test_a_float64_checkpoint_is_refused_by_a_float32_model(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, ChainModel(dtype=torch.float64), epoch=1)
    model = ChainModel()
    before = params_of(model)
    with pytest.raises(CheckpointError, match=r"w1: saved \(1,\) torch\.float64, model"):
        load_checkpoint(path, model)
    assert_same_bits(params_of(model), before)


def test_resuming_a_finished_run_returns_its_history_and_trains_nothing(tmp_path: Path) -> None:
    path, (x, t) = tmp_path / "c.pt", _data()
    done = train_loop(_linear(), x, t, epochs=3, lr=0.05, checkpoint=path)
    model = _linear()
    calls: list[int] = []
    again = train_loop(
        model,
        x,
        t,
        epochs=3,
        lr=0.05,
        checkpoint=path,
        resume=True,
        callbacks=[lambda e, h: calls.append(e)],
    )
    assert again.losses == done.losses
    assert calls == []
    ref = _linear()
    train_loop(ref, x, t, epochs=3, lr=0.05)
    assert_same_bits(params_of(model), params_of(ref))


def test_inference_loading_ignores_the_optimizer_and_every_rng(tmp_path: Path) -> None:
    path, (x, t) = tmp_path / "c.pt", _data()
    trained = _linear()
    opt = torch.optim.Adam(trained.parameters(), lr=0.01)
    train_loop(trained, x, t, epochs=2, optimizer=opt, checkpoint=path)
    model = _linear()
    torch.manual_seed(42)
    rng = torch.get_rng_state()
    ck = load_checkpoint(path, model)
    assert ck.ignored == ("optimizer",)
    assert torch.equal(torch.get_rng_state(), rng)  # plain loading touches no RNG
    assert_same_bits(params_of(model), params_of(trained))
    load_checkpoint(path, model, restore_rng=True)  # resuming by hand asks for it
    assert not torch.equal(torch.get_rng_state(), rng)


def test_export_state_dict_reads_back_without_gradbasics(tmp_path: Path) -> None:
    path, out = tmp_path / "c.pt", tmp_path / "weights.pt"
    save_checkpoint(path, ChainModel(1.5, 2.5, 3.5), epoch=1)
    export_state_dict(path, out)
    code = (
        "import sys, torch; sys.modules['gradbasics'] = None; "  # importing it would fail
        f"sd = torch.load({str(out)!r}, weights_only=True); "
        "print(sorted(sd), [round(v.item(), 3) for v in sd.values()])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['w1', 'w2', 'w3'] [1.5, 2.5, 3.5]"


def test_errors_name_the_users_path_never_a_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "run.pt"
    with pytest.raises(OSError, match="Cannot write the checkpoint") as info:
        save_checkpoint(path, ChainModel(), epoch=1)
    assert str(path) in str(info.value)
    assert ".tmp" not in str(info.value)


@pytest.mark.parametrize("second", ["run.pt", "run.pt.seed2"])
def test_two_processes_saving_side_by_side_never_break_each_other(
    tmp_path: Path, second: str
) -> None:
    code = (
        "import sys, torch; from gradbasics import ChainModel, save_checkpoint; "
        "[save_checkpoint(sys.argv[1], ChainModel(w1=float(i)), epoch=i) for i in range(60)]"
    )
    paths = [tmp_path / "run.pt", tmp_path / second]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(p)], stderr=subprocess.PIPE, text=True)
        for p in paths
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    for p in set(paths):
        assert load_checkpoint(p, ChainModel()).epoch == 59  # one complete checkpoint
    assert not list(tmp_path.glob(".*.tmp"))


def test_numpy_and_fraction_values_are_stored_as_plain_numbers(tmp_path: Path) -> None:
    path, (x, t) = tmp_path / "c.pt", _data()
    train_loop(_linear(), x, t, epochs=2, lr=np.float64(0.05), checkpoint=path)
    again = train_loop(_linear(), x, t, epochs=4, lr=np.float64(0.05), checkpoint=path, resume=True)
    ref = train_loop(_linear(), x, t, epochs=4, lr=0.05)
    assert again.losses == ref.losses
    save_checkpoint(path, ChainModel(), epoch=1, settings={"n": np.int64(3), "f": Fraction(1, 4)})
    settings = load_checkpoint(path, ChainModel()).settings
    assert settings == {"n": 3, "f": 0.25}
    assert (type(settings["n"]), type(settings["f"])) == (int, float)
    with pytest.raises(TypeError, match=r"settings\['bad'\] must hold only numbers.*object"):
        save_checkpoint(path, ChainModel(), epoch=1, settings={"bad": object()})


@pytest.mark.parametrize("epoch", [-2, 2.9, "5", True])
def test_save_checkpoint_takes_only_a_non_negative_int_epoch(tmp_path: Path, epoch: object) -> None:
    with pytest.raises(TypeError, match=f"epoch must be a non-negative int, got {epoch!r}"):
        save_checkpoint(tmp_path / "c.pt", ChainModel(), epoch=epoch)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_recording_after_a_resume_without_rows_marks_the_missing_epochs_nan(
    tmp_path: Path,
) -> None:
    path, (x, t) = tmp_path / "c.pt", _data()
    train_loop(_linear(), x, t, epochs=2, lr=0.05, checkpoint=path)
    h = train_loop(_linear(), x, t, epochs=4, lr=0.05, checkpoint=path, resume=True, record=True)
    ref = train_loop(_linear(), x, t, epochs=4, lr=0.05, record=True)
    for name, rows in h.activations.items():
        assert torch.isnan(rows[:2]).all(), name
        assert torch.equal(rows[2:], ref.activations[name][2:]), name


def test_a_checkpoint_holds_only_the_rows_written_so_far(tmp_path: Path) -> None:
    path, (x, t) = tmp_path / "c.pt", _data()
    torch.empty(10_000, 30, 1).fill_(12345.0)  # leftover memory a buffer's tail could show
    with pytest.raises(ZeroDivisionError):
        train_loop(
            _linear(), x, t, epochs=10_000, lr=0.05, record=True, checkpoint=path,
            callbacks=[lambda e, h: 1 / 0],
        )  # fmt: skip
    saved = torch.load(io.BytesIO(path.read_bytes()[len(MAGIC) + 32 :]), weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["activations"].items()} == {"output": (1, 30, 1)}
    assert path.stat().st_size < 20_000  # not 10,000 epochs of rows


def test_resume_refuses_changed_optimizer_hyperparameters(tmp_path: Path) -> None:
    path, (x, t) = tmp_path / "c.pt", _data()
    first = _linear()
    opt = torch.optim.SGD(first.parameters(), lr=0.05, momentum=0.9)
    train_loop(first, x, t, epochs=2, optimizer=opt, checkpoint=path)
    model = _linear()
    before = params_of(model)
    changed = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.0, weight_decay=0.1)
    with pytest.raises(CheckpointError, match=r"momentum: saved 0\.9, now 0\.0.*weight_decay"):
        train_loop(model, x, t, epochs=4, optimizer=changed, checkpoint=path, resume=True)
    assert_same_bits(params_of(model), before)


def test_load_checkpoint_checks_everything_before_changing_anything(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    model = ChainModel(1.0, 2.0, 3.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    save_checkpoint(path, ChainModel(5.0, 6.0, 7.0), epoch=1, optimizer=opt)
    before = params_of(model)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None, got 123"):
        load_checkpoint(path, model, optimizer=opt, generator=123)  # type: ignore[arg-type]
    _rewrite(path, lambda d: d.update(generator=torch.zeros(7, dtype=torch.uint8)))
    with pytest.raises(CheckpointError, match="bad generator state"):
        load_checkpoint(path, model, optimizer=opt, restore_rng=True)
    _rewrite(path, lambda d: d.pop("losses"))
    with pytest.raises(CheckpointError, match=r"lacks \['losses'\]"):
        load_checkpoint(path, model, optimizer=opt)
    assert_same_bits(params_of(model), before)
    assert all(not s for s in opt.state.values())


def test_checkpoint_path_problems_are_found_before_the_first_epoch(tmp_path: Path) -> None:
    x, t = _data()
    calls: list[int] = []
    for bad, why in [
        (tmp_path / "no" / "run.pt", "folder must exist"),
        (tmp_path, "must be a file path, got the directory"),
    ]:
        model = _linear()
        before = params_of(model)
        with pytest.raises(ValueError, match=why):
            train_loop(
                model,
                x,
                t,
                epochs=2,
                lr=0.05,
                checkpoint=bad,
                callbacks=[lambda e, h: calls.append(e)],
            )
        assert_same_bits(params_of(model), before)
    assert calls == []


def test_resume_on_other_data_of_the_same_length_is_refused(tmp_path: Path) -> None:
    path, (x, t) = tmp_path / "c.pt", _data()
    train_loop(_linear(), x, t, epochs=2, lr=0.05, checkpoint=path)
    with pytest.raises(CheckpointError, match=r"data: saved .*sha256"):
        train_loop(_linear(), x + 1, t, epochs=4, lr=0.05, checkpoint=path, resume=True)


def test_a_file_that_would_inflate_is_refused_before_loading(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (8 << 20))  # 8 MiB of zeros in a few KiB
    body = buf.getvalue()
    path = tmp_path / "bomb.pt"
    path.write_bytes(MAGIC + hashlib.sha256(body).digest() + body)
    assert path.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match=r"declares 8388608 bytes .* was not loaded"):
        load_checkpoint(path, ChainModel())


def test_a_symlinked_checkpoint_is_written_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "run.pt"
    link.symlink_to(real / "run.pt")
    save_checkpoint(link, ChainModel(w1=1.5), epoch=1)
    save_checkpoint(link, ChainModel(w1=2.5), epoch=2)
    assert link.is_symlink()
    assert load_checkpoint(real / "run.pt", ChainModel()).epoch == 2


def test_inputs_that_require_grad_collect_no_grad(tmp_path: Path) -> None:
    x, t = _data()
    x.requires_grad_(True)
    t.requires_grad_(True)
    train_loop(_linear(), x, t, epochs=2, lr=0.05, batch_size=7)
    assert x.grad is None and t.grad is None


def test_record_refuses_statistics_that_would_not_fit_before_training() -> None:
    x = torch.randn(64, 1000)
    model = torch.nn.Linear(1000, 1000)
    before = params_of(model)
    # 1000 units * 3 float64 * 200k epochs = 4.8 GB of statistics, over the 4 GiB cap
    with pytest.raises(ValueError, match=r"record would keep .* MiB of per-unit statistics"):
        train_loop(model, x, torch.zeros(64, 1000), epochs=200_000, lr=0.1, record=True)
    assert_same_bits(params_of(model), before)


def test_a_checkpoint_is_about_the_size_of_its_tensors(tmp_path: Path) -> None:
    model = torch.nn.Linear(1024, 1024)  # 4 MiB of weights
    save_checkpoint(tmp_path / "c.pt", model, epoch=1, history=TrainHistory([1.0]))
    tensors = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    assert (tmp_path / "c.pt").stat().st_size <= 1.1 * tensors


def test_version_1_checkpoints_still_load(tmp_path: Path) -> None:
    # The format before the checksum header: a torch.save'd dict wrapping the bytes.
    (tmp_path / "old.pt").write_bytes(format_1_file()[0])
    model = ChainModel()
    assert load_checkpoint(tmp_path / "old.pt", model).epoch == 4
    assert model.w2.item() == 2.5
    assert os.path.exists(tmp_path / "old.pt")


def test_threads_of_one_process_saving_to_one_path_keep_their_own_files(tmp_path: Path) -> None:
    import threading

    path, errors = tmp_path / "run.pt", []

    def writer(k: int) -> None:
        try:
            for i in range(40):
                save_checkpoint(path, ChainModel(w1=float(k)), epoch=i)
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert load_checkpoint(path, ChainModel()).epoch == 39


def test_a_fresh_temporary_file_of_another_host_is_left_alone(tmp_path: Path) -> None:
    # A writer on another machine (a shared folder) cannot be asked whether it lives:
    # its file is removed only once it is a day old.
    other = tmp_path / ".run.pt.otherhost-1.abcd1234.tmp"
    other.write_bytes(b"half a checkpoint")
    old = tmp_path / ".run.pt.otherhost-2.efgh5678.tmp"
    old.write_bytes(b"left by a writer long gone")
    os.utime(old, (0, 0))
    save_checkpoint(tmp_path / "run.pt", ChainModel(), epoch=1)
    assert other.exists()
    assert not old.exists()
