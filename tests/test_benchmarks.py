"""Benchmarks are not tests: the suite only smoke-runs them with tiny sizes."""

from __future__ import annotations

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
    assert len(names) == 15
    for name in names:
        assert name in result.stdout
    for case in data["cases"]:
        assert case["ours"] > 0
        assert case["baseline"] > 0
        assert case["ratio_q1"] <= case["ratio"] <= case["ratio_q3"]
    assert data["import_seconds"] > 0
    assert "import gradbasics after torch" in result.stdout
