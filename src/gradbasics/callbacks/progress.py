"""A progress bar over the epochs (tqdm), showing the loss of the epoch just finished."""

from __future__ import annotations

from typing import Any

from gradbasics.callbacks.base import Callback
from gradbasics.history import TrainHistory

__all__ = ["ProgressBar"]


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "progress=True needs tqdm; install it with: pip install 'gradbasics[progress]'"
        ) from exc
    return tqdm


def progress_bar(epochs: int) -> Any:
    """A tqdm bar over ``epochs`` epochs."""
    return _tqdm()(total=epochs, unit="epoch")


class ProgressBar(Callback):
    """A tqdm bar: one tick per epoch, the epoch's loss (and ``val_loss``) beside it.

    It has no settings and no state, so it may come and go between a run and its resume
    (the bar starts at the resumed epoch). ``train_loop(progress=True)`` builds it; it
    needs ``pip install 'gradbasics[progress]'``.

    Raises:
        ImportError: At the start of a run, when tqdm is not installed.
    """

    order = 90
    reads_history = False

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self) -> None:
        """Check that tqdm imports (the bar itself waits for the first epoch)."""
        self.bar = None
        if self.loop.lead:
            _tqdm()

    def _open(self) -> Any:
        if self.bar is None and self.loop.lead:
            self.bar = progress_bar(self.loop.epochs)
            self.bar.update(self.loop.start)
        return self.bar

    def on_epoch_end(self, epoch: int, history: TrainHistory) -> None:
        """Tick, with the epoch's numbers."""
        bar = self._open()
        if bar is None:
            return
        shown = {"loss": f"{history.losses[-1]:.4g}"}
        if history.val_losses:
            shown["val_loss"] = f"{history.val_losses[-1]:.4g}"
        bar.set_postfix(shown, refresh=False)
        bar.update(1)

    def on_train_end(self, history: TrainHistory) -> None:
        """Close the bar (opened now when no epoch ran)."""
        bar = self._open()
        if bar is not None:
            bar.close()
        self.bar = None
