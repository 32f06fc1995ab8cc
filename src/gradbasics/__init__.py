"""gradbasics: reference PyTorch training primitives, each checked against an oracle.

The public names below are imported on first use (PEP 562), so ``gradbasics --version``
answers without importing torch; ``from gradbasics import train_loop`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradbasics._version import __version__

if TYPE_CHECKING:
    from gradbasics import callbacks, rules
    from gradbasics.callbacks import Callback, EarlyStopping
    from gradbasics.checkpoint import (
        Checkpoint,
        CheckpointError,
        export_state_dict,
        load_checkpoint,
        save_checkpoint,
    )
    from gradbasics.data import LossFn, batched_loss, mse_loss
    from gradbasics.history import DivergenceError, EpochFn, TrainHistory, TrainingInterrupted
    from gradbasics.inference import predict
    from gradbasics.models import ChainModel, FrozenFirstModel
    from gradbasics.plotting import plot_activations, plot_losses, plot_lr_find, plot_metrics
    from gradbasics.rangetest import LRFindResult, lr_find
    from gradbasics.recording import ActivationRecorder
    from gradbasics.schedules import LRSchedule
    from gradbasics.steps import legacy_data_step, manual_sgd_step
    from gradbasics.training import UpdateRule, train_loop
    from gradbasics.unitstats import DeadUnitsWarning, UnitStats, dead_units, unit_stats
    from gradbasics.validation import Metric, evaluate


_WHERE = {
    "ActivationRecorder": "gradbasics.recording",
    "Callback": "gradbasics.callbacks",
    "ChainModel": "gradbasics.models",
    "Checkpoint": "gradbasics.checkpoint",
    "CheckpointError": "gradbasics.checkpoint",
    "DeadUnitsWarning": "gradbasics.unitstats",
    "DivergenceError": "gradbasics.history",
    "EpochFn": "gradbasics.history",
    "EarlyStopping": "gradbasics.callbacks",
    "FrozenFirstModel": "gradbasics.models",
    "LRFindResult": "gradbasics.rangetest",
    "LRSchedule": "gradbasics.schedules",
    "LossFn": "gradbasics.data",
    "Metric": "gradbasics.validation",
    "TrainHistory": "gradbasics.history",
    "TrainingInterrupted": "gradbasics.history",
    "UnitStats": "gradbasics.unitstats",
    "UpdateRule": "gradbasics.training",
    "batched_loss": "gradbasics.data",
    "callbacks": "gradbasics.callbacks",
    "dead_units": "gradbasics.unitstats",
    "evaluate": "gradbasics.validation",
    "export_state_dict": "gradbasics.checkpoint",
    "legacy_data_step": "gradbasics.steps",
    "load_checkpoint": "gradbasics.checkpoint",
    "lr_find": "gradbasics.rangetest",
    "manual_sgd_step": "gradbasics.steps",
    "mse_loss": "gradbasics.data",
    "plot_activations": "gradbasics.plotting",
    "plot_losses": "gradbasics.plotting",
    "plot_lr_find": "gradbasics.plotting",
    "plot_metrics": "gradbasics.plotting",
    "predict": "gradbasics.inference",
    "rules": "gradbasics.rules",
    "save_checkpoint": "gradbasics.checkpoint",
    "train_loop": "gradbasics.training",
    "unit_stats": "gradbasics.unitstats",
}

__all__ = [
    "ActivationRecorder",
    "Callback",
    "ChainModel",
    "Checkpoint",
    "CheckpointError",
    "DeadUnitsWarning",
    "DivergenceError",
    "EarlyStopping",
    "EpochFn",
    "FrozenFirstModel",
    "LRFindResult",
    "LRSchedule",
    "LossFn",
    "Metric",
    "TrainHistory",
    "TrainingInterrupted",
    "UnitStats",
    "UpdateRule",
    "__version__",
    "batched_loss",
    "callbacks",
    "dead_units",
    "evaluate",
    "export_state_dict",
    "legacy_data_step",
    "load_checkpoint",
    "lr_find",
    "manual_sgd_step",
    "mse_loss",
    "plot_activations",
    "plot_losses",
    "plot_lr_find",
    "plot_metrics",
    "predict",
    "rules",
    "save_checkpoint",
    "train_loop",
    "unit_stats",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gradbasics' has no attribute {name!r}")
    found = importlib.import_module(module)
    value = found if name in ("rules", "callbacks") else getattr(found, name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
