"""Checkpoint files on disk: the format, atomic writes and safe reads.

A checkpoint file is a short header, ``MAGIC`` and the SHA-256 of the rest, followed by
the bytes ``torch.save`` wrote for the payload (a zip of tensors and plain values). The
checksum covers every tensor byte: torch's zip reader checks none of them. The file
holds the payload once, so it is about the size of its tensors.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import re
import socket
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from gradbasics._version import __version__

__all__: list[str] = []

MAGIC = b"GBCKPT\x00\x02"  # format version 2
FORMAT = 3
"""The payload's format: 3 adds ``callbacks`` and ``rng`` to format 2."""
_V1_FORMAT = "gradbasics.checkpoint"  # version 1: a torch.save'd dict wrapping the bytes
STALE_SECONDS = 24 * 3600  # a temporary file this old is stale whoever wrote it


class CheckpointError(ValueError):
    """A checkpoint file was refused: unsafe, corrupted, or not for this model or run."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def _tmp_prefix(path: Path) -> str:
    """``.NAME.HOST-PID.``: the writer's own name, so no one mistakes it for stale."""
    return f".{path.name}.{_host()}-{os.getpid()}."


def _is_stale(tmp: Path, name: str, now: float) -> bool:
    """A temporary file of ``name`` whose writer is gone (dead here, or a day old)."""
    m = re.fullmatch(re.escape(f".{name}.") + r"(\w+)-(\d+)\.\w+\.tmp", tmp.name)
    if m is None:  # not ours, or another checkpoint's whose name starts with ours
        return False
    try:
        if now - tmp.stat().st_mtime > STALE_SECONDS:
            return True
    except FileNotFoundError:
        return False
    if m.group(1) != _host():
        return False  # a live writer elsewhere cannot be asked; only age decides
    pid = int(m.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's, or no PID there can be
        return False
    return False


def _remove_stale(folder: Path, name: str) -> None:
    """Remove the temporary files of ``name`` in ``folder`` whose writers are gone.

    The folder is listed, not globbed: a name such as ``run[1].pt`` is no pattern. A
    folder that can be written but not listed (mode 0o300) is left as it is.
    """
    now, prefix = time.time(), f".{name}."
    try:
        with os.scandir(folder) as entries:
            found = [e.name for e in entries if e.name.startswith(prefix)]
    except OSError:
        return
    for tmp in found:
        if _is_stale(folder / tmp, name, now):
            (folder / tmp).unlink(missing_ok=True)


def _sync_folder(folder: Path, path: Path, what: str) -> None:
    """Sync ``folder`` so the rename itself is durable, where the system allows it.

    A folder that cannot be opened for reading (mode 0o300) cannot be synced: the file
    is complete all the same, and the system makes the rename durable in its own time.
    """
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: a file system that syncs no folder
            raise _fail(exc, path, what) from exc
    finally:
        os.close(dir_fd)


def _fail(
    exc: OSError, path: Path, what: str = "checkpoint", folder: Path | None = None
) -> OSError:
    """The same error, naming the user's path instead of a temporary file.

    ``folder``: the folder the temporary file was to be made in, named when it is missing.
    """
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = f"no space left on the device; the previous {what} is intact"
    elif exc.errno == errno.ENOENT and folder is not None and not folder.is_dir():
        reason = f"its folder {folder} does not exist"
    return type(exc)(exc.errno or 0, f"Cannot write the {what} {path}: {reason}.", str(path))


def write_atomic(
    blob: memoryview | bytes, path: Path, *, sealed: bool = True, what: str = "checkpoint"
) -> None:
    """Write ``MAGIC``, the checksum and ``blob`` to ``path`` so a kill leaves old or new.

    A temporary file of this writer's own in the same folder, flushed and fsynced, then
    ``os.replace``; a symbolic link is written through (its target is replaced, the link
    stays). Temporary files of writers that died are removed. ``sealed=False`` writes
    ``blob`` alone (a plain ``torch.save`` file); ``what`` names the file in errors.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_tmp_prefix(target), suffix=".tmp")
    except OSError as exc:
        raise _fail(exc, path, what, folder) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            if sealed:
                f.write(MAGIC)
                f.write(hashlib.sha256(blob).digest())
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)  # atomic on POSIX and Windows
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _fail(exc, path, what) from exc
        raise
    _remove_stale(folder, target.name)
    _sync_folder(folder, path, what)


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (the same path, a link to it, a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def serialise(payload: dict[str, Any]) -> memoryview:
    """``torch.save`` into memory, without a second copy of the bytes."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getbuffer()


def _check_zip(blob: bytes | memoryview, path: Path) -> None:
    """Refuse a zip that inflates: torch.save stores its entries uncompressed."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(blob)).infolist()
    except Exception as exc:  # damaged bytes fail in many ways (NotImplementedError, ...)
        raise CheckpointError(f"{path} is truncated or corrupted: {exc!r}") from exc
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
    total = sum(i.file_size for i in infos)
    if packed or total > len(blob):
        raise CheckpointError(
            f"{path} declares {total} bytes of content in a {len(blob)}-byte file "
            f"(compressed entries: {packed[:3]}); torch.save never compresses, so it was "
            "crafted or damaged, and it was not loaded."
        )


def safe_load(blob: bytes | memoryview, path: Path) -> Any:
    """``torch.load(..., weights_only=True)`` of checked bytes, failures told apart."""
    _check_zip(blob, path)
    try:
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0])
        if "GLOBAL" in text:  # the file names a callable to import: it could run code
            raise CheckpointError(
                f"Refused to load {path}: it holds objects other than tensors and plain "
                f"values, and loading it could run code ({detail})"
            ) from exc
        raise CheckpointError(f"{path} is truncated or corrupted ({detail})") from exc
    except Exception as exc:  # damaged bytes fail in many ways (IndexError, LookupError...)
        raise CheckpointError(f"{path} is truncated or corrupted: {exc!r}") from exc


def _newer_header(raw: bytes, path: Path) -> CheckpointError:
    """The error for a header of a version after ``MAGIC``'s: by its checksum, newer or damaged."""
    head, version = len(MAGIC) + 32, raw[len(MAGIC) - 1]
    sound = hashlib.sha256(memoryview(raw)[head:]).digest() == raw[len(MAGIC) : head]
    reads = f"this gradbasics {__version__} reads header versions up to {MAGIC[-1]}."
    if sound:
        return CheckpointError(
            f"{path} was written by a newer gradbasics (file header version {version}); "
            f"{reads} Upgrade gradbasics to load it."
        )
    return CheckpointError(
        f"{path} is truncated or corrupted, or was written by a newer gradbasics (file "
        f"header version {version}); {reads}"
    )


def _check_format(data: dict[str, Any], path: Path) -> None:
    """Refuse a payload of a format after ``FORMAT``, naming both (before its keys)."""
    fmt = data.get("format")
    if fmt is None or (type(fmt) is int and 1 <= fmt <= FORMAT):
        return  # None: formats 1 and 2 named none
    if type(fmt) is not int or fmt < 1:
        raise CheckpointError(f"{path} holds a bad format entry {fmt!r}.")
    saved = data.get("gradbasics")
    by = f"{saved}, " if isinstance(saved, str) else ""
    raise CheckpointError(
        f"{path} was written by a newer gradbasics ({by}checkpoint format {fmt}); this "
        f"gradbasics {__version__} reads checkpoint formats up to {FORMAT}. Upgrade "
        "gradbasics to load it."
    )


def read(path: Path) -> dict[str, Any]:
    """Read and verify the payload of the checkpoint at ``path`` (either format)."""
    raw = path.read_bytes()
    if raw.startswith(MAGIC[:-1]) and len(raw) >= len(MAGIC) and raw[len(MAGIC) - 1] > MAGIC[-1]:
        raise _newer_header(raw, path)
    if raw.startswith(MAGIC):
        head = len(MAGIC) + 32
        body = memoryview(raw)[head:]
        if len(raw) < head or hashlib.sha256(body).digest() != raw[len(MAGIC) : head]:
            raise CheckpointError(
                f"{path} is truncated or corrupted: its SHA-256 checksum does not match."
            )
        data = safe_load(body, path)
    else:
        outer = safe_load(raw, path)
        if not isinstance(outer, dict) or outer.get("format") != _V1_FORMAT:
            raise CheckpointError(f"{path} is not a gradbasics checkpoint.")
        if outer.get("version") != 1:
            raise CheckpointError(
                f"{path} has checkpoint format version {outer.get('version')!r}; "
                "this gradbasics reads versions 1 and 2."
            )
        payload = outer.get("payload")
        if not isinstance(payload, bytes) or (
            hashlib.sha256(payload).hexdigest() != outer.get("sha256")
        ):
            raise CheckpointError(
                f"{path} is truncated or corrupted: its SHA-256 checksum does not match."
            )
        data = safe_load(payload, path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a gradbasics checkpoint.")
    _check_format(data, path)
    return data
