"""gradbasics: reference PyTorch training primitives, each checked against an oracle."""

from gradbasics import rules
from gradbasics._version import __version__
from gradbasics.checkpoint import (
    Checkpoint,
    CheckpointError,
    export_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from gradbasics.data import LossFn, batched_loss, mse_loss
from gradbasics.history import Callback, DivergenceError, TrainHistory, TrainingInterrupted
from gradbasics.models import ChainModel, FrozenFirstModel
from gradbasics.plotting import plot_activations, plot_losses
from gradbasics.recording import ActivationRecorder
from gradbasics.schedules import LRSchedule
from gradbasics.steps import legacy_data_step, manual_sgd_step
from gradbasics.training import UpdateRule, train_loop
from gradbasics.validation import EarlyStopping, Metric, evaluate

__all__ = [
    "ActivationRecorder",
    "Callback",
    "ChainModel",
    "Checkpoint",
    "CheckpointError",
    "DivergenceError",
    "EarlyStopping",
    "FrozenFirstModel",
    "LRSchedule",
    "LossFn",
    "Metric",
    "TrainHistory",
    "TrainingInterrupted",
    "UpdateRule",
    "__version__",
    "batched_loss",
    "evaluate",
    "export_state_dict",
    "legacy_data_step",
    "load_checkpoint",
    "manual_sgd_step",
    "mse_loss",
    "plot_activations",
    "plot_losses",
    "rules",
    "save_checkpoint",
    "train_loop",
]
