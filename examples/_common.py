"""Shared command line of the examples: ``--device cpu|cuda`` and an optional ``--out``."""

from __future__ import annotations

import argparse

import torch


def parse_args(description: str | None, *, out: str | None = None) -> argparse.Namespace:
    """Parse ``--device`` (and ``--out`` when the example writes a figure)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    if out is not None:
        parser.add_argument("--out", default=out, help=f"figure path (default: {out})")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was given, but no CUDA device is available")
    args.device = torch.device(args.device)
    return args
