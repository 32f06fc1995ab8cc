"""Mutants of train_loop's checks: validation, schedules, callbacks, unit statistics.

Each is one change of meaning (a comparison, a forgotten check, a state not put back)
that the third red-team pass's tests (tests/test_loop_bugs3.py) and their neighbours kill.
"""

from __future__ import annotations

S = "src/gradbasics/"
B3 = ["tests/test_loop_bugs3.py"]

MUTANTS: list[tuple[str, str, str, list[str]]] = [
    # validation and metric results
    (S + "validation.py", " or not value.is_floating_point():", ":", B3),
    (
        S + "validation.py",
        "batch = torch.stack([v.to(torch.float64) for v in row]) * xb.shape[0]",
        "batch = torch.stack([v.to(torch.float64) for v in row])",
        ["tests/test_practice.py"],
    ),
    (S + "validation.py", "    if left_out:", "    if False:", B3),
    (
        S + "validation.py",
        "isinstance(loss_fn, nn.CrossEntropyLoss | nn.NLLLoss) and",
        "False and",
        B3,
    ),
    (
        S + "callbacks/validation.py",
        '        check_class_targets(self.loop.loss_fn, targets, name="val targets")\n',
        "",
        B3,
    ),
    (
        S + "callbacks/train_metrics.py",
        "torch.stack([check_metric_value(name, m(out, target))",
        "torch.stack([(m(out, target))",
        B3,
    ),
    # schedules
    (
        S + "_preflight.py",
        "    if needed > scheduler.total_steps:",
        "    if needed >= scheduler.total_steps:",
        B3,
    ),
    (
        S + "_preflight.py",
        'per_epoch = updates if schedule.interval == "batch" else 1',
        "per_epoch = updates",
        B3,
    ),
    (S + "_preflight.py", "math.ceil(batches / accumulate)", "batches", B3),
    (S + "_trainargs.py", '    elif scheduler_interval == "batch":', "    elif False:", B3),
    (
        S + "callbacks/schedule.py",
        'elif self.kind == "torch" and self.interval == "epoch":',
        'elif self.kind == "torch":',
        B3,
    ),
    # early stopping: exactly min_delta is no improvement, in either mode
    (
        S + "callbacks/early_stopping.py",
        "return value < best - self.min_delta",
        "return value <= best - self.min_delta",
        B3,
    ),
    (
        S + "callbacks/early_stopping.py",
        "return value > best + self.min_delta",
        "return value >= best + self.min_delta",
        B3,
    ),
    (
        S + "callbacks/early_stopping.py",
        "return value > best + self.min_delta",
        "return value < best - self.min_delta",
        B3,
    ),
    (
        S + "callbacks/early_stopping.py",
        "return self.waited >= self.patience",
        "return self.waited > self.patience",
        B3,
    ),
    # unit statistics and dead units
    (S + "unitstats.py", "(dead[-k:] == 1).all(0)", "(dead[-k:] == 1).any(0)", B3),
    (
        S + "_activationlog.py",
        "found.setdefault(act.numel() // width, [])",
        "found.setdefault(0, [])",
        B3,
    ),
    (S + "_activationlog.py", "(units {units[:20]}", "(units {units[:1]}", B3),
    (
        S + "_activationlog.py",
        "            if not units or set(units) <= self.warned.get(name, set()):",
        "            if not units:",
        ["tests/test_activation_stats.py"],
    ),
    (
        S + "_activationlog.py",
        "            if shape != tuple(act.shape):",
        "            if False:",
        B3,
    ),
    (
        S + "_activationlog.py",
        "if len(self.pending) >= (FLUSH_EVERY if",
        "if False and (FLUSH_EVERY if",
        B3,
    ),
    (S + "_activationlog.py", "        restore_modes(was_training)\n", "        pass\n", B3),
    (
        S + "callbacks/recording.py",
        "        if self._rec is not None and self.loop.failed is None:",
        "        if self._rec is not None:",
        B3,
    ),
    # argument checks before anything changes
    (
        S + "_trainargs.py",
        "rows = None if dataset is None else length(dataset)",
        "rows = None if dataset is None else len(dataset)",
        B3,
    ),
    (
        S + "_preflight.py",
        "    if first is None:\n        raise",
        "    if False:\n        raise",
        B3,
    ),
    (S + "_preflight.py", "            g.set_state(state)\n", "            pass\n", B3),
    (S + "_preflight.py", "torch.random.fork_rng(devices=[])", "torch.no_grad()", B3),
    (S + "_preflight.py", "        restore_modes(saved)\n", "        pass\n", B3),
    (
        S + "_preflight.py",
        "                    b.copy_(buffers[k])\n",
        "                    pass\n",
        B3,
    ),
    (S + "_preflight.py", "    if rows != want:", "    if False:", B3),
    (
        S + "_trainargs.py",
        "    return metrics if train and not has_val else {}",
        "    return {}",
        B3,
    ),
    (S + "training.py", "    preflight.probe(core, fn, seen, device, tried)\n", "", B3),
]
