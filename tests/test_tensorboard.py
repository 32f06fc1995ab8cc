"""TensorBoard logs read back equal to the history; a resume never writes a step twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradbasics import TrainHistory, train_loop
from gradbasics.callbacks import TensorBoardLogger

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)


def _scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _f32(values: list[float]) -> list[float]:
    return [float(np.float32(v)) for v in values]  # TensorBoard keeps float32


def _data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g)
    vx = torch.randn(9, 3, generator=g)
    return x, x.sum(1, keepdim=True), vx, vx.sum(1, keepdim=True)


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def test_the_events_read_back_equal_the_history(tmp_path: Path) -> None:
    x, t, vx, vt = _data()
    seen: list[float] = []

    def keep(epoch: int, history: TrainHistory) -> None:
        seen.append(epoch)

    mae = lambda out, target: (out - target).abs().mean()  # noqa: E731
    h = train_loop(_model(), x, t, epochs=4, lr=0.1, batch_size=8, val=(vx, vt),
                   metrics={"mae": mae},
                   callbacks=[TensorBoardLogger(tmp_path, every_step=True), keep])  # fmt: skip
    epochs = list(range(4))
    assert _scalars(tmp_path, "loss") == list(zip(epochs, _f32(h.losses), strict=True))
    assert _scalars(tmp_path, "val_loss") == list(zip(epochs, _f32(h.val_losses), strict=True))
    assert _scalars(tmp_path, "mae") == list(zip(epochs, _f32(h.metrics["mae"]), strict=True))
    assert _scalars(tmp_path, "lr") == list(zip(epochs, _f32(h.lrs), strict=True))
    steps = _scalars(tmp_path / "steps", "batch/loss")
    assert [s for s, _ in steps] == list(range(4 * 4))  # 30 rows in batches of 8: 4 a epoch
    # an epoch's loss is the row-weighted mean of its batch losses
    first = [v for _, v in steps[:4]]
    assert float(np.dot(first, [8, 8, 8, 6]) / 30) == pytest.approx(h.losses[0], rel=1e-5)


def test_a_resume_purges_what_was_written_after_the_checkpoint(tmp_path: Path) -> None:
    x, t, *_ = _data()
    logs, ckpt = tmp_path / "tb", tmp_path / "c.pt"

    def run(epochs: int, resume: bool, every: int = 1) -> TrainHistory:
        return train_loop(_model(), x, t, epochs=epochs, lr=0.1, batch_size=8, checkpoint=ckpt,
                          checkpoint_every=every, resume=resume,
                          generator=torch.Generator().manual_seed(1),
                          callbacks=[TensorBoardLogger(logs, every_step=True)])  # fmt: skip

    run(5, False, every=3)  # the checkpoint holds 3 epochs; the events 5
    h = run(6, True)
    assert [s for s, _ in _scalars(logs, "loss")] == list(range(6))
    assert [v for _, v in _scalars(logs, "loss")] == _f32(h.losses)
    assert [s for s, _ in _scalars(logs / "steps", "batch/loss")] == list(range(6 * 4))


def test_bad_log_dirs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="log_dir must be a folder, got the file"):
        TensorBoardLogger(tmp_path / "file")
    with pytest.raises(ValueError, match="log_dir must be in a writable folder"):
        TensorBoardLogger(tmp_path / "no" / "such")
    with pytest.raises(TypeError, match=r"every_step must be a bool, got 1 \(int\)"):
        TensorBoardLogger(tmp_path, every_step=1)  # type: ignore[arg-type]
