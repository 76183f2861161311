"""Pick the compute device: cuda, then mps, then cpu, unless told; set the CPU thread count for a while."""

import contextlib

import torch

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"DEVICE={name} asked for, but no CUDA device is available (use DEVICE=cpu or auto)")
    if name.startswith("cuda:") and name[5:].isdigit() and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"DEVICE={name} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s), numbered from 0")
    if name not in ("cpu", "mps", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ConfigError(f"unknown DEVICE={name!r}: use auto, cpu, cuda, cuda:N or mps")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("DEVICE=mps asked for, but this torch cannot use an Apple GPU here (use DEVICE=cpu or auto)")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with `n` intra-op CPU threads (this OS thread's setting), then restore the old count.
    Small kernels on a team of threads lose more to spin-waiting than they gain, ~10x on a busy 2-core machine."""
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def use_fastest_kernels(device: torch.device) -> None:
    """On CUDA, cuDNN times its convolution algorithms once per input shape and keeps the fastest: training
    batches keep one shape, so the timing pays for itself (fit() and the bench both call this)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
