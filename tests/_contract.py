"""The resume contract's runs: every feature trained k epochs, killed, resumed to N.

``python _contract.py OUTDIR`` forks, for each feature, a child that trains toward N
epochs and kills itself with SIGKILL in the middle of epoch k + 1 (after the checkpoint
of epoch k), a child that resumes from that file to N, and a child that trains N epochs
uninterrupted (the oracle). Each surviving child writes what the run ended with. The
parent warms torch up once (one thread, so no thread pool crosses a fork); every child
seeds what it draws from.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradbasics import EarlyStopping, TrainHistory, rules, train_loop
from gradbasics.callbacks import BestCheckpoint, Callback, CSVLogger, Step, TensorBoardLogger

EPOCHS, KILL_AT = 7, 3
FEATURES = ("plain", "rule", "validation", "train_metrics", "early_stopping", "steplr",
            "onecycle", "plateau", "callable", "clip", "record", "progress", "user", "best",
            "csv", "accumulate", "fp16", "tensorboard")  # fmt: skip
ROWS, BATCH = 48, 5


class LossTrend(Callback):
    """A user-written stopper with state: stop after ``patience`` epochs above the EMA."""

    def __init__(self, *, beta: float = 0.5, patience: int = 50) -> None:
        self.beta, self.patience = beta, patience
        self.ema: float | None = None
        self.worse = 0

    def settings(self) -> dict[str, Any]:
        return {"beta": self.beta, "patience": self.patience}

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "worse": self.worse}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema, self.worse = state["ema"], state["worse"]

    def on_train_begin(self) -> None:
        self.ema, self.worse = None, 0

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> bool:
        loss = history.losses[-1]
        self.worse = self.worse + 1 if self.ema is not None and loss > self.ema else 0
        self.ema = loss if self.ema is None else self.beta * self.ema + (1 - self.beta) * loss
        return self.worse >= self.patience


class _Kill(Callback):
    """Kill this process in the middle of epoch ``KILL_AT`` (0-based): no clean exit."""

    def on_after_update(self, step: Step) -> None:
        if self.loop.epoch == KILL_AT and step.batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)


def data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, 4, generator=g)
    t = x.sum(1, keepdim=True) + 0.5
    vx = torch.randn(16, 4, generator=g)
    return x, t, vx, vx.sum(1, keepdim=True) + 0.5


def model() -> nn.Module:
    torch.manual_seed(1)  # dropout draws from the global RNG: resume must restore it
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))


def mae(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (out - t).abs().mean()


def features(
    m: nn.Module, vx: torch.Tensor, vt: torch.Tensor, files: Path = Path("/tmp/contract")
) -> dict[str, dict[str, Any]]:
    """Each feature's train_loop keywords; ``files`` starts the names of the files they write."""

    def sgd(momentum: float = 0.9) -> torch.optim.Optimizer:
        return torch.optim.SGD(m.parameters(), lr=0.02, momentum=momentum)

    opt = sgd()
    val = {"val": (vx, vt), "metrics": {"mae": mae}}
    sched = torch.optim.lr_scheduler
    return {
        "plain": {"lr": 0.02},
        "rule": {"lr": 0.01, "update": rules.Adam()},
        "validation": {"lr": 0.02, **val},
        "train_metrics": {"lr": 0.02, **val, "train_metrics": True},
        "early_stopping": {"lr": 0.02, **val, "early_stopping": EarlyStopping(patience=2)},
        "steplr": {"optimizer": opt, "scheduler": sched.StepLR(opt, 2, gamma=0.5)},
        "onecycle": {"optimizer": opt, "scheduler_interval": "batch",
                     "scheduler": sched.OneCycleLR(opt, 0.03, total_steps=EPOCHS * 10)},
        "plateau": {"optimizer": opt, **val,
                    "scheduler": sched.ReduceLROnPlateau(opt, patience=0, factor=0.5)},
        "callable": {"lr": 0.02, "scheduler": lambda e: 0.02 / (1 + e)},
        "clip": {"lr": 0.05, "clip_grad_norm": 0.5},
        "record": {"lr": 0.02, "record": True, "probe": vx[:3]},
        "progress": {"lr": 0.02, "progress": True},
        "user": {"lr": 0.02, "callbacks": [LossTrend(patience=2)]},
        "best": {"lr": 0.02, **val, "callbacks": [BestCheckpoint(f"{files}.best", mode="min")]},
        "csv": {"lr": 0.02, **val, "callbacks": [CSVLogger(f"{files}.csv")]},
        "accumulate": {"lr": 0.05, "accumulate": 3},
        "fp16": {"optimizer": opt, "precision": "fp16"},
        "tensorboard": {"lr": 0.02,
                        "callbacks": [TensorBoardLogger(f"{files}.tb", every_step=True)]},
    }  # fmt: skip


def train(feature: str, checkpoint: Path, *, resume: bool, kill: bool) -> tuple[Any, ...]:
    x, t, vx, vt = data()
    m = model()
    kw = features(m, vx, vt, checkpoint)[feature]
    if kill:
        kw["callbacks"] = [*kw.get("callbacks", []), _Kill()]
    history = train_loop(m, x, t, epochs=EPOCHS, batch_size=BATCH, checkpoint=checkpoint,
                         resume=resume, generator=torch.Generator().manual_seed(2),
                         **kw)  # fmt: skip
    opt, rule = kw.get("optimizer"), kw.get("update")
    return m, history, opt, rule


def _child(feature: str, out: Path, kind: str) -> None:
    torch.set_num_threads(1)
    ckpt = out / f"{feature}-{kind}.pt"
    if kind == "resumed":
        ckpt = out / f"{feature}-killed.pt"
    m, history, opt, rule = train(feature, ckpt, resume=kind == "resumed", kill=kind == "killed")
    torch.save(
        {
            "model": m.state_dict(),
            "optimizer": None if opt is None else opt.state_dict(),
            "rule": None if rule is None else rule.state_dict(),
            "history": {
                k: {n: list(s) for n, s in v.items()} if k == "activation_stats" else v
                for k, v in vars(history).items()
                if k != "stop_requested"
            },
            "rng": torch.get_rng_state(),
        },
        out / f"{feature}-{kind}.out",
    )


def main(out: Path) -> None:
    torch.set_num_threads(1)  # no thread pool to inherit half-made across a fork
    for feature in ("steplr", "validation"):  # torch's lazy set-up once, not in every child
        train(feature, out / "warm-up.pt", resume=False, kill=False)
    (out / "warm-up.pt").unlink()
    for feature in FEATURES:
        for kind in ("killed", "resumed", "whole"):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    _child(feature, out, kind)
                except BaseException as exc:  # a failure is reported by its missing output
                    print(f"{feature} {kind}: {exc!r}", file=sys.stderr)
                    code = 1
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            print(feature, kind, "SIGKILL" if killed else os.waitstatus_to_exitcode(status),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
