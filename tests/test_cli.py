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
    assert "DeadUnitsWarning: 1 of the 1 unit(s) of layer 'hidden2'" in text
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


def test_version_and_help_need_no_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; from gradbasics.cli import main; "  # no torch
        "sys.argv = ['gradbasics', '--version']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from gradbasics import __version__

    assert result.stdout.strip() == f"gradbasics {__version__}"
    helped = subprocess.run(
        [sys.executable, "-m", "gradbasics", "--help"], capture_output=True, text=True
    )
    assert "usage: gradbasics" in helped.stdout and "gradbasics demo --device cuda" in helped.stdout
    assert "``" not in helped.stdout  # plain text, no reST markup


def test_a_missing_torch_is_one_line_with_the_install_command() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; from gradbasics.cli import main; "
        "raise SystemExit(main(['demo']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "gradbasics needs PyTorch, which is not installed: pip install 'torch>=2.11'"
    ]
