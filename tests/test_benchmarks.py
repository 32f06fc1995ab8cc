"""Benchmarks are not tests: the suite only smoke-runs them with tiny sizes."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

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
