"""Executing a template notebook with papermill: the one place the lab starts a notebook's kernel.

`run_notebook` runs the template with its parameters into the output notebook, in a kernel whose sockets are
encrypted where the stack supports it, passes Ctrl-C and SIGTERM on to the kernel (so training stops after
its last complete epoch) and sorts how it ended into an `Outcome`. The saved notebook is then tidied: each
progress bar once (imgwang.core.progress), a summary of its answer on top (imgwang.stages.summary). The callers
(bin/stage.py, bin/compare.py) turn the outcome into their error line, run.json record and exit code.
"""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from ..core.progress import settle_bars
from .summary import open_on_answer

INTERRUPTIONS = ("TrainingInterrupted", "KeyboardInterrupt")  # what a signal raises in a cell


class StageKernelManager(AsyncKernelManager):
    """Provisions CurveZMQ keys for the kernel's sockets when pyzmq and the kernelspec support them
    ("auto"). Without them the kernel's traffic over local TCP is readable by other processes on the
    machine, and ipykernel prints a warning saying so at every stage."""

    @default("transport_encryption")
    def _transport_encryption_default(self) -> str:
        return "auto" if zmq.has("curve") else "disabled"

    async def _async_interrupt_kernel(self) -> None:
        # jupyter_client interrupts the kernel before asking it to shut down. papermill shuts it down only after
        # the last cell has ended (or failed, or was interrupted by our own forwarded signal), so that SIGINT has
        # nothing to stop: it only races the kernel's last reply and prints "ERROR | KeyboardInterrupt caught in
        # kernel." under a stage that succeeded. A kernel that does not answer the shutdown request is still killed.
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


@dataclass
class Outcome:
    status: str            # "done", "failed", "interrupted" or "interrupted (kernel died)"
    error: str = ""        # "<exception>: <message>" of the failure
    in_cell: bool = False  # raised by a cell: the executed notebook shows it
    signalled: bool = False  # Ctrl-C or SIGTERM arrived while the notebook ran

    @property
    def ok(self) -> bool:
        return self.status == "done"

    @property
    def exit_code(self) -> int:
        """0 done, 1 failed, 130 interrupted (by a signal or the kernel's death: RESUME=1 continues it)."""
        return {"done": 0, "failed": 1}.get(self.status, 130)


def log_cell_output() -> None:
    """Show the notebook's printed output (epoch lines, results) live: papermill logs it at INFO."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    logging.getLogger("papermill").addFilter(lambda r: not r.getMessage().startswith(("Executing Cell", "Ending Cell")))


def forward_signals_to_kernel() -> dict:
    """Pass Ctrl-C / SIGTERM on to the notebook kernel (it runs in its own session) as SIGINT."""
    import psutil

    state = {"interrupted": False}

    def handler(signum, frame):
        state["interrupted"] = True
        for child in psutil.Process().children(recursive=True):
            try:
                child.send_signal(signal.SIGINT)
            except psutil.Error:
                pass

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return state


def run_notebook(template: Path, out: Path, parameters: dict, cwd: Path, log_output: bool = False) -> Outcome:
    """Execute `template` into `out` (written even when a cell fails) with the kernel working in `cwd`; the saved
    copy then opens on its answer (imgwang.stages.summary: a summary on top, the template's parameters folded)."""
    outcome = execute(template, out, parameters, cwd, log_output)
    try:
        open_on_answer(out, outcome.status, outcome.error)
    except Exception as e:  # the notebook as papermill wrote it is still whole: the stage's result stands
        print(f"warning: could not write the summary cell of {out}: {type(e).__name__}: {e}", file=sys.stderr)
    return outcome


def execute(template: Path, out: Path, parameters: dict, cwd: Path, log_output: bool = False) -> Outcome:
    import papermill as pm

    state = forward_signals_to_kernel()
    try:
        pm.execute_notebook(str(template), str(out), parameters=parameters, cwd=str(cwd), kernel_name="python3",
                            log_output=log_output, progress_bar=False, kernel_manager_class=StageKernelManager)
    except pm.PapermillExecutionError as e:
        interrupted = state["interrupted"] or e.ename in INTERRUPTIONS
        return Outcome("interrupted" if interrupted else "failed", f"{e.ename}: {e.evalue}", True, state["interrupted"])
    except Exception as e:  # kernel died, notebook unreadable...
        died = type(e).__name__ == "DeadKernelError"  # killed by a signal, most often the OOM killer
        status = "interrupted" if state["interrupted"] else "interrupted (kernel died)" if died else "failed"
        return Outcome(status, f"{type(e).__name__}: {e}", False, state["interrupted"])
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        settle_bars(out)  # each progress bar once, in its final state, in every viewer
    return Outcome("done", signalled=state["interrupted"])
