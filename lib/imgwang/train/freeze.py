"""Freezing the encoder for the first `freeze_epochs` as fastai does: the body stops, its norm layers keep training.

fastai's Learner (train_bn=True, the default) marks the parameters of every normalisation layer of a frozen
body `force_train` (fastai.learner.Learner.create_opt, norm_bias_params(model, with_bias=False): BatchNorm,
InstanceNorm and LayerNorm), so their scale and shift keep learning, and it never puts a frozen body in eval
mode, so BatchNorm running statistics keep following the new data. Here alike: in a frozen epoch every encoder
parameter stops except those of its norm layers, and the encoder stays in train mode with the rest of the model.
"""

from __future__ import annotations

from torch import nn

# fastai's norm_types; _BatchNorm covers BatchNorm1d/2d/3d, SyncBatchNorm and subclasses (timm's BatchNormAct2d)
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)


def norm_params(module: nn.Module) -> set[int]:
    """ids of the parameters of `module`'s normalisation layers (the ones that keep training while frozen)."""
    return {id(p) for m in module.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)}


def set_frozen(params, frozen: bool, keep: set[int]) -> None:
    """requires_grad off for `params` while frozen, except those whose id is in `keep`; on for all otherwise."""
    for p in params:
        p.requires_grad_(not frozen or id(p) in keep)
