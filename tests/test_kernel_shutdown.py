"""The stage's kernel manager shuts a finished kernel down without interrupting it (imgwang.stages.kernel)."""

import asyncio
import time

import psutil
import pytest
from jupyter_client.manager import AsyncKernelManager

from imgwang.stages.kernel import StageKernelManager


async def shut_down_after_a_cell(manager_class, flag):
    """Start a kernel, run a cell that records any SIGINT in `flag`, shut the kernel down; its pid."""
    km = manager_class(kernel_name="python3")
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        # ipykernel ignores SIGINT between messages (its post_handler_hook restores SIG_IGN): keep the cell's handler
        code = ("import pathlib, signal\n"
                f"signal.signal(signal.SIGINT, lambda *a: pathlib.Path({str(flag)!r}).touch())\n"
                "get_ipython().kernel.post_handler_hook = lambda: None")
        reply = await client.execute(code, reply=True, timeout=60)
        assert reply["content"]["status"] == "ok"
        pid = km.provisioner.pid
    finally:
        client.stop_channels()
        await km.shutdown_kernel()
    return pid


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited, not yet reaped
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("manager_class", [StageKernelManager, AsyncKernelManager])
def test_a_finished_kernel_is_shut_down_without_sigint(manager_class, tmp_path):
    flag = tmp_path / "interrupted"
    pid = asyncio.run(shut_down_after_a_cell(manager_class, flag))
    time.sleep(0.2)  # a signal sent at shutdown has been handled by now
    assert gone(pid)
    # jupyter_client's own manager interrupts first (the race that printed "KeyboardInterrupt caught in kernel");
    # the stage's does not
    assert flag.exists() == (manager_class is AsyncKernelManager)
