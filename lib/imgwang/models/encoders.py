"""Encoders: any timm model (random init) or the small `tinyconv`, behind one interface.

    enc = create_encoder("resnet18", img_size=64)
    maps = enc.forward_features(x)   # (B, C, h, w), x float in [0, 1]
    feats = enc(x)                   # (B, C) average-pooled
    enc.num_features, enc.arch

The encoder normalises its own input (ImageNet mean/std), so every task and loader hands it plain
[0, 1] images. The statistics are non-persistent buffers: they follow `.to(device)` but stay out of the
state dict, so a saved encoder holds learned weights only.

Fixed-size models (vision transformers and their kin: timm takes an `img_size` when they are built) are built
for the stage's SIZE and, where timm supports it, with `dynamic_img_size` and `dynamic_img_pad`: they then take
any input side (the position embedding is resampled to the input's grid, a side that is not a multiple of the
patch is padded), so multi-crop's smaller views work. `encoder_problem(arch, size, *sides)` says, before any
compute, why an encoder cannot be used (unknown name, a size it cannot take, no pooled feature); it builds the
model on the meta device, so it costs no memory and no arithmetic.
"""

from __future__ import annotations

import difflib
import functools
import os

import torch
from torch import nn

from ..core.errors import ConfigError

# A pretrained-weights lookup would block for ~47 s offline before failing; we never want weights anyway.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# timm is imported where a timm model is named, not here: it imports torchvision and torch._dynamo, seconds of every
# process's start on a 2-core CPU (tasks/registry.py), which a tinyconv stage (the sample's, the tests') never needs.

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TinyConv(nn.Module):
    """Four stride-2 conv-bn-relu blocks (32 -> 64 -> 128 -> 128 channels): trains in seconds on a CPU at 32-64 px."""

    def __init__(self, channels=(32, 64, 128, 128)):
        super().__init__()
        layers, c_in = [], 3
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),  # bias is redundant before BN
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.num_features = c_in

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Encoder(nn.Module):
    """Wraps a backbone whose `forward_features` returns feature maps; adds normalisation and pooling."""

    def __init__(self, body: nn.Module, num_features: int, arch: str, build_kwargs: dict | None = None,
                 token_pool: str = "avg"):
        super().__init__()
        self.body = body
        self.num_features = int(num_features)
        self.arch = arch
        self.build_kwargs = dict(build_kwargs or {})  # timm's size arguments: a saved encoder records them
        self.token_pool = token_pool  # a transformer's pooling, as timm pools that model: "token" (class token) | "avg"
        self.prefix_tokens = int(getattr(body, "num_prefix_tokens", 0) or 0)  # class and register tokens come first
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> feature maps (B, num_features, h, w)."""
        maps = self.body.forward_features((x - self.mean) / self.std)
        return _as_channels_first(maps, self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> (B, num_features) pooled features: a CNN's maps averaged; a transformer's tokens pooled as timm
        pools that model: the class token where its global_pool is "token" (a ViT's default, and the feature DINO
        trains its head on and evaluates), else the mean of the patch tokens (class and register tokens left out)."""
        out = self.body.forward_features((x - self.mean) / self.std)
        if out.dim() == 3 and out.shape[-1] == self.num_features:  # tokens (B, N, C)
            if self.token_pool == "token" and self.prefix_tokens > 0:
                return out[:, 0]
            return out[:, self.prefix_tokens:].mean(dim=1)
        return _as_channels_first(out, self.num_features).mean(dim=(2, 3))

    def token_grid(self, height: int, width: int) -> tuple[int, int] | None:
        """(rows, columns) of a transformer's patch tokens for an input of that size (its patch grid, padded as
        dynamic_img_pad pads), so a per-token map can be drawn as the picture it covers; None for a CNN."""
        patch = getattr(getattr(self.body, "patch_embed", None), "patch_size", None)
        if patch is None:
            return None
        ph, pw = (patch, patch) if isinstance(patch, int) else patch
        return -(-height // ph), -(-width // pw)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_features={self.num_features}"


def _as_channels_first(maps: torch.Tensor, channels: int) -> torch.Tensor:
    """Give every backbone the same (B, C, h, w) output.

    Some timm models return channels-last maps (B, h, w, C) (e.g. swin) or token sequences (B, N, C)
    (vision transformers); tokens become a (C, N, 1) map so average pooling still averages tokens.
    """
    if maps.dim() == 3:
        return maps.transpose(1, 2).unsqueeze(-1)
    if maps.dim() == 4 and maps.shape[1] != channels and maps.shape[-1] == channels:
        return maps.permute(0, 3, 1, 2)
    return maps


def list_archs() -> list[str]:
    """Every name `create_encoder` accepts: our tinyconv first, then all timm models."""
    import timm

    return ["tinyconv", *timm.list_models()]


def _unknown(arch) -> str | None:
    if not isinstance(arch, str) or not arch:
        return f"ARCH must be a model name such as tinyconv or resnet18, got {arch!r}"
    if arch == "tinyconv":
        return None
    import timm

    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, list_archs(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        return (f"unknown ARCH={arch!r}: not a timm model name (e.g. tinyconv, resnet18, resnet34d, "
                f"mobilenetv3_small_100){hint}")
    return None


def _timm_body(arch: str, **kwargs) -> nn.Module:
    # Random init always (the Imagewang protocol forbids pretrained weights); no classifier, no pooling.
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=0, global_pool="", **kwargs)


@functools.lru_cache(maxsize=None)
def build_kwargs(arch: str, img_size: int | None = None) -> dict:
    """The size arguments timm's constructor of `arch` takes, most capable first: built for `img_size` (when
    given), taking any input side (`dynamic_img_size`) and padding sides that are not a multiple of the patch
    (`dynamic_img_pad`). A CNN takes none of them: {}. Tried on the meta device (no memory, no arithmetic)."""
    sized = {} if img_size is None else {"img_size": int(img_size)}
    for extra in ({"dynamic_img_size": True, "dynamic_img_pad": True}, {"dynamic_img_size": True}, {}):
        kwargs = {**sized, **extra}
        if not kwargs:
            break
        try:
            with torch.device("meta"):
                _timm_body(arch, **kwargs)
        except TypeError:  # the constructor does not take one of them
            continue
        except Exception:  # noqa: BLE001 (it took them and failed later: building it for real says why)
            pass
        return kwargs
    return {}


def create_encoder(arch: str, img_size: int | None = None) -> Encoder:
    """Build a randomly initialised encoder by name, for inputs of side `img_size` (what fixed-size models such as
    ViTs are built for; None: timm's default); an unknown name raises one clear ConfigError."""
    unknown = _unknown(arch)
    if unknown:
        raise ConfigError(unknown)
    if arch == "tinyconv":
        body = TinyConv()
        return Encoder(body, body.num_features, arch)
    kwargs = build_kwargs(arch, img_size)
    body = _timm_body(arch, **kwargs)
    pool = token_pool(arch) if hasattr(body, "num_prefix_tokens") else "avg"  # (a transformer of timm's kind)
    return Encoder(body, body.num_features, arch, kwargs, token_pool=pool)


@functools.lru_cache(maxsize=None)
def token_pool(arch: str) -> str:
    """How timm pools a transformer's tokens by default: "token" (the class token: ViT, DeiT) or "avg" (every other
    setting, an attention pool included: the body is built without its pooling, so the patch tokens are averaged).
    Read from the model built with its defaults on the meta device (no memory, no arithmetic)."""
    import timm

    try:
        with torch.device("meta"):
            pool = getattr(timm.create_model(arch, pretrained=False, num_classes=0), "global_pool", "avg")
    except Exception:  # noqa: BLE001 (a model that cannot be built without arguments: average its tokens)
        return "avg"
    return "token" if pool == "token" else "avg"


def encoder_problem(arch: str, size: int, *sides: int) -> str | None:
    """Why `arch` cannot serve as an encoder built for SIZE `size` and fed inputs of side `size` and `sides`
    (multi-crop's smaller views), as one line; None when it can. The model is built and run on the meta device:
    shapes are checked, nothing is computed or allocated."""
    unknown = _unknown(arch)
    if unknown or arch == "tinyconv":  # tinyconv's four stride-2 convolutions take any side
        return unknown
    try:
        with torch.device("meta"):
            body = _timm_body(arch, **build_kwargs(arch, size))
    except Exception as e:  # noqa: BLE001 (timm raises what it raises: any failure means "cannot be built")
        return f"ARCH={arch} cannot be built as an encoder without its classifier and pooling: {_first_line(e)}"
    channels = int(getattr(body, "num_features", 0) or 0)
    for side in sorted({int(size), *map(int, sides)}, reverse=True):
        what = f"{side}x{side} px inputs" + (f" (SIZE={size})" if side == size else f" (smaller views at SIZE={size})")
        try:
            with torch.no_grad():
                maps = body.forward_features(torch.empty(2, 3, side, side, device="meta"))
        except Exception as e:  # noqa: BLE001
            return f"ARCH={arch} cannot take {what}: {_first_line(e)}"
        if torch.is_tensor(maps) and maps.dim() in (3, 4):
            maps = _as_channels_first(maps, channels)
        if not torch.is_tensor(maps) or maps.dim() != 4 or maps.shape[1] != channels or channels < 1:
            shape = tuple(maps.shape) if torch.is_tensor(maps) else type(maps).__name__
            return (f"ARCH={arch} gives no pooled feature for {what}: its features come out as {shape}, not "
                    f"(batch, {channels}, h, w) maps or (batch, tokens, {channels}) tokens")
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
