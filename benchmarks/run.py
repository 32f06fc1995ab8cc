"""Run the gradbasics benchmarks and print a table; also write the results as JSON.

Usage: python benchmarks/run.py [--tiny] [--only SUBSTRING] [--json PATH] [--threads N]
                                [--device cpu|cuda]

With ``--device cuda`` the GPU cases (device and graph engines against the minimal CUDA
hand loop) run beside the CPU ones.

Each case times a gradbasics path against its hand-written baseline in the same process,
interleaved over repeated rounds after a warm-up; the table gives medians per unit of
work, the median of the per-round ratios (ours / baseline, lower is better) with its
quartiles as the noise, the target and pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import (
    INFO,
    Case,
    Sizes,
    chain_cases,
    epoch_cases,
    import_time,
    rules_cases,
    update_case,
)
from harness import Result, compare, environment, fmt_time
from practice_cases import practice_cases


def main() -> int:
    """Run the cases and report; exit 1 when a target is missed (unless --tiny)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="smoke run with tiny sizes")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--json", default="benchmarks/results.json", help="where to write JSON")
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--threads", type=int, default=cores, help=f"torch threads (default: the cores, {cores})"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="add GPU cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = Sizes.tiny() if args.tiny else Sizes()
    results: list[Result] = []
    builds: list[Callable[[Sizes], list[Case]]] = [
        chain_cases,
        update_case,
        rules_cases,
        epoch_cases,
        practice_cases,
    ]
    if args.device == "cuda":
        from gpu_cases import chain_gpu_cases, epoch_gpu_cases

        steps, rows = (20, 4000) if args.tiny else (2000, 100_000)
        builds.append(lambda s: chain_gpu_cases(steps, s.rounds // 2 + 1))
        builds.append(lambda s: epoch_gpu_cases(rows, 1000, s.epoch_rounds))
    for build in builds:
        for name, ours, base, target, units, unit, rounds in build(sizes):
            if args.only in name:
                res = compare(
                    name, ours, base, target=target, units=units, unit=unit, rounds=rounds
                )
                results.append(res)
                print(f"  {name}: ratio {res.ratio:.3f}", file=sys.stderr, flush=True)
    imp = import_time(1 if args.tiny else 9) if "import" in args.only or not args.only else None

    cols = ("case", "gradbasics", "baseline", "ratio", "(q1-q3)", "target")
    header = (
        f"{cols[0]:46} {cols[1]:>12} {cols[2]:>12} {cols[3]:>7} {cols[4]:>13} {cols[5]:>7}  result"
    )
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu}")
    print(header)
    print("-" * len(header))
    for r in results:
        noise = f"{r.ratio_q1:.3f}-{r.ratio_q3:.3f}"
        target = "-" if r.target == INFO else f"<= {r.target:.2f}"
        verdict = "info" if r.target == INFO else ("pass" if r.passed else "FAIL")
        print(
            f"{r.case:46} {fmt_time(r.ours) + '/' + r.unit:>12} {fmt_time(r.baseline):>12} "
            f"{r.ratio:7.3f} {noise:>13} {target:>7}  {verdict}"
        )
    ok = all(r.passed for r in results)
    if imp is not None:
        imp_ok = imp < 0.050
        ok = ok and imp_ok
        name, verdict, blank = "import gradbasics after torch", "pass" if imp_ok else "FAIL", ""
        print(
            f"{name:46} {fmt_time(imp):>12} {blank:>12} {blank:>7} {blank:>13} "
            f"{'< 50 ms':>7}  {verdict}"
        )
    payload = {
        **environment(torch.get_num_threads()),
        "command": " ".join(["benchmarks/run.py", *sys.argv[1:]]),
        "tiny": args.tiny,
        "only": args.only or None,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "import_seconds": imp,
        "cases": [
            {**r.__dict__, "target": None if r.target == INFO else r.target, "passed": r.passed}
            for r in results
        ],
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(payload, indent=2))
    print(f"results written to {args.json}")
    return 0 if ok or args.tiny else 1


if __name__ == "__main__":
    raise SystemExit(main())
