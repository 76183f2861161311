"""`held_rotation`: rotation whose first step of epoch 2 waits for this process's SIGINT or SIGTERM.

For the interrupt tests: they signal a stage once epoch 1 is saved, and the training must still be running
when the signal lands. Waiting for it inside a step (rather than training many epochs and hoping the signal
comes first) keeps them short and free of that race; the signal still lands mid-epoch, as a Ctrl-C does.
It waits only while IMGWANG_TEST_HOLD=1 (a resumed run leaves it unset) and at most HOLD_S seconds.

Loaded as a task kept outside the lab is: `IMGWANG_TASKS=held_task`, with tests/ on PYTHONPATH (conftest's
`held_env`), only in the stages a test starts: imported here, it would join every test's list of tasks.
"""

import os
import signal
import threading
import time

from imgwang.tasks import register
from imgwang.tasks.rotation import Rotation

HOLD_S = 120.0


@register
class HeldRotation(Rotation):
    name = "held_rotation"

    def before_step(self, model, step, total_steps, steps_per_epoch):
        if step == steps_per_epoch and os.environ.get("IMGWANG_TEST_HOLD") == "1":
            wait_for_signal(HOLD_S)


def wait_for_signal(timeout: float) -> bool:
    """Sleep until SIGINT or SIGTERM reaches this process (passing it on to the handler in place: the
    training's InterruptGuard) or `timeout` seconds pass. True if a signal came."""
    got = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def note(signum, frame):
        got.set()
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)

    def came() -> bool:
        return got.is_set() or already_signalled(previous.values())

    for sig in previous:
        signal.signal(sig, note)
    try:
        deadline = time.monotonic() + timeout
        while not came() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return came()


def already_signalled(handlers) -> bool:
    """The signal landed before the hold began (between epoch 1's checkpoint, which the test waits for, and
    this step): the training's InterruptGuard holds it, and waiting for another would stall HOLD_S seconds."""
    return any(getattr(getattr(h, "__self__", None), "received", None) is not None for h in handlers)

