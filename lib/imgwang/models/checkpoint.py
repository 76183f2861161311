"""Saving and loading weights safely.

Writes are atomic (temporary file in the same folder, fsync, os.replace), so a crash never leaves a
half-written checkpoint under the real name. Encoder loads are strict: a state dict that does not match
the encoder key for key is an error, never a silent partial load (which would "transfer" random weights).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..errors import ImgwangError


def atomic_torch_save(obj, path) -> Path:
    """torch.save to `path` atomically; the folder is created if needed. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_encoder(encoder: nn.Module, path) -> Path:
    """Write the encoder's state dict (learned weights and BN statistics only) atomically."""
    return atomic_torch_save(encoder.state_dict(), path)


def _few(keys, n: int = 5) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_encoder(encoder: nn.Module, path) -> nn.Module:
    """Load a state dict saved by `save_encoder` into `encoder`, strictly. Returns the encoder."""
    path = Path(path)
    if not path.is_file():
        raise ImgwangError(f"no encoder checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, or pickled code we refuse to run
        raise ImgwangError(f"cannot read encoder checkpoint {path}: {type(e).__name__}: {e}".splitlines()[0]) from e
    if not isinstance(state, dict):
        raise ImgwangError(f"{path} does not hold a state dict (found {type(state).__name__})")
    own = encoder.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    arch = getattr(encoder, "arch", type(encoder).__name__)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_few(unexpected)}")
        raise ImgwangError(f"{path} does not match encoder {arch!r} ({'; '.join(parts)}); was it saved from another ARCH?")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise ImgwangError(f"{path} does not match encoder {arch!r}: {len(wrong)} tensors differ in shape, "
                           f"e.g. {k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
    encoder.load_state_dict(state, strict=True)
    return encoder
