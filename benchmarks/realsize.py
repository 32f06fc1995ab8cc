"""The real-size case: an MLP on 60,000 x 784 inputs, train_loop against the minimal loop.

Usage: python benchmarks/realsize.py [--rounds 5] [--epochs 2] [--rows 60000] [--json PATH]

Each run is a fresh process (``--worker NAME``) that builds the data (float32 inputs,
10 classes), then trains an MLP 784-256-256-10 with ``CrossEntropyLoss``, batch 128, on
2 threads; it reports the training time (argument checks included), the growth of its
peak resident memory during training over its resident memory before, and a hash of the
final weights. Runs are interleaved over rounds; the table gives median time ratios and
the memory growth against the minimal hand loop (``randperm`` and ``index_select`` per
batch), for SGD by ``lr=`` and for Adam by ``optimizer=``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CANDIDATES = ("hand-sgd", "ours-sgd", "hand-adam", "ours-adam")


def _rss() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def worker(name: str, rows: int, epochs: int) -> dict[str, object]:
    """Train once; return seconds, peak RSS growth and the weights' hash."""
    import torch
    from torch import nn

    from gradbasics import train_loop  # imported before timing: the hand loop imports nothing

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 784, generator=g)  # (N, 784), no temporary
    y = torch.randint(0, 10, (rows,), generator=g)  # (N,)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))  # fmt: skip
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(2)
    params = list(model.parameters())
    adam = torch.optim.Adam(params, lr=1e-3) if name.endswith("adam") else None
    before = _rss()
    start = time.perf_counter()
    if name.startswith("ours"):
        kw = {"optimizer": adam} if adam is not None else {"lr": 0.05}
        train_loop(model, x, y, epochs=epochs, batch_size=128, loss_fn=loss_fn, generator=gen,
                   **kw)  # type: ignore[arg-type]  # fmt: skip
    else:
        for _ in range(epochs):
            perm = torch.randperm(rows, generator=gen)
            for idx in perm.split(128):
                loss = loss_fn(model(x.index_select(0, idx)), y.index_select(0, idx))
                loss.item()  # what any loop reads to report and to stop on NaN
                loss.backward()
                if adam is not None:
                    adam.step()
                    adam.zero_grad(set_to_none=True)
                else:
                    with torch.no_grad():
                        for p in params:
                            p.add_(p.grad, alpha=-0.05)
                            p.grad = None
    seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    for v in model.state_dict().values():
        digest.update(v.detach().numpy().tobytes())
    return {"seconds": seconds, "growth": _peak() - before, "input_bytes": x.nbytes,
            "weights": digest.hexdigest()[:16]}  # fmt: skip


def main() -> int:
    """Run the rounds in fresh processes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", choices=CANDIDATES)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--json", default="benchmarks/realsize.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.epochs)))
        return 0
    runs: dict[str, list[dict[str, object]]] = {c: [] for c in CANDIDATES}
    for r in range(args.rounds):
        order = CANDIDATES if r % 2 == 0 else CANDIDATES[::-1]
        for name in order:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", name, "--rows", str(args.rows),
                 "--epochs", str(args.epochs)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = summarize(runs)
    print(f"{'rule':6} {'time ratio':>10} {'(min-max)':>13} {'hand RSS +':>11} {'ours RSS +':>11} "
          f"{'same bits':>9}  result")  # fmt: skip
    for row in summary:
        mib = f"{row['hand_growth'] / 2**20:8.1f} MB {row['ours_growth'] / 2**20:8.1f} MB"
        print(f"{row['rule']:6} {row['ratio']:10.3f} {row['ratio_min']:6.3f}-"
              f"{row['ratio_max']:6.3f} {mib} {row['same_bits']!s:>9}  "
              f"{'pass' if row['passed'] else 'FAIL'}")  # fmt: skip
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from harness import environment

    payload = {
        **environment(2),
        "command": " ".join(["benchmarks/realsize.py", *sys.argv[1:]]),
        "rounds": args.rounds,
        "epochs": args.epochs,
        "rows": args.rows,
        "summary": summary,
        "runs": runs,
    }
    Path(args.json).write_text(json.dumps(payload, indent=1))
    print(f"results written to {args.json}")
    return 0 if all(row["passed"] for row in summary) else 1


def summarize(runs: dict[str, list[dict[str, object]]]) -> list[dict[str, object]]:
    """Per rule: the median time ratio (and its range), memory growths, same bits, verdict.

    Targets: a median ratio of at most 1.05, a peak growth at most the hand loop's plus
    10% of the input's size, and bit-identical weights.
    """
    out: list[dict[str, object]] = []
    for rule in ("sgd", "adam"):
        hand, ours = runs[f"hand-{rule}"], runs[f"ours-{rule}"]
        ratios = [
            float(o["seconds"]) / float(h["seconds"])  # type: ignore[arg-type]
            for o, h in zip(ours, hand, strict=True)
        ]
        ratio = statistics.median(ratios)
        grow_h = statistics.median(int(h["growth"]) for h in hand)  # type: ignore[call-overload]
        grow_o = statistics.median(int(o["growth"]) for o in ours)  # type: ignore[call-overload]
        size = int(hand[0]["input_bytes"])  # type: ignore[call-overload]
        same = {o["weights"] for o in ours} == {h["weights"] for h in hand}
        passed = ratio <= 1.05 and grow_o <= grow_h + 0.10 * size and same
        out.append({"rule": rule, "ratio": ratio, "ratio_min": min(ratios),
                    "ratio_max": max(ratios), "hand_growth": grow_h, "ours_growth": grow_o,
                    "input_bytes": size, "same_bits": same, "passed": passed})  # fmt: skip
    return out


if __name__ == "__main__":
    raise SystemExit(main())
