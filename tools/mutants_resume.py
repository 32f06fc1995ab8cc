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
MUTANTS += [
    (
        S + "_ckptcheck.py",
        '    for late in ("data", "loss", "batch_rng"):',
        '    for late in ("data", "loss"):',
        T,
    ),
    (
        S + "_ckptcheck.py",
        '"the global RNG" if generator is None else "a generator"',
        '"the global RNG"',
        T,
    ),
    (
        S + "_preflight.py",
        '            check_class_range(loss_fn, out, rows[1], name="targets")\n',
        "",
        ["tests/test_loop_bugs3.py"],
    ),
]
