"""byol: bootstrap your own latent (Grill et al., 2020, "Bootstrap Your Own Latent"; deepmind-research/byol).

An online network (encoder -> projector -> predictor, lightly's BYOLProjectionHead 4096 -> 256 and
BYOLPredictionHead) predicts, for each of two views, the target network's projection of the other view;
the loss is BYOL's 2 - 2 cos(prediction, target) (lightly's NegativeCosineSimilarity gives -cos), averaged
over the two directions (BYOL sums them: half of its value). The target network (encoder +
projector) is an exponential moving average of the online one and gets no gradient: after every optimizer
step target <- tau target + (1 - tau) online, tau on BYOL's cosine schedule from `momentum` 0.996 to 1 over
the run (lightly's cosine_schedule and update_momentum).

Views, each cropped once from the whole image (data/views.py), BYOL's Table 6: random resized crop, area
0.08-1 (`min_scale`), flip, colour jitter 0.4/0.4/0.2/0.1 at p 0.8, grayscale p 0.2, Gaussian blur (sigma
0.1-2, kernel 10 % of the side; BYOL: 23 px at 224) with p 1.0 on view 1 and 0.1 on view 2, solarization
p 0.2 on view 2 only.

The saved encoder (`encoder.pt`, what transfer and evaluate use) is the online one, as BYOL's paper (section 3.1:
"At the end of training, we only keep the encoder f_theta", theta the online weights) and its code (byol/
eval_experiment.py evaluates the checkpoint's `online_params`); DINO, by contrast, evaluates its teacher
(tasks/dino.py). On the sample the target's kNN is within a run's noise of the online one's (docs/results.md).

Where we differ: the stage's optimizer (AdamW) and schedule, not BYOL's LARS (`-p optimizer lars`; at BYOL's lr
0.2 x batch / 256 and weight decay 1.5e-6 it did no better on the sample, docs/results.md);
the target's BatchNorm statistics are its own batch statistics, not averaged (as in BYOL). Both views go
through each network in one pass, so a BatchNorm normalises them together (byol_experiment.py runs one pass
per view, each with its own statistics), and the target starts as a copy of the online network (BYOL draws it
from its own seed and reports no difference). Measured on the sample, one 30-epoch run each: per-view passes
gave kNN 8.00% and a target of its own seed 7.67%, against 10.67-11.67% for the default (docs/results.md).

Metric "pair_accuracy" (BYOL's own question, asked as retrieval): for each view, is the target projection
of the other view that its prediction is most cosine-similar to, among the batch's, its partner's? Both
directions averaged; chance 1 / B.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ..core.errors import ConfigError
from ..data.augment import make_augment
from .base import register
from .multiview import DINO_COLOUR, ViewTask, check_scale


class BYOLModel(nn.Module):
    """Returns (predictions, target_projections, online_projections), one tensor per view in each."""

    def __init__(self, encoder: nn.Module, proj_dim: int = 256, hidden: int = 4096):
        super().__init__()
        self.encoder = encoder
        self.projector = BYOLProjectionHead(encoder.num_features, hidden, proj_dim)
        self.predictor = BYOLPredictionHead(proj_dim, hidden, proj_dim)
        self.target_encoder = copy.deepcopy(encoder)  # the target starts as the online network
        self.target_projector = copy.deepcopy(self.projector)
        deactivate_requires_grad(self.target_encoder)
        deactivate_requires_grad(self.target_projector)

    def forward(self, views, *more_views):
        views = (views, *more_views) if more_views else tuple(views)
        x = torch.cat(views)
        z = self.projector(self.encoder(x))
        p = self.predictor(z)
        with torch.no_grad():
            target = self.target_projector(self.target_encoder(x))
        n = len(views)
        return tuple(p.chunk(n)), tuple(target.chunk(n)), tuple(z.chunk(n))

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        update_momentum(self.encoder, self.target_encoder, momentum)
        update_momentum(self.projector, self.target_projector, momentum)


@register
class BYOL(ViewTask):
    name = "byol"
    needs_two = "its heads' BatchNorm needs a batch"
    # Measured on the sample (docs/results.md): at 510 steps its kNN stayed within 2 points of the random-init
    # encoder's, at 2,550 by more than 5 points at one seed of three, at 5,100 by 4.7-13 points (5 seeds).
    # Pretraining prints a note when a run is shorter.
    slow_start_steps = 5000

    def __init__(self, *, min_scale: float = 0.08, proj_dim: int = 256, momentum: float = 0.996,
                 noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        check_scale("byol", "min_scale", min_scale, 1.0)
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"byol momentum must be in [0, 1], got {momentum}")
        if proj_dim < 1:
            raise ConfigError(f"byol proj_dim must be >= 1, got {proj_dim}")
        self.min_scale, self.proj_dim, self.momentum = float(min_scale), int(proj_dim), float(momentum)
        self._criterion = NegativeCosineSimilarity()

    def view_kinds(self, side: int):
        crop = dict(scale=(self.min_scale, 1.0), **DINO_COLOUR)
        return [(1, make_augment(side, "pretrain", blur_p=1.0, **crop)),
                (1, make_augment(side, "pretrain", blur_p=0.1, solarize_p=0.2, **crop))]

    def chance_at(self, b: int) -> float:
        return 1.0 / b  # each prediction picks one of the batch's B target projections

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return BYOLModel(encoder, self.proj_dim)

    def momentum_at(self, step: int, total_steps: int) -> float:
        return cosine_schedule(step, max(1, total_steps), self.momentum, 1.0)

    def after_step(self, model, step: int, total_steps: int) -> None:
        model.update_target(self.momentum_at(step, total_steps))

    def loss(self, outputs, targets):
        (p0, p1), (t0, t1), _ = outputs
        negative_cos = 0.5 * (self._criterion(p0.float(), t1.float()) + self._criterion(p1.float(), t0.float()))
        return 2 + 2 * negative_cos

    def metric(self, outputs, targets):
        (p0, p1), (t0, t1), _ = outputs
        return 0.5 * (prediction_accuracy(p0, t1) + prediction_accuracy(p1, t0))

    def embeddings(self, outputs):
        return outputs[2][0]  # the online projection z of the first view (SimSiam measures its z)


def prediction_accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose most cosine-similar target row is their own (row i <-> row i)."""
    sim = F.normalize(predictions.float(), dim=1) @ F.normalize(targets.float(), dim=1).T
    return (sim.argmax(dim=1) == torch.arange(len(sim), device=sim.device)).float().mean()
