"""Step engines: one object per path that runs an epoch's steps for train_loop.

- :class:`EagerEngine`: reads each loss as it comes (the CPU path, custom rules, optimizers).
- :class:`DeviceEngine`: losses stay on the device, non-finite steps masked there.
- :class:`GraphEngine`: each step captured once in a CUDA graph and replayed.
- :class:`DDPEngine`: this rank's shard of every global batch, one all-reduce per epoch.
- :class:`AccumulateEngine`: one update from the gradients of ``k`` consecutive batches.

They share one interface (:class:`Engine`): ``run_epoch(epoch) -> mean loss``, raising
:class:`Diverged` or :class:`Interrupted`; the rest of train_loop is the same for all.
"""

from gradbasics.engines.accumulate import AccumulateEngine
from gradbasics.engines.base import Diverged, Engine, Interrupted, Run
from gradbasics.engines.ddp import DDPEngine
from gradbasics.engines.device import DeviceEngine
from gradbasics.engines.eager import EagerEngine
from gradbasics.engines.graph import GraphEngine

__all__ = [
    "AccumulateEngine",
    "DDPEngine",
    "DeviceEngine",
    "Diverged",
    "EagerEngine",
    "Engine",
    "GraphEngine",
    "Interrupted",
    "Run",
]
