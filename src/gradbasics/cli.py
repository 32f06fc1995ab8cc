"""Command-line interface: ``gradbasics demo``, the notes' walk-through.

torch is imported only when a command runs, so ``gradbasics --version`` and ``--help``
answer at once, and a missing torch is one line that says how to install it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gradbasics._version import __version__

if TYPE_CHECKING:
    import torch

__all__ = ["main"]


def _chain_gradients(device: torch.device) -> None:
    import torch

    from gradbasics.models import ChainModel

    print("1. The chain x -> w1*x -> relu(w2*.) -> w3*. at x=2, target=1, w=(3, 4, 5)")
    model = ChainModel(device=device)
    x = torch.tensor([2.0], device=device)
    out = model(x)
    loss = ((out - 1.0) ** 2).sum()
    loss.backward()
    # Closed form with an active ReLU: dL/dw_k = 2 (y - t) * dy/dw_k.
    w1, w2, w3, y = 3.0, 4.0, 5.0, 5.0 * 4.0 * 3.0 * 2.0
    by_hand = {"w1": 2 * (y - 1) * w3 * w2 * 2.0, "w2": 2 * (y - 1) * w3 * w1 * 2.0}
    by_hand["w3"] = 2 * (y - 1) * w2 * w1 * 2.0
    print(f"   output y = {out.item():g}, loss = (y - 1)^2 = {loss.item():g}")
    for name, p in model.named_parameters():
        assert p.grad is not None
        print(f"   dL/d{name} = {p.grad.item():g}   (by hand: {by_hand[name]:g})")


def _lr_regimes(device: torch.device) -> None:
    import warnings

    import torch

    from gradbasics.history import DivergenceError
    from gradbasics.models import ChainModel
    from gradbasics.training import train_loop
    from gradbasics.unitstats import DeadUnitsWarning

    print("\n2. Learning-rate regimes: 100 epochs of the chain at x=2, target=1")
    x = torch.tensor([2.0], device=device)
    t = torch.tensor([1.0], device=device)
    for lr in (1e-2, 1e-3, 1e-4):
        model = ChainModel(device=device)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DeadUnitsWarning)
                history = train_loop(model, x, t, epochs=100, lr=lr, record=["hidden2"])
        except DivergenceError as err:
            seen = " -> ".join(f"{v:.4g}" for v in err.history.losses)
            print(
                f"   lr={lr:g}: diverged in epoch {err.epoch + 1} of 100 "
                f"(loss {seen} -> {err.loss}); "
                "DivergenceError raised, parameters kept their last finite values"
            )
            continue
        pre = (model.w2 * model.w1 * x).item()
        if pre <= 0:
            print(
                f"   lr={lr:g}: the ReLU died (w2*w1*x = {pre:.4g} <= 0), so w1 and w2 get "
                f"zero gradient and the loss is stuck at {history.losses[-1]:g} = target^2"
            )
            for warning in caught:
                print(f"   DeadUnitsWarning: {warning.message}")
        else:
            w = ", ".join(f"{p.item():.4f}" for p in model.parameters())
            print(f"   lr={lr:g}: converged, loss {history.losses[-1]:.3g} at epoch 100, w=({w})")


def _task2(device: torch.device, out: Path | None) -> None:
    import torch

    from gradbasics.models import FrozenFirstModel
    from gradbasics.training import train_loop

    print("\n3. Task 2: only w2 trains (x=1, target=2, lr=0.01, 20 epochs)")
    model = FrozenFirstModel(w1=1.0, w2=1.0, device=device)
    history = train_loop(
        model,
        torch.tensor([1.0], device=device),
        torch.tensor([2.0], device=device),
        epochs=20,
        lr=0.01,
        record=True,
    )
    print(f"   w1 = {model.w1.item():g} (a buffer: never trained)")
    print(f"   w2 = {model.w2.item():.6f}   (closed form 2 - 0.98**20 = {2 - 0.98**20:.6f})")
    print(f"   loss: epoch 1 {history.losses[0]:.4f}, epoch 20 {history.losses[-1]:.4f}")
    if out is None:
        print("   pass --out PATH.png to write the activation chart")
        return
    try:
        from gradbasics.plotting import plot_activations

        fig = plot_activations(history, title="Task 2: only w2 trains (w1 fixed at 1.0)")
    except ImportError as exc:
        print(f"   chart skipped: {exc}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"   activation chart written to {out}")


def demo(device: str = "cpu", out: Path | None = None) -> None:
    """Run the notes' walk-through on ``device``, writing the task-2 chart to ``out``."""
    import torch

    dev = torch.device(device)
    print(f"gradbasics {__version__} demo on {dev}\n")
    _chain_gradients(dev)
    _lr_regimes(dev)
    _task2(dev, out)


_DESCRIPTION = """\
gradbasics: reference PyTorch training primitives.

The demo walks through the learner's notes: the chain's gradients by hand and by
autograd, three learning rates (one diverges, one kills the ReLU, one converges), and
training only w2, with its activation chart."""

_EXAMPLES = """\
examples:
  gradbasics demo
  gradbasics demo --device cuda --out task2.png
  python -m gradbasics --version"""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="gradbasics",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gradbasics {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="walk through the learner's notes")
    run.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default: cpu")
    run.add_argument("--out", type=Path, default=None, help="PNG path for the task-2 chart")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print(
            "gradbasics needs PyTorch, which is not installed: pip install 'torch>=2.11'",
            file=sys.stderr,
        )
        return 1
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was given, but no CUDA device is available")
    demo(args.device, args.out)
    return 0
