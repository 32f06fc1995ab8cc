"""Checkpoint files under a third red-team pass: exports, odd folders, bit flips, versions.

Each test reproduces one fault found by trying to break the checkpoint files on purpose:
it failed before the fix it guards.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import torch

from gradbasics import (
    ChainModel,
    CheckpointError,
    export_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from gradbasics._ckptio import MAGIC, _host
from gradbasics.rules import Adam
from helpers import format_1_file, reseal


def _saved(folder: Path, name: str = "run.pt", w1: float = 1.5) -> Path:
    path = folder / name
    save_checkpoint(path, ChainModel(w1=w1), epoch=2)
    return path


def _temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# 8. export_state_dict onto its own checkpoint


@pytest.mark.parametrize("how", ["same path", "symlink to it", "hard link to it"])
def test_exporting_a_checkpoint_onto_itself_is_refused_before_writing(
    tmp_path: Path, how: str
) -> None:
    path = _saved(tmp_path)
    good = path.read_bytes()
    out = path
    if how == "symlink to it":
        out = tmp_path / "weights.pt"
        out.symlink_to(path)
    elif how == "hard link to it":
        out = tmp_path / "weights.pt"
        os.link(path, out)
    with pytest.raises(ValueError, match=r"^out must be another file than checkpoint") as info:
        export_state_dict(path, out)
    assert str(out) in str(info.value) and str(path) in str(info.value)
    assert str(info.value).endswith(".")
    assert path.read_bytes() == good
    assert load_checkpoint(path, ChainModel()).epoch == 2
    assert _temporary_files(tmp_path) == []


# 9. a folder that can be written but not read (mode 0o300)


def test_a_writable_but_unreadable_folder_still_saves(tmp_path: Path) -> None:
    folder = tmp_path / "wx"
    folder.mkdir()
    folder.chmod(0o300)
    try:
        if os.access(folder, os.R_OK):
            pytest.skip("running as root (or on a system where chmod 0o300 keeps it readable)")
        path = _saved(folder, w1=2.5)
        model = ChainModel()
        assert load_checkpoint(path, model).epoch == 2  # a folder needs only x to be read
        assert model.w1.item() == 2.5
    finally:
        folder.chmod(stat.S_IRWXU)
    assert sorted(p.name for p in folder.iterdir()) == ["run.pt"]


def test_a_folder_that_cannot_be_opened_to_sync_still_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a folder of mode 0o300 does to a non-root writer, whoever runs the tests.
    real_open = os.open

    def no_read(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & getattr(os, "O_DIRECTORY", 0):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_read)
    path = _saved(tmp_path, w1=2.5)
    monkeypatch.undo()
    model = ChainModel()
    assert load_checkpoint(path, model).epoch == 2
    assert model.w1.item() == 2.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


# 10. bit flips in a format-1 file's wrapper


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns of odd pickle protocols
def test_every_flipped_byte_of_a_format_1_wrapper_is_a_checkpoint_error(tmp_path: Path) -> None:
    raw, blob = format_1_file()
    stored = blob.decode("latin-1").encode("utf-8")  # how pickle protocol 2 keeps bytes
    start = raw.find(stored)
    assert start > 0
    wrapper = [i for i in range(len(raw)) if not start <= i < start + len(stored)]
    path, wrong = tmp_path / "old.pt", []
    for i in wrapper:
        damaged = bytearray(raw)
        damaged[i] ^= 0x01 if i % 4 else 0x80
        path.write_bytes(bytes(damaged))
        try:
            load_checkpoint(path, ChainModel())
        except CheckpointError:
            pass
        except Exception as exc:  # the failure this test looks for
            wrong.append(f"byte {i}: {type(exc).__name__}: {exc}")
    assert wrong == []


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_the_format_1_faults_the_red_team_found_are_checkpoint_errors(
    tmp_path: Path, mask: int
) -> None:
    # A flip of the very first byte (the pickle's protocol opcode) raised IndexError.
    raw, _ = format_1_file()
    path, unnamed = tmp_path / "old.pt", []
    for i in range(64):
        damaged = bytearray(raw)
        damaged[i] ^= mask
        path.write_bytes(bytes(damaged))
        try:
            load_checkpoint(path, ChainModel())
        except CheckpointError as exc:  # any other error fails the test
            if str(path) not in str(exc):
                unnamed.append(f"byte {i}: {exc}")
    assert unnamed == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_flipped_byte_of_a_format_2_header_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    raw = path.read_bytes()
    for i in range(len(MAGIC) + 32):
        for mask in (0x01, 0x80):
            damaged = bytearray(raw)
            damaged[i] ^= mask
            path.write_bytes(bytes(damaged))
            with pytest.raises(CheckpointError, match=str(path).replace("\\", "\\\\")):
                load_checkpoint(path, ChainModel())


# 11. stray temporary files: a huge PID, glob characters in the name


def test_a_stray_temporary_file_with_a_huge_pid_breaks_no_save(tmp_path: Path) -> None:
    stray = tmp_path / f".run.pt.{_host()}-{'9' * 20}.abcd1234.tmp"
    stray.write_bytes(b"left by no process that can exist")
    for epoch in (1, 2):
        save_checkpoint(tmp_path / "run.pt", ChainModel(), epoch=epoch)
    assert load_checkpoint(tmp_path / "run.pt", ChainModel()).epoch == 2
    assert stray.exists()  # no writer to ask: like another host's, only age removes it
    os.utime(stray, (0, 0))
    save_checkpoint(tmp_path / "run.pt", ChainModel(), epoch=3)
    assert not stray.exists()


@pytest.mark.parametrize("name", ["run[1].pt", "run*.pt", "run?.pt", "run[!x].pt"])
def test_dead_writers_files_are_removed_whatever_the_name(tmp_path: Path, name: str) -> None:
    old = tmp_path / f".{name}.otherhost-2.efgh5678.tmp"
    old.write_bytes(b"left by a writer long gone")
    os.utime(old, (0, 0))
    fresh = tmp_path / f".{name}.otherhost-1.abcd1234.tmp"
    fresh.write_bytes(b"half a checkpoint of a live writer elsewhere")
    neighbour = tmp_path / ".run1.pt.otherhost-3.ijkl9012.tmp"  # what `run[1].pt` globs
    neighbour.write_bytes(b"another checkpoint's")
    os.utime(neighbour, (0, 0))
    save_checkpoint(tmp_path / name, ChainModel(), epoch=1)
    assert not old.exists()
    assert fresh.exists() and neighbour.exists()
    assert load_checkpoint(tmp_path / name, ChainModel()).epoch == 1


# 12. a file of a newer format


def test_a_newer_payload_format_names_both_versions(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    reseal(path, lambda data: data.update(format=99, gradbasics="9.0", future={"x": 1}))
    pattern = (
        r"was written by a newer gradbasics \(9\.0, checkpoint format 99\); this "
        r"gradbasics .* reads checkpoint formats up to 3\."
    )
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path, ChainModel())
    assert str(path) in str(info.value)
    assert "truncated" not in str(info.value)
    with pytest.raises(CheckpointError, match=pattern):
        export_state_dict(path, tmp_path / "weights.pt")
    assert not (tmp_path / "weights.pt").exists()


def test_a_bad_payload_format_entry_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    reseal(path, lambda data: data.update(format="3"))
    with pytest.raises(CheckpointError, match=r"holds a bad format entry '3'"):
        load_checkpoint(path, ChainModel())


def test_a_newer_file_header_names_its_version(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    raw = path.read_bytes()
    newer = MAGIC[:-1] + bytes([MAGIC[-1] + 1])
    path.write_bytes(newer + raw[len(MAGIC) :])
    with pytest.raises(
        CheckpointError,
        match=r"was written by a newer gradbasics \(file header version 3\); this "
        r"gradbasics .* reads header versions up to 2\.",
    ):
        load_checkpoint(path, ChainModel())
    body = bytearray(raw[len(MAGIC) + 32 :])
    body[-1] ^= 0x01  # and one whose checksum fails: damaged, or of a newer layout
    path.write_bytes(newer + raw[len(MAGIC) : len(MAGIC) + 32] + bytes(body))
    with pytest.raises(CheckpointError, match=r"truncated or corrupted, or was written by a"):
        load_checkpoint(path, ChainModel())


# export_state_dict's writes: as atomic, fsynced and named as save_checkpoint's


def test_export_onto_a_full_disk_names_the_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, out = _saved(tmp_path), tmp_path / "weights.pt"
    out.write_bytes(b"the previous export")

    def full(fd: int) -> None:  # where a full disk surfaces on delayed-allocation filesystems
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"Cannot write the weights file .*weights\.pt: no space"):
        export_state_dict(path, out)
    assert out.read_bytes() == b"the previous export"
    assert _temporary_files(tmp_path) == []


def test_export_into_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    path, out = _saved(tmp_path), tmp_path / "nowhere" / "weights.pt"
    with pytest.raises(FileNotFoundError, match=r"Cannot write the weights file") as info:
        export_state_dict(path, out)
    assert f"its folder {tmp_path / 'nowhere'} does not exist" in str(info.value)
    assert info.value.filename == str(out)


def test_export_onto_a_symlink_writes_through_it(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "weights.pt"
    link.symlink_to(real / "weights.pt")
    export_state_dict(path, link)
    assert link.is_symlink()
    assert torch.load(real / "weights.pt", weights_only=True)["w1"].item() == 1.5


def test_export_is_fsynced_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, out = _saved(tmp_path), tmp_path / "weights.pt"
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    export_state_dict(path, out)
    assert synced  # the file (and its folder, where the system allows it)
    assert torch.load(out, weights_only=True)["w1"].item() == 1.5
    assert _temporary_files(tmp_path) == []


# Checkpoint.ignored


def test_ignored_lists_an_update_rule_state_left_unrestored(tmp_path: Path) -> None:
    model = ChainModel()
    rule = Adam()
    x = torch.randn(4, 1)
    (model(x) ** 2).mean().backward()
    rule([p for p in model.parameters()], 0.01)
    path = tmp_path / "run.pt"
    save_checkpoint(path, model, epoch=1, rule=rule)
    assert load_checkpoint(path, ChainModel()).ignored == ("rule",)
    assert load_checkpoint(path, ChainModel(), rule=Adam()).ignored == ()
