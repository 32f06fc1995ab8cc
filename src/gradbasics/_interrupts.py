"""Deferring Ctrl-C to the end of a training step, so no step is ever half-applied."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

__all__: list[str] = []


class DeferredInterrupt:
    """While active, SIGINT only sets :attr:`pending`; the loop raises at a safe point.

    It takes over SIGINT only in the main thread and only from Python's default handler,
    so a handler the user installed is left alone.
    """

    def __init__(self) -> None:
        self.pending = False
        self._previous: object = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.pending = True

    def __enter__(self) -> DeferredInterrupt:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._previous = None
