from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gradbasics.cli import main


def test_demo_prints_the_notes_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "task2.png"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for grad in ("dL/dw1 = 9520", "dL/dw2 = 7140", "dL/dw3 = 5712"):
        assert grad in text
    assert "lr=0.01: diverged in epoch 3 of 100" in text  # err.epoch == 2, 1-based here
    assert "lr=0.001: the ReLU died" in text
    assert "lr=0.0001: converged" in text
    assert f"w2 = {2 - 0.98**20:.6f}" in text
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_demo_without_out_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert "pass --out" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m_and_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gradbasics", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    from gradbasics import __version__

    assert result.stdout.strip() == f"gradbasics {__version__}"


def test_unknown_command_fails() -> None:
    with pytest.raises(SystemExit) as info:
        main(["train"])
    assert info.value.code == 2
