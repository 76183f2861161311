"""Saving and loading weights safely.

Writes are atomic (imgwang.core.atomic), so a crash never leaves a half-written checkpoint under the real name.
Encoder loads are strict: a state dict that does not match the encoder key for key is an error, never a
silent partial load (which would "transfer" random weights).

An encoder is saved as its bare timm model's state dict (`encoder.body`, the names timm uses), in
`encoder.pt` and, beside it, `encoder.safetensors`: either loads outside this lab with

    timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file="encoder.pt"), num_classes=n)

(timm drops its own classifier from a checkpoint with another class count; feed it images normalised with
the ImageNet mean and std, which our Encoder applies inside). Files written before this format hold the
wrapper's names (`body.` + the timm name); load_encoder reads both. A fixed-size model (ViT) is built for the
stage's SIZE (models/encoders.py); its weights load into one built for another SIZE as timm loads them, the
position embeddings resampled (`resized_for`), so a ViT pretrained at 64 px fine-tunes at 128.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from ..core import atomic
from ..core.errors import ImgwangError


def kept_encoder(model: nn.Module) -> nn.Module:
    """The encoder a pretext model hands on (saved, transferred, kNN-monitored): its `kept_encoder` where it
    names one (DINO: the EMA teacher, which DINO evaluates and releases), else its `.encoder`."""
    kept = getattr(model, "kept_encoder", None)
    return model.encoder if kept is None else kept


def portable_state(encoder: nn.Module) -> dict:
    """The weights under the names the bare model uses (timm's names for a timm encoder)."""
    return getattr(encoder, "body", encoder).state_dict()


def save_encoder(encoder: nn.Module, path, safetensors_copy: bool = False) -> Path:
    """Write the encoder's weights and BN statistics atomically to `path` (a torch file) and, with
    `safetensors_copy`, the same tensors beside it under the suffix .safetensors, whose metadata records how to
    build the model again: `arch` and `timm_kwargs` (e.g. {"img_size": 64, "dynamic_img_size": true}). Returns `path`."""
    state = portable_state(encoder)
    atomic.torch_save(state, path)
    if safetensors_copy:
        atomic_safetensors_save(state, Path(path).with_suffix(".safetensors"),
                                {"arch": str(getattr(encoder, "arch", type(encoder).__name__)),
                                "timm_kwargs": json.dumps(getattr(encoder, "build_kwargs", {}))})
    return Path(path)


def atomic_safetensors_save(state: dict, path, metadata: dict | None = None) -> Path:
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in state.items()}, metadata=metadata)
    return atomic.write_bytes(path, data)


def read_state(path: Path) -> dict:
    """A state dict from a torch or safetensors file; one clear error for anything else."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a weights file, or pickled code we refuse to run
        raise ImgwangError(f"cannot read encoder checkpoint {path}: {type(e).__name__}: {e}".splitlines()[0]) from e


def _few(keys, n: int = 5) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def resized_for(model: nn.Module, state: dict) -> dict:
    """`state` as timm loads a checkpoint into a model built for another input size: the model family's
    `checkpoint_filter_fn` resamples the position embeddings (ViT: bicubic, as `dynamic_img_size` does per
    forward; swin: its relative position tables) to the model's grid. A family without one: `state` unchanged."""
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state
    try:
        return filter_fn(dict(state), model)
    except Exception:  # noqa: BLE001 (a filter for other checkpoints: the strict comparison then names the keys)
        return state


def load_encoder(encoder: nn.Module, path) -> nn.Module:
    """Load a state dict saved by `save_encoder` (or the older wrapper-named format) into `encoder`,
    strictly. Returns the encoder."""
    path = Path(path)
    if not path.is_file():
        raise ImgwangError(f"no encoder checkpoint at {path}")
    state = read_state(path)
    if not isinstance(state, dict):
        raise ImgwangError(f"{path} does not hold a state dict (found {type(state).__name__})")
    # The portable format names the bare model's weights; files written before it, the wrapper's (body.*).
    # Compare against whichever naming the file shares more keys with, so a mismatch names the right keys.
    candidates = [getattr(encoder, "body", encoder), encoder]
    target = max(candidates, key=lambda m: len(set(m.state_dict()) & set(state)))
    own = target.state_dict()
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
    if wrong:  # a fixed-size model (ViT) saved at another SIZE: timm's own loader resamples its position tables
        state = resized_for(target, state)
        wrong = [k for k in own if k not in state or own[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise ImgwangError(f"{path} does not match encoder {arch!r}: {len(wrong)} tensors differ in shape, "
                           f"e.g. {k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
    target.load_state_dict(state, strict=True)
    return encoder
