"""Mutants of the learning-rate range test (lr_find) and its chart."""

from __future__ import annotations

S = "src/gradbasics/"
T = ["tests/test_rangetest.py"]

MUTANTS: list[tuple[str, str, str, list[str]]] = [
    (S + "rangetest.py", "STOP_FACTOR = 4.0", "STOP_FACTOR = 5.0", T),
    (S + "rangetest.py", "(i / (n_steps - 1))", "(i / n_steps)", T),
    (S + "rangetest.py", "value > STOP_FACTOR * lowest", "value >= STOP_FACTOR * lowest", T),
    (S + "rangetest.py", "        lowest = min(lowest, value)\n", "", T),
    (S + "rangetest.py", "if not math.isfinite(value) or value", "if value", T),
    (S + "rangetest.py", "        for p in run.params:\n            p.grad = None\n", "", T),
    (S + "rangetest.py", '                group["lr"] = rate\n', "                pass\n", T),
    (S + "rangetest.py", "out.append(average / (1 - beta ** (i + 1)))", "out.append(average)", T),
    (S + "rangetest.py", "slope < best", "slope > best", T),
    (S + "rangetest.py", "range(len(lrs) // 10, len(lrs) - 1)", "range(len(lrs) - 1)", T),
    (S + "rangetest.py", "best, where = slope, i", "best, where = slope, i + 1", T),
    (
        S + "rangetest.py",
        "            self.generator.set_state(self.gen_state)\n",
        "            pass\n",
        T,
    ),
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
    (S + "rangetest.py", "    if rate <= 0:", "    if rate < 0:", T),
    (
        S + "rangetest.py",
        '            raise ValueError("inputs must give',
        '            return  # ("inputs must give',
        T,
    ),
    (S + "plotting.py", 'ax.set_xscale("log")', "pass", T),
]
