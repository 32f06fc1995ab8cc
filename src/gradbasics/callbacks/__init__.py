"""train_loop's features, each one :class:`Callback` in its own module.

``train_loop``'s keywords build these (``val=`` a :class:`Validation`, ``early_stopping=``
an :class:`~gradbasics.EarlyStopping`, ...); the same objects, and your own, go in ``callbacks=``.
"""

from gradbasics.callbacks.base import Callback, Loop, Step
from gradbasics.callbacks.best_checkpoint import BestCheckpoint
from gradbasics.callbacks.checkpointing import Checkpointing
from gradbasics.callbacks.clip import GradientClip
from gradbasics.callbacks.csv_logger import CSVLogger
from gradbasics.callbacks.early_stopping import EarlyStopping
from gradbasics.callbacks.precision import MixedPrecision
from gradbasics.callbacks.progress import ProgressBar
from gradbasics.callbacks.recording import ActivationRecording
from gradbasics.callbacks.schedule import Schedule
from gradbasics.callbacks.tensorboard import TensorBoardLogger
from gradbasics.callbacks.train_metrics import TrainMetrics
from gradbasics.callbacks.validation import Validation

__all__ = [
    "ActivationRecording",
    "BestCheckpoint",
    "CSVLogger",
    "Callback",
    "Checkpointing",
    "EarlyStopping",
    "GradientClip",
    "Loop",
    "MixedPrecision",
    "ProgressBar",
    "Schedule",
    "Step",
    "TensorBoardLogger",
    "TrainMetrics",
    "Validation",
]
