"""Every example runs as a script and prints its key number, checked independently."""

from __future__ import annotations

import contextlib
import io
import math
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))

# Key lines, computed here from closed forms rather than copied from a run.
EXPECTED: dict[str, list[str]] = {
    "01_tensors.py": [f"w @ x (matrix product)    = {[2 * 1 + 0 * 2.0] * 2}"],
    "02_autograd_power.py": [f"dy/dw by autograd  = {2**3 * math.log(2):.4f}"],
    "03_chain_gradients.py": [
        f"dL/dw1: autograd {2 * 119 * 5 * 4 * 2:g}",
        f"dL/dw2: autograd {2 * 119 * 5 * 3 * 2:g}",
        f"dL/dw3: autograd {2 * 119 * 4 * 3 * 2:g}",
    ],
    "04_manual_update.py": [
        f"w = 3 - 0.1 * 6 = {3 - 0.1 * 6:g}",
        f"dL/dw = {2 * (3.0 - 1.0):g} (silently wrong",
        "RuntimeError raised",
    ],
    "05_optimizer_zero_grad.py": [f"dL/dw1 = {2 * 9520}", "bit for bit: True"],
    "06_learning_rates.py": [
        "lr=0.01: DivergenceError in epoch 3 of 100, losses [14161.0,",
        "lr=0.001: dead ReLU, final loss 1 ",
        "lr=0.0001: converged",
    ],
    "07_module_and_parameter.py": ["parameters() = []", "['w1', 'w2', 'w3']"],
    "08_train_only_w2.py": [f"w2 = {2 - 0.98**20:.6f}", "figure written to"],
    "09_minibatches.py": ["weight 3.000, bias 1.000"],
    "10_detach.py": ["dw = 6 (y treated", f"dw = {4 * 3.0:g}"],
    "11_adaptive_rules.py": [
        f"w1 = {3 - 0.01:.4f}",  # AdaGrad's first step: g / sqrt(g^2) = 1
        "SGD:     DivergenceError in epoch 3 of 300",
        f"loss {(5 * 4 * 3 * 2 - 1) ** 2:g} ->",
    ],
    "13_activation_stats.py": [
        "DeadUnitsWarning: ",
        "dead units confirmed from the recorded rows: True",
        "figure written to",
    ],
    "14_classify_digits.py": [
        f"(ln 10 = {math.log(10):.3f})",
        "the same as the best epoch's: True",  # predict() agrees with the restored best
        "figure written to",
    ],
    "12_train_your_own_model.py": [
        "ignored: ('optimizer',)",
        "loaded model's validation loss equals the best epoch's: True",
        "figure written to",
    ],
}


def _run(script: str, tmp_path: Path, *extra: str) -> str:
    """Run ``python examples/SCRIPT`` in this process, in ``tmp_path``; return its output.

    No second import of torch: the script runs as ``__main__`` here, and the global state
    it may touch (argv, sys.path, the working folder, the RNG) is put back.
    """
    argv, path, cwd, rng = sys.argv, list(sys.path), Path.cwd(), torch.get_rng_state()
    sys.argv = [str(EXAMPLES / script), *extra]
    sys.path.insert(0, str(EXAMPLES))  # the scripts import their shared _common.py
    os.chdir(tmp_path)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), warnings.catch_warnings():
            runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, path
        os.chdir(cwd)
        torch.set_rng_state(rng)
    return printed.getvalue()


def _spawn(script: str, tmp_path: Path, *extra: str) -> str:
    """Run ``python examples/SCRIPT`` in a new process; return what it printed."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_is_checked() -> None:
    assert len(SCRIPTS) >= 10
    assert set(SCRIPTS) == set(EXPECTED)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_and_prints_its_key_numbers(script: str, tmp_path: Path) -> None:
    out = _run(script, tmp_path)
    for line in EXPECTED[script]:
        assert line in out, f"{line!r} not in the output of {script}:\n{out}"
    doc = (EXAMPLES / script).read_text().split('"""')[1]
    assert f"python examples/{script}" in doc  # the docstring gives the run command


def test_figure_example_writes_the_png_it_prints(tmp_path: Path) -> None:
    out = _spawn("08_train_only_w2.py", tmp_path, "--out", "chart.png")  # a process of its own
    assert "figure written to chart.png" in out
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.cuda
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_on_cuda(script: str, tmp_path: Path) -> None:
    out = _spawn(script, tmp_path, "--device", "cuda")
    for line in EXPECTED[script]:
        assert line in out
