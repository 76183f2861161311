"""Stop training cleanly on SIGINT / SIGTERM: finish nothing more, keep the last complete epoch.

The handlers only set a flag; the loop checks it between steps and raises `TrainingInterrupted`, so a
signal never lands in the middle of a checkpoint write. A second signal raises at once (a stuck step
can still be escaped); checkpoints are written atomically, so that is safe too.

`TrainingInterrupted` subclasses KeyboardInterrupt on purpose: `except Exception` blocks between the
loop and the caller do not swallow it, and notebooks/papermill treat it like Ctrl-C. Catch it by name
to record the run as "interrupted", then re-raise.
"""

from __future__ import annotations

import signal
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (or by a callback); `epoch_completed` epochs are saved in last.pt."""

    def __init__(self, epoch_completed: int, reason: str = "interrupted"):
        super().__init__(f"training {reason} after {epoch_completed} complete epoch(s)")
        self.epoch_completed = epoch_completed
        self.reason = reason


class InterruptGuard:
    """Context manager: install SIGINT/SIGTERM handlers for the duration of fit, restore the old ones."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.received: str | None = None  # name of the first signal caught
        self.epoch_completed = 0  # kept current by the loop, for the immediate second-signal raise
        self._previous: dict[int, object] = {}
        self.escalate = True  # a second signal raises at once (off under torchrun: see distributed/stop.py)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is not None and self.escalate:  # second signal: stop now
            raise TrainingInterrupted(self.epoch_completed, f"interrupted by {name}")
        self.received = self.received or name

    def check(self, epoch_completed: int) -> None:
        """Raise TrainingInterrupted if a signal arrived since fit started."""
        if self.received is not None:
            raise TrainingInterrupted(epoch_completed, f"interrupted by {self.received}")

    def __enter__(self) -> "InterruptGuard":
        # signal.signal only works in the main thread; elsewhere (e.g. a worker thread) we just don't guard.
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()
