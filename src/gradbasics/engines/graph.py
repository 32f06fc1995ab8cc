"""The graph engine: each step captured once in a CUDA graph, then replayed.

At one row per batch a GPU step is nothing but kernel launches; replaying a captured
graph launches the whole step (batch gather, forward, loss, backward, masked update, loss
store) at once. Everything the step touches is static: the data, a device copy of the
epoch's permutation, a batch counter, the loss buffer and the sticky finite flag, so a
replay needs no argument. There is one step function per distinct batch size (all rows,
full batches, the last partial batch); each runs eagerly :data:`WARMUP` times on a side
stream (real training steps, as the device engine would run them), is then captured and
from then on replayed. The step's Python, hooks included, runs only while capturing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gradbasics._device import sanctioned_sync
from gradbasics.engines.base import Engine, Run, UpdateRule
from gradbasics.engines.device import read_losses
from gradbasics.steps import legacy_data_step, manual_sgd_step

__all__ = ["WARMUP", "GraphEngine", "refusal"]

WARMUP = 3
"""Eager runs of each step function before its capture (what CUDA graphs ask for)."""

REQUIRE_CUDA = True  # tests set it False to run the bookkeeping eagerly on the CPU


def refusal(
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    update: UpdateRule,
    distributed: bool,
) -> str | None:
    """Why ``graph=True`` cannot serve this run, or None when it can."""
    if REQUIRE_CUDA and device.type != "cuda":
        return f"it needs a model on a CUDA device, got one on {device}"
    if distributed:
        return "it does not support distributed (DDP) runs"
    if optimizer is not None:
        return (
            f"it masks a non-finite step on the device, which an optimizer's step() "
            f"({type(optimizer).__name__}) cannot do; use lr= with a built-in update rule"
        )
    if update not in (manual_sgd_step, legacy_data_step):
        return "it supports the built-in update rules (manual_sgd_step, legacy_data_step) only"
    return None


class _Captured:
    """One step function and, on CUDA, the graph it was captured in."""

    def __init__(self, step: Callable[[], None], device: torch.device) -> None:
        self.step, self.device = step, device
        self.graph: torch.cuda.CUDAGraph | None = None

    def capture(self, before_each: Callable[[], object]) -> None:
        """Warm up on a side stream (real steps, undone by the caller), then capture."""
        if self.device.type != "cuda":  # the CPU stand-in: replays run the step eagerly
            before_each()
            self.step()
            return
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                before_each()
                self.step()
        main.wait_stream(side)
        before_each()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.step()  # recorded, not run
        except Exception as exc:
            raise _CaptureFailed(str(exc)) from exc
        self.graph = graph

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.step()


class _CaptureFailed(RuntimeError):
    pass


class GraphEngine(Engine):
    """Captured steps over static buffers; one loss read per epoch.

    A captured step runs no Python when replayed, so no step hook is served, and its
    learning rate is fixed.

    Every step function is warmed up and captured when the engine is built, before the
    first epoch; the warm-up steps are then undone (parameters copied back in place, the
    flag and counter reset), so training starts from the model as it was and every
    training step is a replay. A capture that fails leaves the model as it was.
    """

    serves = frozenset()

    def __init__(self, run: Run, last_finite: float | None) -> None:
        super().__init__(run, last_finite)
        dev, n, size = run.device, run.rows, run.size
        self.full = n // size  # batches of `size` rows
        self.ok = torch.ones((), dtype=torch.bool, device=dev)  # sticky "all finite"
        self.counter = torch.zeros(1, dtype=torch.long, device=dev)  # batch index in epoch
        self.perm = torch.arange(n, device=dev)  # (N,) this epoch's order, rewritten in place
        self.losses: Tensor | None = None  # (batches,), allocated by the first warm-up step
        self.steps: list[_Captured] = []
        last_is_tail = n % size != 0
        if size == n:
            self.steps.append(self._step(lambda: None, slot=0, record=True))
        else:
            chunk = self.perm[: self.full * size].view(self.full, size)  # (full, size)
            rows = lambda: chunk.index_select(0, self.counter).view(-1)  # noqa: E731 (size,)
            self.steps.append(self._step(rows, slot=None, record=not last_is_tail))
        if last_is_tail:
            tail = self.perm[self.full * size :]  # (N % size,)
            self.steps.append(self._step(lambda: tail, slot=self.full, record=True))
        snapshot = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        try:
            with sanctioned_sync():  # setup may wait for the device; the epochs do not
                for s in self.steps:
                    s.capture(self.counter.zero_)
        except _CaptureFailed as exc:
            self._undo(snapshot)
            raise ValueError(
                f"graph=True could not capture the training step in a CUDA graph ({exc}); "
                "the model was left as it was. A forward pass or loss that reads values "
                "on the host cannot be captured: use graph=False."
            ) from exc
        except BaseException:
            self._undo(snapshot)
            raise
        self._undo(snapshot)

    def _undo(self, snapshot: dict[str, Tensor]) -> None:
        """Copy the parameters back in place (the graphs hold their addresses)."""
        self.run.model.load_state_dict(snapshot)
        for p in self.run.params:
            p.grad = None
        self.ok.fill_(True)
        self.counter.zero_()

    def _step(self, rows: Callable[[], Tensor | None], slot: int | None, record: bool) -> _Captured:
        run, batches = self.run, len(self.run.sizes)
        where = None if slot is None else torch.full((1,), slot, device=run.device)

        def step() -> None:
            i = rows()
            xb = run.x if i is None else run.x.index_select(0, i)
            yb = run.y if i is None else run.y.index_select(0, i)
            loss = run.loss_fn(self.forward(xb, record), yb)
            self.first_step(loss)
            if self.losses is None:
                self.losses = torch.empty(batches, dtype=loss.dtype, device=run.device)
            detached = loss.detach()
            self.losses.index_copy_(0, self.counter if where is None else where, detached.view(1))
            torch.logical_and(self.ok, torch.isfinite(detached), out=self.ok)
            loss.backward()
            self.finish(self.ok)
            if where is None:
                self.counter.add_(1)

        return _Captured(step, run.device)

    def run_epoch(self, epoch: int) -> float:
        """Replay one epoch's steps, then read its losses once."""
        run = self.run
        if run.size != run.rows:
            perm = torch.randperm(run.rows, generator=run.generator)  # (N,) on the CPU
            if self.perm.device.type == "cuda":  # pinned: the copy does not block the host
                perm = perm.pin_memory()
            self.perm.copy_(perm, non_blocking=True)
            self.counter.zero_()
        for _ in range(self.full if run.size != run.rows else 1):
            self.steps[0]()
            self.check_interrupt()
        if len(self.steps) > 1:
            self.steps[1]()
            self.check_interrupt()
        assert self.losses is not None
        return run.mean_loss(read_losses(self, self.losses))
