"""Benchmarks are not tests: the suite only smoke-runs them with tiny sizes."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_run_prints_every_case_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    names = [case["case"] for case in data["cases"]]
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the case builders: count what they make
    cases, practice = importlib.import_module("cases"), importlib.import_module("practice_cases")
    builds = [getattr(cases, b) for b in ("chain_cases", "update_case", "rules_cases",
                                          "epoch_cases")] + [practice.practice_cases]  # fmt: skip
    assert len(names) == sum(len(build(cases.Sizes.tiny())) for build in builds)
    for name in names:
        assert name in result.stdout
    for case in data["cases"]:
        assert case["ours"] > 0
        assert case["baseline"] > 0
        assert case["ratio_q1"] <= case["ratio"] <= case["ratio_q3"]
    assert data["import_seconds"] > 0
    assert "import gradbasics after torch" in result.stdout


def _list_table_rows(text: str) -> list[list[str]]:
    """The rows of the ``list-table`` in ``text`` (its header first), cell by cell."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("   * - "):
            rows.append([line.removeprefix("   * - ")])
        elif line.startswith("     - ") and rows:
            rows[-1].append(line.removeprefix("     - "))
    return rows


def _report() -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module("report")


def test_the_performance_page_includes_the_tables_written_from_the_results_files() -> None:
    report = _report()
    page = (ROOT / "docs" / "performance.rst").read_text()
    assert ".. include:: ../benchmarks/results.rst" in page
    assert ".. include:: ../benchmarks/realsize.rst" in page
    results = json.loads(report.RESULTS.read_text())
    realsize = json.loads(report.REALSIZE.read_text())
    hint = "stale: run `python benchmarks/report.py` (make bench does)"
    assert report.RESULTS_RST.read_text() == report.render_results(results), hint
    assert report.REALSIZE_RST.read_text() == report.render_realsize(realsize), hint


def test_each_figure_of_the_results_table_is_the_results_file_rounded_as_printed() -> None:
    """Parsed from the include the page shows, not rendered again: the figures themselves."""
    report = _report()
    data = json.loads(report.RESULTS.read_text())
    for key in ("date", "platform", "processor", "cpus", "python", "torch", "threads"):
        assert data[key], key
    assert data["tiny"] is False and data["only"] is None  # the page shows a full run
    text = report.RESULTS_RST.read_text()
    assert f"torch {data['torch']}" in text and str(data["date"]) in text
    header, *rows = _list_table_rows(text)
    assert header == ["case", "gradbasics", "baseline", "ratio", "quartiles", "target", "result"]
    assert len(rows) == len(data["cases"]) + 1  # and the import time
    for row, case in zip(rows, data["cases"], strict=False):
        name, ours, base, ratio, quartiles, target, verdict = row
        assert name == f"``{case['case']}``"
        assert float(ratio) == round(case["ratio"], 3), name
        q1, q3 = (float(q) for q in quartiles.split("-"))
        assert (q1, q3) == (round(case["ratio_q1"], 3), round(case["ratio_q3"], 3)), name
        assert ours.startswith(report.fmt_time(case["ours"]))
        assert base == report.fmt_time(case["baseline"])
        if case["target"] is None:
            assert target == verdict == "info"
        else:
            assert float(target.removeprefix("<= ")) == case["target"]
            assert verdict == ("pass" if case["ratio"] <= case["target"] else "FAIL"), name
    assert rows[-1][1] == report.fmt_time(data["import_seconds"])


def test_each_figure_of_the_realsize_table_is_the_results_file_rounded_as_printed() -> None:
    report = _report()
    data = json.loads(report.REALSIZE.read_text())
    _, *rows = _list_table_rows(report.REALSIZE_RST.read_text())
    summary = {s["rule"]: s for s in data["summary"]}
    assert [r[0] for r in rows] == ["sgd", "adam"]
    realsize = importlib.import_module("realsize")
    assert realsize.summarize(data["runs"]) == data["summary"]  # the summary is the runs'
    for rule, ratio, spread, hand, ours, same, verdict in rows:
        s = summary[rule]
        assert float(ratio) == round(s["ratio"], 3)
        assert spread == f"{s['ratio_min']:.3f}-{s['ratio_max']:.3f}"
        assert float(hand.removesuffix(" MB")) == round(s["hand_growth"] / 2**20, 1)
        assert float(ours.removesuffix(" MB")) == round(s["ours_growth"] / 2**20, 1)
        assert same == str(s["same_bits"]) and verdict == ("pass" if s["passed"] else "FAIL")
