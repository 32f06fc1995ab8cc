"""The built wheel installs into a fresh environment and runs, with no network."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_and_runs_the_demo_in_a_fresh_venv(tmp_path: Path) -> None:
    pytest.importorskip("build")
    command = ["-m", "build", "--no-isolation", "--wheel", "--outdir", str(tmp_path), str(ROOT)]
    built = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("gradbasics-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # torch and friends come from this environment (a plain path, so its editable
    # gradbasics is not seen); gradbasics itself only from the wheel.
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "dev-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {**os.environ, "PIP_NO_INDEX": "1", "MPLBACKEND": "Agg", "PYTHONPATH": ""}
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    where = subprocess.run(
        [str(py), "-c", "import gradbasics; print(gradbasics.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    demo = subprocess.run(
        [str(venv / "bin" / "gradbasics"), "demo", "--out", str(tmp_path / "task2.png")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert "lr=0.01: diverged in epoch 3 of 100" in demo.stdout
    assert (tmp_path / "task2.png").read_bytes()[:4] == b"\x89PNG"
