from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import gradbasics

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_complete_and_importable() -> None:
    names = gradbasics.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(gradbasics, name), name
    public = {
        n
        for n, v in vars(gradbasics).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("gradbasics")
    }
    assert public <= set(names)


def test_version_matches_the_installed_metadata() -> None:
    assert gradbasics.__version__ == importlib.metadata.version("gradbasics")


def test_import_pulls_in_neither_matplotlib_nor_tqdm_nor_tensorboard() -> None:
    # torch itself imports tqdm when it is installed: count only what gradbasics adds.
    code = (
        "import sys, torch; before = set(sys.modules); import gradbasics; "
        "from gradbasics import train_loop, callbacks; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in ('matplotlib', 'tqdm', 'tensorboard') "
        "or m.startswith('torch.utils.tensorboard')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_py_typed_and_metadata() -> None:
    assert (ROOT / "src" / "gradbasics" / "py.typed").exists()
    meta = importlib.metadata.metadata("gradbasics")
    runtime = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert sorted(r.split(">")[0].split("<")[0].strip() for r in runtime) == [
        "torch",
        "typing-extensions",
    ]
    torch_req = next(r for r in runtime if r.startswith("torch"))
    assert ">=2.11" in torch_req  # the GPU machines run torch 2.11
    assert set(meta.get_all("Provides-Extra") or []) >= {"plot", "progress", "tensorboard", "dev"}
