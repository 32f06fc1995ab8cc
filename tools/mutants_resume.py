"""Mutants of the resume checks on the optimizer's parameter groups."""

from __future__ import annotations

S = "src/gradbasics/"
T = ["tests/test_resume_bugs.py"]
HYPER = '                f"{path} is from a run'

MUTANTS: list[tuple[str, str, str, list[str]]] = [
    (S + "_ckptcheck.py", "    if saved_sizes != own_sizes:", "    if False:", T),
    (S + "_ckptcheck.py", "sorted((set(old) | set(new)) - {", "sorted((set(old)) - {", T),
    (
        S + "_ckptcheck.py",
        "        if diff:\n            raise CheckpointError(\n" + HYPER,
        "        if False:\n            raise CheckpointError(\n" + HYPER,
        T,
    ),
]
