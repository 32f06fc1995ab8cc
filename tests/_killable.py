"""A training run that a test kills with SIGKILL and resumes: ``python _killable.py MODE CKPT OUT``.

The same function runs uninterrupted in the test process as the oracle.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch

from gradbasics import TrainHistory, UpdateRule, manual_sgd_step, rules, train_loop

EPOCHS = 40


def run(
    mode: str, checkpoint: str | None, on_epoch: Callable[[int, TrainHistory], object] | None
) -> tuple[torch.nn.Module, TrainHistory]:
    """Train a Linear(4, 1) on mini-batches; ``mode``: lr, momentum, adam or rule-adam."""
    torch.set_num_threads(1)
    x = torch.randn(48, 4, generator=torch.Generator().manual_seed(0))
    t = x.sum(1, keepdim=True) + 0.5
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 1)
    lr: float | None = None
    opt: torch.optim.Optimizer | None = None
    update: UpdateRule = manual_sgd_step
    if mode == "lr":
        lr = 0.05
    elif mode == "rule-adam":
        lr, update = 0.01, rules.Adam()
    elif mode == "momentum":
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
    history = train_loop(
        model,
        x,
        t,
        epochs=EPOCHS,
        lr=lr,
        optimizer=opt,
        update=update,
        batch_size=5,
        generator=torch.Generator().manual_seed(2),
        record=True,
        checkpoint=checkpoint,
        resume=checkpoint is not None,
        callbacks=[on_epoch] if on_epoch else [],
    )
    return model, history


def _main() -> None:
    mode, checkpoint, out = sys.argv[1:4]
    first = True

    def pace(epoch: int, history: TrainHistory) -> None:
        nonlocal first
        if first:
            print("running", flush=True)
            first = False
        time.sleep(0.01)  # room for the test to kill us at a random moment

    model, history = run(mode, checkpoint, pace)
    torch.save({"state": model.state_dict(), "losses": history.losses}, out)
    print("done", flush=True)


if __name__ == "__main__":
    _main()
