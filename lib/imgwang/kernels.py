"""The Jupyter kernel that papermill starts for a stage: encrypted sockets where the stack supports them."""

from __future__ import annotations

import zmq
from jupyter_client.manager import AsyncKernelManager
from traitlets import default


class StageKernelManager(AsyncKernelManager):
    """Provisions CurveZMQ keys for the kernel's sockets when pyzmq and the kernelspec support them
    ("auto"). Without them the kernel's traffic over local TCP is readable by other processes on the
    machine, and ipykernel prints a warning saying so at every stage."""

    @default("transport_encryption")
    def _transport_encryption_default(self) -> str:
        return "auto" if zmq.has("curve") else "disabled"
