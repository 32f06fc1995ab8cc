"""Mutants of the learning-rate range test (lr_find) and its chart."""

from __future__ import annotations

S = "src/gradbasics/"
T = ["tests/test_rangetest.py"]

MUTANTS: list[tuple[str, str, str, list[str]]] = [
    (S + "rangetest.py", "STOP_FACTOR = 4.0", "STOP_FACTOR = 5.0", T),
    (S + "rangetest.py", "(i / (steps - 1))", "(i / steps)", T),
    (S + "rangetest.py", "value > STOP_FACTOR * lowest", "value >= STOP_FACTOR * lowest", T),
    (S + "rangetest.py", "        lowest = min(lowest, value)\n", "", T),
    (S + "rangetest.py", "if not math.isfinite(value) or value", "if value", T),
    (S + "rangetest.py", "        for p in run.params:\n            p.grad = None\n", "", T),
    (S + "rangetest.py", '                group["lr"] = rate\n', "                pass\n", T),
    (S + "rangetest.py", "out.append(average / (1 - beta ** (i + 1)))", "out.append(average)", T),
    (S + "rangetest.py", "slope < best", "slope > best", T),
    (S + "rangetest.py", "range(len(lrs) // 10, len(lrs) - 1)", "range(len(lrs) - 1)", T),
    (S + "rangetest.py", "best, where = slope, i", "best, where = slope, i + 1", T),
    (S + "rangetest.py", "            g.set_state(state)\n", "            pass\n", T),
    (S + "rangetest.py", "        torch.set_rng_state(self.cpu_rng)\n", "", T),
    (S + "rangetest.py", "            p.grad = grad\n", "            pass\n", T),
    (S + "rangetest.py", "        restore_modes(self.modes)\n", "", T),
    (
        S + "rangetest.py",
        "            self.optimizer.load_state_dict(self.opt_state)\n",
        "            pass\n",
        T,
    ),
    (S + "rangetest.py", "    if start >= end:", "    if start > end:", T),
    (
        S + "rangetest.py",
        "math.isfinite(rate) and rate > 0",
        "math.isfinite(rate) and rate >= 0",
        T,
    ),
    (S + "rangetest.py", "any(a >= b for a, b in", "any(a > b for a, b in", T),
    (
        S + "rangetest.py",
        "    for p in run.params:  # gradients left",
        "    for p in []:  # gradients left",
        T,
    ),
    (S + "rangetest.py", "if not fall > ROUNDING * abs(smoothed[i]):", "if not fall > 0:", T),
    (S + "rangetest.py", "            module._buffers[name] = buffer\n", "            pass\n", T),
    (S + "rangetest.py", "*preflight.generators(loader)]", "]", T),
    (S + "rangetest.py", "        if value < 0:\n", "        if False:\n", T),
    (S + "rangetest.py", "    preflight.probe(model, fn, seen, device, {})", "    pass", T),
    (
        S + "_preflight.py",
        "    if low < 0 or high >= classes:",
        "    if low < 0 or high > classes:",
        T,
    ),
    (
        S + "rangetest.py",
        '            raise ValueError("inputs must give',
        '            return  # ("inputs must give',
        T,
    ),
    (S + "plotting.py", 'ax.set_xscale("log")', "pass", T),
]
