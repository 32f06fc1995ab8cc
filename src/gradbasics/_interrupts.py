"""Deferring Ctrl-C and SIGTERM to the end of a training step, so no step is half-applied."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

__all__: list[str] = []

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DeferredInterrupt:
    """While active, SIGINT or SIGTERM only sets :attr:`pending`; the loop raises later.

    A second signal while one is pending aborts at once (``KeyboardInterrupt``), for a
    step that hangs; atomic checkpoint writes keep the last checkpoint intact either way.
    It takes over a signal only in the main thread and only from its default handler
    (Python's for SIGINT, the system's for SIGTERM), so a handler the user installed, or
    a signal the parent process told us to ignore, is left alone.
    """

    def __init__(self) -> None:
        self.pending = False
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.pending:  # the second one: stop waiting for the step
            raise KeyboardInterrupt(
                f"{signal.Signals(signum).name} again while waiting for the step to finish: "
                "aborted at once; the last checkpoint written is intact."
            )
        self.pending = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is not threading.main_thread():
            return self
        defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        for sig in _SIGNALS:
            if signal.getsignal(sig) is defaults[sig]:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()
