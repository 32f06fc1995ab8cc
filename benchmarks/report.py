"""Write the performance page's figures from the results files that ``make bench`` writes.

Usage: python benchmarks/report.py

Reads ``benchmarks/results.json`` (``run.py``) and ``benchmarks/realsize.json``
(``realsize.py``) and writes ``benchmarks/results.rst`` and ``benchmarks/realsize.rst``,
which ``docs/performance.rst`` includes: every figure of the page's tables comes from
there, with the date, machine and versions of the run. ``tests/test_benchmarks.py``
checks that the included files are what these results give, so a figure cannot go stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import fmt_time  # a sibling script's module, not a package

HERE = Path(__file__).resolve().parent
RESULTS, REALSIZE = HERE / "results.json", HERE / "realsize.json"
RESULTS_RST, REALSIZE_RST = HERE / "results.rst", HERE / "realsize.rst"

DO_NOT_EDIT = ".. Written by benchmarks/report.py from benchmarks/{name}: do not edit by hand.\n"


def where(data: Mapping[str, Any]) -> str:
    """One sentence: when, on what and with which versions the results were measured."""
    return (
        f"Measured {data['date']} by ``{data['command']}`` on {data['platform']} "
        f"({data['processor']}, {data['cpus']} CPUs), Python {data['python']}, "
        f"torch {data['torch']}, {data['threads']} torch thread(s)."
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A ``list-table`` of ``header`` and ``rows`` (an empty cell reads ``-``)."""
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in (header, *rows):
        cells = [c if c else "\\-" for c in row]
        out.append(f"   * - {cells[0]}")
        out.extend(f"     - {c}" for c in cells[1:])
    return out


RESULTS_HEADER = ("case", "gradbasics", "baseline", "ratio", "quartiles", "target", "result")


def case_row(case: Mapping[str, Any]) -> list[str]:
    """The cells of one case, rounded as ``run.py`` prints them."""
    info = case["target"] is None
    return [
        f"``{case['case']}``",
        f"{fmt_time(case['ours'])}/{case['unit']}",
        fmt_time(case["baseline"]),
        f"{case['ratio']:.3f}",
        f"{case['ratio_q1']:.3f}-{case['ratio_q3']:.3f}",
        "info" if info else f"<= {case['target']:.2f}",
        "info" if info else ("pass" if case["passed"] else "FAIL"),
    ]


def _by_name(cases: Sequence[Mapping[str, Any]], start: str) -> Mapping[str, Any] | None:
    return next((c for c in cases if c["case"].startswith(start)), None)


def derived(data: Mapping[str, Any]) -> list[str]:
    """Figures the page's prose quotes, computed from the cases (when they ran)."""
    cases, out = data["cases"], []
    idiom = _by_name(cases, "train_loop(lr) vs SGD+zero_grad")
    if idiom:
        out.append(
            f"- The optimizer-and-``zero_grad()`` loop takes {1 / idiom['ratio'] - 1:.0%} more "
            f"time per step than ``train_loop(lr=...)`` (1 / {idiom['ratio']:.3f})."
        )
    loss = _by_name(cases, "info: mse_loss vs F.mse_loss")
    in_loop = _by_name(cases, "info: train_loop(lr) vs the same with F.mse_loss")
    if loss and in_loop:
        out.append(
            f"- :func:`gradbasics.mse_loss` takes {fmt_time(loss['ours'])} a call at the "
            f"chain's shapes where ``F.mse_loss`` takes {fmt_time(loss['baseline'])}: "
            f"{(loss['baseline'] - loss['ours']) * 1e6:.1f} us less a call (medians). A "
            f"whole ``train_loop`` step with it takes {in_loop['ratio']:.3f} of the step "
            f"with ``F.mse_loss`` (median ratio; quartiles "
            f"{in_loop['ratio_q1']:.3f}-{in_loop['ratio_q3']:.3f}, the noise of a step)."
        )
    epoch = _by_name(cases, "epoch: train_loop vs DataLoader")
    if epoch:
        out.append(
            f"- A mini-batch epoch of ``train_loop`` is {1 / epoch['ratio']:.1f} times as fast "
            "as the ``DataLoader(shuffle=True)`` loop."
        )
    return out


def render_results(data: Mapping[str, Any]) -> str:
    """The include of the step, update and epoch cases (``results.json``)."""
    rows = [case_row(c) for c in data["cases"]]
    if data.get("import_seconds") is not None:
        imp = data["import_seconds"]
        verdict = "pass" if imp < 0.050 else "FAIL"
        rows.append(
            ["``import gradbasics after torch``", fmt_time(imp), "", "", "", "< 50 ms", verdict]
        )
    lines = [DO_NOT_EDIT.format(name="results.json"), where(data)]
    if data["tiny"] or data["only"]:
        lines[-1] += f" Not a full run (``--tiny``: {data['tiny']}, ``--only``: {data['only']!r})."
    lines += ["", *table(RESULTS_HEADER, rows), ""]
    extra = derived(data)
    if extra:
        lines += ["From these figures:", "", *extra, ""]
    return "\n".join(lines)


REALSIZE_HEADER = ("rule", "time ratio", "(min-max)", "hand RSS +", "ours RSS +", "same bits",
                   "result")  # fmt: skip


def render_realsize(data: Mapping[str, Any]) -> str:
    """The include of the real-size case (``realsize.json``)."""
    rows = [
        [
            row["rule"],
            f"{row['ratio']:.3f}",
            f"{row['ratio_min']:.3f}-{row['ratio_max']:.3f}",
            f"{row['hand_growth'] / 2**20:.1f} MB",
            f"{row['ours_growth'] / 2**20:.1f} MB",
            str(row["same_bits"]),
            "pass" if row["passed"] else "FAIL",
        ]
        for row in data["summary"]
    ]
    head = (
        f"{where(data)} {data['rounds']} rounds of {data['epochs']} epochs on "
        f"{data['rows']:,} rows, each run a fresh process."
    )
    return "\n".join([DO_NOT_EDIT.format(name="realsize.json"), head, "",
                      *table(REALSIZE_HEADER, rows), ""])  # fmt: skip


def main() -> int:
    """Write both includes from the results files."""
    RESULTS_RST.write_text(render_results(json.loads(RESULTS.read_text())))
    REALSIZE_RST.write_text(render_realsize(json.loads(REALSIZE.read_text())))
    print(f"wrote {RESULTS_RST.name} and {REALSIZE_RST.name} in {HERE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
