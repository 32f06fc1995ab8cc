"""Mutants of the update rules' option combinations, refusals and grouping (tools/mutate.py).

Each is (path, original text, mutated text, test files that must kill it).
"""

from __future__ import annotations

S = "src/gradbasics/rules/"
EXACT = ["tests/test_rules_exact.py"]
SWEEP = ["tests/test_rules_exact.py", "tests/test_rules_sweep.py"]

MUTANTS: list[tuple[str, str, str, list[str]]] = [
    # the multi-tensor path per (device, dtype) group, as torch
    (
        S + "_common.py",
        "            for g in by_device_dtype(ps):",
        "            for g in [list(range(len(ps)))]:",
        EXACT,
    ),
    # maximize with weight decay: the decay is added to the negated gradient
    (
        S + "adam.py",
        "                grad = grad.add(p, alpha=weight_decay)",
        "                grad = g.add(p, alpha=weight_decay)",
        EXACT,
    ),
    (
        S + "rmsprop.py",
        "            grad = grad.add(p, alpha=weight_decay)",
        "            grad = g.add(p, alpha=weight_decay)",
        EXACT,
    ),
    # amsgrad and centered on the multi-tensor path
    (S + "adam.py", "        torch._foreach_maximum_(peaks, exp_avg_sqs)", "        pass", SWEEP),
    (
        S + "rmsprop.py",
        "        torch._foreach_lerp_(grad_avgs, grads, 1 - alpha)",
        "        torch._foreach_lerp_(grad_avgs, grads, alpha)",
        SWEEP,
    ),
    # nesterov on the multi-tensor path, and its refusal with dampening
    (
        S + "sgd.py",
        "            torch._foreach_add_(grads, bufs, alpha=momentum)",
        "            pass",
        SWEEP,
    ),
    (S + "sgd.py", "        if nest and (m <= 0 or d != 0):", "        if nest and m <= 0:", EXACT),
    # complex parameters through view_as_real
    (
        S + "adam.py",
        "        if p.is_complex():  # after the decay, as torch\n"
        "            p, grad, m, v = real([p, grad, m, v])",
        "        if False:\n            pass",
        EXACT,
    ),
    (
        S + "adagrad.py",
        "complex(v, v) if p.is_complex() else v",
        "v",
        SWEEP,
    ),
    # sparse gradients: AdaGrad coalesces, the others refuse
    (S + "adagrad.py", "    grad = grad.coalesce()", "    pass", EXACT),
    (S + "_grouping.py", "        if g.is_sparse:\n", "        if False:\n", EXACT),
    # degenerate hyperparameters
    (
        S + "rmsprop.py",
        '"alpha": check_unit(alpha, "alpha"),',
        '"alpha": check_unit(alpha, "alpha", closed=True),',
        EXACT,
    ),
    (S + "_common.py", "and not float(value) > 0:", "and not float(value) >= 0:", EXACT),
    # the tensors a rule serves, and parameter groups
    (
        S + "_common.py",
        "check_served(self.served or now, now,",
        "check_served(now, now,",
        EXACT,
    ),
    (
        S + "optimizer.py",
        '                rule.foreach = group.get("foreach", self.rule.foreach)'
        "  # as torch: per step",
        "                pass",
        EXACT,
    ),
    (
        S + "adagrad.py",
        '    shared_by_groups = ("initial_accumulator_value",)',
        "    shared_by_groups = ()",
        EXACT,
    ),
]
