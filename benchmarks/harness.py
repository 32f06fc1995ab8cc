"""Timing harness: same process, warm-up, interleaved rounds, medians and ratios."""

from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    """One benchmark case: median seconds per unit of work and the median ratio."""

    case: str
    ours: float
    baseline: float
    ratio: float
    ratio_q1: float
    ratio_q3: float
    target: float
    unit: str

    @property
    def passed(self) -> bool:
        """Whether the median ratio meets the target (lower is better)."""
        return self.ratio <= self.target


def _time(fn: Callable[[], object], units: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / units


def compare(
    case: str,
    ours: Callable[[], object],
    baseline: Callable[[], object],
    *,
    target: float,
    units: int = 1,
    rounds: int = 21,
    warmup: int = 3,
    unit: str = "step",
) -> Result:
    """Time ``ours`` against ``baseline``, interleaved, alternating which runs first.

    Each call does ``units`` units of work; times are per unit. The ratio is taken per
    round (ours / baseline), so slow drifts of the machine cancel out, and its median and
    quartiles are reported.
    """
    for _ in range(warmup):
        ours()
        baseline()
    gc.collect()
    gc.disable()
    try:
        t_ours: list[float] = []
        t_base: list[float] = []
        for r in range(rounds):
            if r % 2:
                t_base.append(_time(baseline, units))
                t_ours.append(_time(ours, units))
            else:
                t_ours.append(_time(ours, units))
                t_base.append(_time(baseline, units))
    finally:
        gc.enable()
    ratios = sorted(a / b for a, b in zip(t_ours, t_base, strict=True))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return Result(
        case=case,
        ours=statistics.median(t_ours),
        baseline=statistics.median(t_base),
        ratio=statistics.median(ratios),
        ratio_q1=q[0],
        ratio_q3=q[2],
        target=target,
        unit=unit,
    )


def fmt_time(seconds: float) -> str:
    """Format a duration with a sensible unit."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def environment(threads: int) -> dict[str, object]:
    """Where and when a run was measured: the metadata every results file starts with."""
    import torch

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
    }
