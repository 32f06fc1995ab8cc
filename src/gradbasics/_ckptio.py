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

__all__: list[str] = []

MAGIC = b"GBCKPT\x00\x02"  # format version 2
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
    except PermissionError:
        return False
    return False


def _fail(exc: OSError, path: Path) -> OSError:
    """The same error, naming the user's path instead of a temporary file."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device; the previous checkpoint is intact"
    return type(exc)(exc.errno or 0, f"Cannot write the checkpoint {path}: {reason}", str(path))


def write_atomic(blob: memoryview | bytes, path: Path) -> None:
    """Write ``MAGIC``, the checksum and ``blob`` to ``path`` so a kill leaves old or new.

    A temporary file of this writer's own in the same folder, flushed and fsynced, then
    ``os.replace``; a symbolic link is written through (its target is replaced, the link
    stays). Temporary files of writers that died are removed.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_tmp_prefix(target), suffix=".tmp")
    except OSError as exc:
        raise _fail(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(hashlib.sha256(blob).digest())
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)  # atomic on POSIX and Windows
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _fail(exc, path) from exc
        raise
    now = time.time()
    for stale in folder.glob(f".{target.name}.*.tmp"):
        if _is_stale(stale, target.name, now):
            stale.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def serialise(payload: dict[str, Any]) -> memoryview:
    """``torch.save`` into memory, without a second copy of the bytes."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getbuffer()


def _check_zip(blob: bytes | memoryview, path: Path) -> None:
    """Refuse a zip that inflates: torch.save stores its entries uncompressed."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(blob)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupted: {exc}") from exc
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupted: {exc}") from exc


def read(path: Path) -> dict[str, Any]:
    """Read and verify the payload of the checkpoint at ``path`` (either format)."""
    raw = path.read_bytes()
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
    return data
