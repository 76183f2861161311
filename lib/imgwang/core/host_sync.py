"""Find the operations that make the host wait for a GPU, on any device (a CPU included).

A training step on a GPU is fast only while the host queues work ahead of the device. One operation that
needs a value back on the host (`.item()`, `bool(t.any())`, `nonzero`, boolean-mask indexing) or that
copies fresh host data to the device (`torch.tensor(...)`, `torch.from_numpy(...)`, `as_tensor` of a
Python number: a blocking copy from pageable memory) makes the host wait until the GPU has drained its
queue, and the GPU then idles while the host launches the next kernels.

On a GPU, `torch.cuda.set_sync_debug_mode` is the authoritative check (bin/gpu_check.py uses it). This
module finds the same culprits by the aten operations they dispatch, so the tests catch them on a CPU:

    with HostSyncs() as syncs:
        step()
    assert not syncs.found, syncs.found
"""

from __future__ import annotations

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_READS_BACK = {"_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "_unique", "_unique2",
               "unique_dim", "unique_consecutive", "repeat_interleave"}
_HOST_DATA = {"lift_fresh", "lift_fresh_copy"}  # a tensor made from Python or NumPy data


class HostSyncs(TorchDispatchMode):
    """Record, in order, each operation in the block that would make the host wait for a GPU.

    `ignore`: path fragments of code whose operations do not count, e.g. "torch/optim/": the optimisers
    keep their step counters in host tensors on a GPU too, so reading them there costs no wait."""

    def __init__(self, ignore: tuple[str, ...] = ()):
        super().__init__()
        self.found: list[str] = []
        self.ignore = tuple(ignore)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _READS_BACK:
            self._record(f"{name} (reads a value back to the host)")
        elif name in _HOST_DATA:
            self._record(f"{name} (host data copied to the device)")
        elif name in ("index", "index_put", "index_put_") and _has_bool_index(args):
            self._record(f"{name} with a boolean mask (its result size is read back)")
        return func(*args, **(kwargs or {}))

    def _record(self, what: str) -> None:
        frames = traceback.extract_stack()
        if self.ignore and any(part in f.filename for f in frames for part in self.ignore):
            return
        caller = next((f for f in reversed(frames) if "/torch/" not in f.filename and f.filename != __file__), frames[-1])
        self.found.append(f"{what} at {caller.filename.rsplit('/', 1)[-1]}:{caller.lineno} {caller.name}")


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())
