"""Encoders: any timm model (random init) or the small `tinyconv`, behind one interface.

    enc = create_encoder("resnet18")
    maps = enc.forward_features(x)   # (B, C, h, w), x float in [0, 1]
    feats = enc(x)                   # (B, C) average-pooled
    enc.num_features, enc.arch

The encoder normalises its own input (ImageNet mean/std), so every task and loader hands it plain
[0, 1] images. The statistics are non-persistent buffers: they follow `.to(device)` but stay out of the
state dict, so a saved encoder holds learned weights only.
"""

from __future__ import annotations

import difflib
import os

# A pretrained-weights lookup would block for ~47 s offline before failing; we never want weights anyway.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ..core.errors import ConfigError  # noqa: E402

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

    def __init__(self, body: nn.Module, num_features: int, arch: str):
        super().__init__()
        self.body = body
        self.num_features = int(num_features)
        self.arch = arch
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> feature maps (B, num_features, h, w)."""
        maps = self.body.forward_features((x - self.mean) / self.std)
        return _as_channels_first(maps, self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> (B, num_features) average-pooled features."""
        return self.forward_features(x).mean(dim=(2, 3))

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
    return ["tinyconv", *timm.list_models()]


def create_encoder(arch: str) -> Encoder:
    """Build a randomly initialised encoder by name; an unknown name raises one clear ConfigError."""
    if not isinstance(arch, str) or not arch:
        raise ConfigError(f"ARCH must be a model name such as tinyconv or resnet18, got {arch!r}")
    if arch == "tinyconv":
        body = TinyConv()
        return Encoder(body, body.num_features, arch)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, list_archs(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(
            f"unknown ARCH={arch!r}: not a timm model name (e.g. tinyconv, resnet18, resnet34d, "
            f"mobilenetv3_small_100){hint}"
        )
    # Random init always (the Imagewang protocol forbids pretrained weights); no classifier, no pooling.
    body = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="")
    return Encoder(body, body.num_features, arch)
