"""Optimizers by name, over our parameter groups (encoder / head, no weight decay on biases and norms).

    adamw   torch AdamW, betas (0.9, 0.99): fastai's Adam (it decouples weight decay too; eps here 1e-8,
            fastai's 1e-5)
    adam    torch Adam, betas (0.9, 0.99), weight decay added to the gradient (L2), as torch.optim.Adam does
    sgd     SGD, momentum 0.9, Nesterov
    ranger  Lookahead (k 6, alpha 0.5) over RAdam with decoupled weight decay, betas (0.95, 0.99), eps 1e-4:
            fastai's `ranger` as the 72.94% Imagewang entry configured it (fastai's own default eps is
            1e-6), built by timm.optim (`lookahead_radamw`: timm's Lookahead over torch.optim.RAdam).
            One difference from fastai: timm takes the slow weights at the first sync (step 6), fastai at
            step 0, so the first pull-back comes at step 12 (of ~1,150 in 5 epochs at batch 64)
    lars    SGD (momentum 0.9) with LARS's layer-wise trust ratio, coefficient 1e-3 (lightly's LARS): the
            optimizer of BYOL's and SwAV's ResNet-50 recipes (DINO's uses SGD). Groups without weight decay
            (biases and norms; every group at `weight_decay` 0, as lightly's LARS adapts decayed groups only)
            take plain SGD steps, as those recipes exclude biases and norms from the trust ratio. LARS
            scales each step to the layer's weight norm, so its lr is of another order than the Adam family's
            (BYOL: 0.2 x batch / 256; SwAV: 0.6 at batch 256)
"""

from __future__ import annotations

import torch

from ..core.errors import ConfigError


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0) -> list[dict]:
    """Encoder params at `lr`, the rest (heads) at lr * head_lr_mult; no weight decay on biases and norms.

    Only parameters that require grad when this is called are included (frozen-for-good stays out).
    Groups carry a `name`, so the loop can report each group's lr.
    """
    encoder = getattr(model, "encoder", None)
    encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    groups: dict[str, dict] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        part = "encoder" if id(p) in encoder_ids else "head"
        decay = p.dim() >= 2  # kernels decay; biases and norm scales/shifts do not
        name = part if decay else f"{part}_no_decay"
        group = groups.setdefault(name, {"name": name, "params": [], "weight_decay": weight_decay if decay else 0.0,
                                         "lr": lr if part == "encoder" else lr * head_lr_mult})
        group["params"].append(p)
    order = ["encoder", "encoder_no_decay", "head", "head_no_decay"]
    return [groups[n] for n in order if n in groups]


def make_optimizer(model: torch.nn.Module, kind: str, lr: float, weight_decay: float, head_lr_mult: float = 1.0):
    """`kind` is one of OPTIMIZERS (checked with the stage's configuration, imgwang.spec.checks.optimizer_name)."""
    groups = param_groups(model, lr, weight_decay, head_lr_mult)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    return BUILDERS[kind](groups, lr, weight_decay)


def _ranger(groups, lr, weight_decay):
    from timm.optim import create_optimizer_v2

    # The groups carry their own weight decay; timm only wraps RAdam(decoupled) in Lookahead(k=6, alpha=0.5).
    return create_optimizer_v2(groups, "lookahead_radamw", lr=lr, weight_decay=weight_decay, betas=(0.95, 0.99),
                               eps=1e-4)


def _lars(groups, lr, weight_decay):
    from lightly.utils.lars import LARS

    return LARS(groups, lr=lr, momentum=0.9, trust_coefficient=1e-3)


BUILDERS = {  # one per name of imgwang.spec.checks.OPTIMIZERS
    "adamw": lambda groups, lr, wd: torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99)),
    "adam": lambda groups, lr, wd: torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.99)),
    "sgd": lambda groups, lr, wd: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True),
    "ranger": _ranger,
    "lars": _lars,
}
