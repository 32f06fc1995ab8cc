"""Mutation testing by hand: does the suite catch semantic changes to src/?

Usage: python tools/mutate.py [--only SUBSTRING] [--jobs N]

Each mutant is one small change of meaning (a sign, a comparison, a forgotten step) in a
copy of src/; the test files that guard that code run against it, and a mutant is killed
when they fail. Not part of CI (it takes minutes); the kill rate goes in
docs/reliability.rst. Survivors are listed with their diff, to be judged: a real gap in
the tests, or a change that cannot alter behaviour (an equivalent mutant).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
S = "src/gradbasics/"
CK = ["tests/test_checkpoint.py", "tests/test_checkpoint_faults.py"]
TRAIN = ["tests/test_training.py", "tests/test_device_path.py", "tests/test_engines.py"]
RULES = ["tests/test_rules.py"]
PR = ["tests/test_practitioner.py", "tests/test_contract.py"]
CB = ["tests/test_contract.py", "tests/test_resume_bugs.py", "tests/test_callbacks.py"]

# (file, original text, mutated text, test files that guard it)
MUTANTS: list[tuple[str, str, str, list[str]]] = [
    # update rules of the notes
    (
        S + "steps.py",
        "torch._foreach_add_(ps, gs, alpha=-lr)",
        "torch._foreach_add_(ps, gs, alpha=lr)",
        ["tests/test_steps.py"],
    ),
    (
        S + "steps.py",
        "p.add_(g if ok is None else torch.where(ok, g, 0.0), alpha=-lr)",
        "p.add_(g, alpha=-lr)",
        ["tests/test_steps.py"],
    ),
    (S + "steps.py", "gs = [torch.where(ok, g, 0.0) for g in gs]", "pass", ["tests/test_steps.py"]),
    (
        S + "steps.py",
        "            p.data -= lr * g",
        "            p.data -= lr * p.grad",
        ["tests/test_steps.py", "tests/test_device_path.py"],
    ),
    (
        S + "steps.py",
        "_FOREACH_MIN_TENSORS = 5",
        "_FOREACH_MIN_TENSORS = 10**9",
        ["tests/test_steps.py"],
    ),
    (
        S + "steps.py",
        "    return torch.isfinite(guard).all()",
        "    return torch.isfinite(guard).any()",
        ["tests/test_steps.py"],
    ),
    # losses and batches
    (
        S + "data.py",
        "    if outputs.shape != targets.shape:",
        "    if False:",
        ["tests/test_data.py", "tests/test_bad_inputs.py"],
    ),
    (
        S + "data.py",
        "        return mse_loss\n",
        "        return torch.nn.functional.l1_loss\n",
        ["tests/test_training.py"],
    ),
    (
        S + "data.py",
        "rows = random_rows(x.shape[0], size, gen).to(x.device)",
        "rows = torch.arange(size).to(x.device)",
        ["tests/test_data.py"],
    ),
    (
        S + "engines/base.py",
        "        return sum(v * n for v, n in zip(values, w, strict=True)) / sum(w)",
        "        return sum(values) / len(values)",
        TRAIN,
    ),
    (
        S + "engines/base.py",
        "            chunks = self.permutation().split(self.size)",
        "            chunks = torch.arange(self.rows, device=self.device).split(self.size)",
        TRAIN,
    ),
    # engines
    (
        S + "engines/base.py",
        "        for p in self.run.params:\n            p.grad = None\n        if self.run.optimizer",
        "        if self.run.optimizer",
        TRAIN,
    ),
    (
        S + "engines/base.py",
        "            for p in params:\n                p.grad = None\n\n        return finish_sgd",
        "            pass\n\n        return finish_sgd",
        TRAIN,
    ),
    (
        S + "engines/eager.py",
        "            if not math.isfinite(value):\n                raise Diverged(value)",
        "            if math.isnan(value):\n                raise Diverged(value)",
        TRAIN,
    ),
    (
        S + "engines/eager.py",
        "            else:\n                finish(None)\n            if interrupts.pending:",
        "            else:\n                if interrupts.pending:\n                    raise Interrupted\n                finish(None)\n            if False:",
        ["tests/test_checkpoint.py"],
    ),
    (
        S + "engines/device.py",
        "torch.logical_and(self.ok, torch.isfinite(detached), out=self.ok)",
        "self.ok.copy_(torch.isfinite(detached))",
        TRAIN,
    ),
    (
        S + "engines/device.py",
        "            self.finish(self.ok)",
        "            self.finish(None)",
        TRAIN,
    ),
    (
        S + "engines/graph.py",
        "                self.counter.add_(1)",
        "                pass",
        ["tests/test_engines.py"],
    ),
    (
        S + "engines/graph.py",
        "        self.run.model.load_state_dict(snapshot)",
        "        pass",
        ["tests/test_engines.py"],
    ),
    (
        S + "engines/graph.py",
        '    if REQUIRE_CUDA and device.type != "cuda":',
        "    if False:",
        ["tests/test_engines.py"],
    ),
    (
        S + "training.py",
        "    builtin = optimizer is None and update in (manual_sgd_step, legacy_data_step)",
        "    builtin = update in (manual_sgd_step, legacy_data_step)",
        ["tests/test_device_path.py", "tests/test_training.py"],
    ),
    # distributed
    (
        S + "engines/ddp.py",
        "            scale = len(rows) * world / run.sizes[b]",
        "            scale = 1.0",
        ["tests/test_distributed.py"],
    ),
    (
        S + "_distributed.py",
        "    (loss * (scale if math.isfinite(value) else math.nan)).backward()",
        "    (loss * scale).backward()",
        ["tests/test_distributed.py"],
    ),
    (
        S + "_distributed.py",
        "    return rows[ranks.rank :: ranks.world]",
        "    return rows[ranks.rank :: ranks.world + 1]",
        ["tests/test_distributed.py"],
    ),
    # checkpoints
    (
        S + "_ckptio.py",
        "        if len(raw) < head or hashlib.sha256(body).digest() != raw[len(MAGIC) : head]:",
        "        if len(raw) < head:",
        CK,
    ),
    (S + "_ckptio.py", "    if packed or total > len(blob):", "    if False:", CK),
    (
        S + "_ckptio.py",
        "        os.replace(tmp, target)  # atomic on POSIX and Windows",
        "        os.replace(tmp, target)\n        Path(tmp).touch()",
        CK,
    ),
    (
        S + "_ckptio.py",
        "    if m.group(1) != _host():\n        return False",
        "    if m.group(1) != _host():\n        return True",
        CK,
    ),
    (
        S + "_ckptio.py",
        "    if pid == os.getpid():\n        return False",
        "    if pid == os.getpid():\n        return True",
        CK,
    ),
    (S + "_ckptio.py", "    target = Path(os.path.realpath(path))", "    target = Path(path)", CK),
    (
        S + "_ckptcheck.py",
        "        if k in saved and (saved[k].shape != own[k].shape or saved[k].dtype != own[k].dtype)",
        "        if k in saved and saved[k].shape != own[k].shape",
        CK,
    ),
    (
        S + "_ckptcheck.py",
        "    if isinstance(value, numbers.Real):\n        return float(value)",
        "    if isinstance(value, numbers.Real):\n        return value",
        CK,
    ),
    (S + "_ckptcheck.py", "    if not hyper:\n        return", "    if True:\n        return", CK),
    (
        S + "_ckptcheck.py",
        "        if late not in saved:\n            keys.discard(late)",
        "        keys.discard(late)",
        CK,
    ),
    (
        S + "_ckptcheck.py",
        "    if not isinstance(gen, Tensor) or gen.dtype != torch.uint8 or gen.numel() != _GENERATOR_BYTES:",
        "    if not isinstance(gen, Tensor):",
        CK,
    ),
    (
        S + "_ckptload.py",
        '    if max_epoch is not None and data["epoch"] > max_epoch:',
        '    if max_epoch is not None and data["epoch"] >= max_epoch:',
        CK,
    ),
    (
        S + "_ckptload.py",
        "    if rng:\n        set_rng_state(",
        "    if True:\n        set_rng_state(",
        CK,
    ),
    (
        S + "checkpoint.py",
        '    if t.device.type == "cpu" and whole and t.is_contiguous() and t.storage_offset() == 0:',
        '    if t.device.type == "cpu":',
        CK,
    ),
    (S + "_ckptload.py", '        ignored = ("optimizer",)', "        ignored = ()", CK),
    (
        S + "training.py",
        "        return to_device(inputs.detach(), device), to_device(targets.detach(), device)",
        "        return to_device(inputs, device), to_device(targets, device)",
        CK,
    ),
    (
        S + "callbacks/checkpointing.py",
        '        check_writable(self.path, "checkpoint")',
        "        pass",
        CK,
    ),
    (
        S + "callbacks/checkpointing.py",
        "if (epoch + 1) % self.every == 0 or stop or epoch + 1 == loop.epochs:",
        "if (epoch + 1) % self.every == 0 or stop:",
        ["tests/test_checkpoint.py"],
    ),
    (
        S + "_interrupts.py",
        "        if self.pending:  # the second one: stop waiting for the step",
        "        if False:",
        ["tests/test_checkpoint.py"],
    ),
    (
        S + "_interrupts.py",
        "_SIGNALS = (signal.SIGINT, signal.SIGTERM)",
        "_SIGNALS = (signal.SIGINT,)",
        ["tests/test_checkpoint.py"],
    ),
    # callbacks: the loop, the features, their settings and state on resume
    (
        S + "training.py",
        "            if stop or history.stop_requested:",
        "            if stop:",
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "training.py",
        '_call_each(cbs[::-1], "on_train_end"',
        '_call_each(cbs, "on_train_end"',
        CB,
    ),
    (
        S + "callbacks/_chain.py",
        "    return sorted(callbacks, key=lambda cb: cb.order)",
        "    return list(callbacks)",
        [*CB, "tests/test_practice.py"],
    ),
    (S + "callbacks/_chain.py", "        if key in seen:", "        if False:", CB),
    (
        S + "callbacks/base.py",
        '    if hook in getattr(callback, "unused_hooks", ()):\n        return False',
        "",
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "engines/base.py",
        "            hook = None\n            self.finish(mask)",
        "            self.finish(mask)",
        CB,
    ),
    (
        S + "callbacks/checkpointing.py",
        "        if self.loop.failed is None and self._saved != (len(history.losses), history.stopped_epoch):",
        "        if False:",
        CB + CK,
    ),
    (
        S + "callbacks/checkpointing.py",
        "    loop.history, loop.start = restored.history, restored.epoch",
        "    loop.start = restored.epoch",
        CB,
    ),
    (
        S + "_ckptstate.py",
        "            if not _same(old.get(field), settings.get(field)):",
        "            if False:",
        CB,
    ),
    (S + "_ckptstate.py", "    for key in saved.keys() - own.keys():", "    for key in ():", CB),
    (
        S + "_ckptstate.py",
        "            if (settings or state is not None) and not joins:",
        "            if False:",
        CB,
    ),
    (S + "_ckptstate.py", '    torch.set_rng_state(rng["cpu"])', "    pass", CB),
    (
        S + "_ckptstate.py",
        "    if not isinstance(extras, dict) or not set(extras) <= _HISTORY:",
        "    if not isinstance(extras, dict):",
        CB,
    ),
    (
        S + "_ckptcheck.py",
        '        plain_settings["loss"] = describe_loss(loss_fn)',
        "        pass",
        CB,
    ),
    (
        S + "callbacks/schedule.py",
        '            loop.volatile |= _DRIVEN | ({"momentum", "betas"} if cycles else set())',
        "            loop.volatile |= _DRIVEN",
        CB,
    ),
    (
        S + "callbacks/schedule.py",
        '            default = "val_loss" if "val_loss" in known else "loss"',
        '            default = "loss"',
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "callbacks/schedule.py",
        '"T_cur", "T_i", "best", "cooldown_counter", "num_bad_epochs",',
        '"T_cur", "T_i", "best", "cooldown_counter",',
        CB,
    ),
    (S + "callbacks/schedule.py", '            "interval": self.interval,', "", CB),
    (
        S + "callbacks/early_stopping.py",
        "            return value < best - self.min_delta",
        "            return value <= best - self.min_delta",
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "callbacks/early_stopping.py",
        "        return value > best + self.min_delta",
        "        return value > best - self.min_delta",
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "callbacks/early_stopping.py",
        "        if self.loop.failed is None and self.restore_best and self.weights is not None:",
        "        if self.restore_best and self.weights is not None:",
        [*CB, "tests/test_practice.py"],
    ),
    (S + "callbacks/early_stopping.py", '            "mode": self.mode,', "", CB),
    (
        S + "callbacks/early_stopping.py",
        "        self._reset()\n\n    def on_epoch_end",
        "\n    def on_epoch_end",
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "callbacks/validation.py",
        "        validate_sums(self.loop.model, batches, self.loop.loss_fn, self.metrics)",
        "        pass",
        [*CB, "tests/test_practice.py", "tests/test_bad_inputs.py"],
    ),
    (
        S + "callbacks/validation.py",
        '        return {"data": self._fingerprint, "metrics": list(self.metrics),',
        '        return {"metrics": list(self.metrics),',
        CB,
    ),
    (
        S + "callbacks/train_metrics.py",
        "            row = row * target.shape[0]  # (metrics,)",
        "            row = row",
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "callbacks/train_metrics.py",
        "        self._sums, self._rows = None, 0",
        "        pass",
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "callbacks/clip.py",
        "        torch.nn.utils.clip_grad_norm_(self.loop.params, self.max_norm)",
        "        torch.nn.utils.clip_grad_norm_(self.loop.params, 2 * self.max_norm)",
        [*CB, "tests/test_practice.py"],
    ),
    (
        S + "callbacks/recording.py",
        '        return {"names": list(self.names), "probe": probe}',
        '        return {"names": list(self.names)}',
        CB,
    ),
    (
        S + "callbacks/recording.py",
        "            self._rec.restore(self.loop.history, self.loop.start)",
        "            pass",
        CB + CK,
    ),
    (
        S + "callbacks/progress.py",
        "            self.bar.update(self.loop.start)",
        "            pass",
        ["tests/test_practice.py", "tests/test_contract.py"],
    ),
    # practitioners' callbacks and predict
    (
        S + "callbacks/best_checkpoint.py",
        '        return value < self.best if self.mode == "min" else value > self.best',
        '        return value <= self.best if self.mode == "min" else value > self.best',
        PR,
    ),
    (
        S + "callbacks/best_checkpoint.py",
        '        return value < self.best if self.mode == "min" else value > self.best',
        "        return value < self.best",
        PR,
    ),
    (
        S + "callbacks/best_checkpoint.py",
        "        self.best = self.best_epoch = None",
        "        pass",
        PR,
    ),
    (
        S + "callbacks/csv_logger.py",
        "                kept = list(csv.reader(f))[: self._rows + 1]  # the header and the rows",
        "                kept = list(csv.reader(f))",
        PR,
    ),
    (
        S + "callbacks/csv_logger.py",
        '            writer.writerow([repr(row[c]) if c in row else "" for c in self._columns])',
        '            writer.writerow([f"{row[c]:.6g}" if c in row else "" for c in self._columns])',
        PR,
    ),
    (S + "inference.py", "    model.eval()\n", "", ["tests/test_practitioner.py"]),
    (
        S + "inference.py",
        "        restore_modes(was_training)",
        "        pass",
        ["tests/test_practitioner.py"],
    ),
    (
        S + "plotting.py",
        '        val = hist.val_losses if name == "loss" else hist.metrics.get(name)',
        '        val = hist.val_losses if name == "loss" else hist.metrics.get(f"train_{name}")',
        ["tests/test_practitioner.py"],
    ),
    (
        S + "validation.py",
        "                rows += xb.shape[0]",
        "                rows += 1",
        ["tests/test_practitioner.py", "tests/test_practice.py"],
    ),
    (
        S + "rules/optimizer.py",
        "        self.rules = [self._rule_for(g) for g in self.param_groups]",
        "        self.rules = [self.rule for g in self.param_groups]",
        ["tests/test_rule_optimizer.py"],
    ),
    (
        S + "rules/optimizer.py",
        '                rule(group["params"], group["lr"])',
        '                rule(group["params"], self.defaults["lr"])',
        ["tests/test_rule_optimizer.py"],
    ),
    (
        S + "checkpoint.py",
        '    return {"state": state["state"], "param_groups": groups, **more}',
        '    return {"state": state["state"], "param_groups": groups}',
        ["tests/test_rule_optimizer.py"],
    ),
    (
        S + "engines/accumulate.py",
        "                        p.grad.div_(group_rows)",
        "                        p.grad.div_(in_group)",
        ["tests/test_accumulate.py"],
    ),
    (
        S + "engines/accumulate.py",
        "            if in_group < k and not last:",
        "            if in_group < k:",
        ["tests/test_accumulate.py"],
    ),
    (
        S + "engines/accumulate.py",
        "            weighted = loss * xb.shape[0]",
        "            weighted = loss",
        ["tests/test_accumulate.py"],
    ),
    (
        S + "engines/base.py",
        "        if self.run.scaler is not None:  # the hooks see the true gradients\n            self.run.scaler.unscale_(self.run.optimizer)\n",
        "",
        ["tests/test_precision.py"],
    ),
    (S + "engines/base.py", "                scaler.update()\n", "", ["tests/test_precision.py"]),
    (
        S + "engines/eager.py",
        "            (loss if scale is None else scale(loss)).backward()",
        "            loss.backward()",
        ["tests/test_precision.py"],
    ),
    (
        S + "callbacks/precision.py",
        '        return None if self.precision == "bf16" else {"scaler": self._scaler().state_dict()}',
        "        return None",
        ["tests/test_precision.py"],
    ),
    (
        S + "callbacks/tensorboard.py",
        "            self._writers = [writer(str(self.log_dir), purge_step=start or None)]",
        "            self._writers = [writer(str(self.log_dir))]",
        ["tests/test_tensorboard.py"],
    ),
    # data at real sizes
    (
        S + "_validate.py",
        "for c in (t.split(rows) if t.dim() else (t,))]",
        "for c in (t.split(rows)[:1] if t.dim() else (t,))]",
        ["tests/test_realsize.py"],
    ),
    (
        S + "_validate.py",
        "    ends = [torch.stack(torch.aminmax(c))",
        "    ends = [torch.stack(torch.aminmax(c.nan_to_num(0.0)))",
        ["tests/test_realsize.py"],
    ),
    (
        S + "engines/base.py",
        "            return (\n                (x.index_select(0, i), y.index_select(0, i), b == last)\n                for b, i in enumerate(chunks)\n            )",
        "            return [\n                (x.index_select(0, i), y.index_select(0, i), b == last)\n                for b, i in enumerate(chunks)\n            ]",
        ["tests/test_realsize.py"],
    ),
    # recording and plotting
    (
        S + "_activationlog.py",
        '            fill = float("nan") if dtype.is_floating_point else 0',
        "            fill = 0",
        CK,
    ),
    (S + "_activationlog.py", "    if stats_need > limit:", "    if False:", CK),
    (
        S + "plotting.py",
        ".double().mean(1).tolist()",
        ".double().sum(1).tolist()",
        ["tests/test_plotting.py"],
    ),
    # rules
    (
        S + "rules/adam.py",
        "        m.lerp_(grad, 1 - beta1)",
        "        m.lerp_(grad, beta1)",
        RULES,
    ),
    (
        S + "rules/adam.py",
        "        step_size = lr / (1 - beta1**s)",
        "        step_size = lr",
        RULES,
    ),
    (
        S + "rules/adam.py",
        "            torch.maximum(peak, v, out=peak)",
        "            pass",
        RULES,
    ),
    (
        S + "rules/sgd.py",
        "            grad = grad.add(buf, alpha=momentum) if nesterov else buf",
        "            grad = buf",
        RULES,
    ),
    (
        S + "rules/sgd.py",
        "                buf = state.momentum_buffer[i] = grad.detach().clone()",
        "                buf = state.momentum_buffer[i] = torch.zeros_like(grad)",
        RULES,
    ),
    (
        S + "rules/adagrad.py",
        "    minus_clr = [-lr / (1 + (s - 1) * lr_decay) for s in t]",
        "    minus_clr = [-lr / (1 + s * lr_decay) for s in t]",
        RULES,
    ),
    (
        S + "rules/rmsprop.py",
        "            avg = v.addcmul(mean, mean, value=-1).sqrt_()",
        "            avg = v.sqrt()",
        RULES,
    ),
    (
        S + "rules/_common.py",
        "        if g is not None:\n            idx.append(i)",
        "        if True:\n            idx.append(i)",
        RULES,
    ),
]


def _extra_mutants() -> list[tuple[str, str, str, list[str]]]:
    """Mutants kept next to this file, one area a file (``tools/mutants_*.py``)."""
    found: list[tuple[str, str, str, list[str]]] = []
    for path in sorted(Path(__file__).parent.glob("mutants_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found.extend(module.MUTANTS)
    return found


def _run(k: int, mutant: tuple[str, str, str, list[str]], work: Path) -> tuple[bool, float]:
    path, old, new, tests = mutant
    copy = work / f"m{k}"
    shutil.copytree(ROOT / "src", copy / "src")
    target = copy / path
    text = target.read_text()
    assert text.count(old) >= 1, f"mutant {k} does not apply: {old!r} not in {path}"
    target.write_text(text.replace(old, new, 1))
    env = {**os.environ, "PYTHONPATH": f"{copy / 'src'}:{ROOT / 'tests'}", "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        killed = result.returncode != 0
    except subprocess.TimeoutExpired:
        killed = True  # a hang (e.g. ranks waiting for each other) is caught too
    return killed, time.perf_counter() - start


def main() -> int:
    """Run the mutants and print the kill rate; exit 1 below 90%."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    everything = MUTANTS + _extra_mutants()
    chosen = [(k, m) for k, m in enumerate(everything) if args.only in m[0] + m[1]]
    stale = [
        (k, path, old) for k, (path, old, _, _) in chosen if old not in (ROOT / path).read_text()
    ]
    for k, path, old in stale:  # found before minutes of runs, not after them
        print(f"mutant {k} does not apply: {old!r} is not in {path}", file=sys.stderr)
    if stale or not chosen:
        print("" if stale else f"no mutant matches --only {args.only!r}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda km: _run(km[0], km[1], Path(tmp)), chosen))
    survivors = []
    for (k, (path, old, new, _)), (killed, seconds) in zip(chosen, results, strict=True):
        print(
            f"{'killed ' if killed else 'SURVIVED'} {k:2d} {seconds:5.1f}s {path}: {old.strip()[:60]!r}"
        )
        if not killed:
            survivors.append((path, old, new))
    rate = 1 - len(survivors) / len(chosen)
    print(f"\n{len(chosen) - len(survivors)} of {len(chosen)} mutants killed ({rate:.0%})")
    for path, old, new in survivors:
        print(f"survivor in {path}:\n  - {old!r}\n  + {new!r}")
    return 0 if rate >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
