"""swav: swapped prediction of online cluster codes between views (Caron et al., 2020, "Unsupervised
Learning of Visual Features by Contrasting Cluster Assignments"; facebookresearch/swav, main_swav.py).

As published:
  - multi-crop: 2 large views + `n_small_crops` small ones, each cropped once from the whole image (data/views.py).
    Imagewang defaults are those of the best leaderboard entry (KeremTurgutlu/self_supervised, 72.94 %):
    2 x SIZE px at area 0.25-1 (`min_scale`, `max_scale`) + 6 x 0.75 SIZE px (`small_fraction`: 96 px at
    SIZE 128) at 0.2-0.35 (`small_min_scale`, `small_max_scale`). SwAV's ImageNet setting is 2 x 224 at
    0.14-1 + 6 x 96 at 0.05-0.14;
  - encoder (average-pooled; `pool` "catavgmax": fastai's average and max pooling side by side, as the 72.94 %
    entry) -> projection head (lightly's SwaVProjectionHead, `hidden_dim` 2048 -> `proj_dim` 128) ->
    L2-normalised z -> bias-free prototypes (models/heads.py `Prototypes`) renormalised to the unit sphere
    before every training step, and frozen (no gradient) for the first `freeze_prototypes_iters` iterations
    (-1 = the first epoch; SwAV: 5,005 iterations at batch 256 and 313 at batch 4,096, one ImageNet epoch each);
  - one encoder pass per resolution, then the head once over the features of every crop (SwAV's
    forward_head, models/swav.py); prototype scores in float32 with autocast off;
  - codes of the 2 large views by Sinkhorn-Knopp (3 iterations); every other view, small ones included,
    predicts them with a softmax at `temperature` 0.1 (lightly's SwaVLoss; the tests check its codes and loss
    against SwAV's own lines on fixed inputs);
  - `queue_size` > 0 keeps the projections of the last `queue_size` large views of each kind (a FIFO in the
    model's buffers, so checkpoints and resumes keep it), filled from the epoch a fraction `queue_start` into
    the run and used once full: each batch's codes are computed together with the queue's, and only the
    batch's are kept.

Sized to the run and out of SwAV's small-batch collapse regime (SwAV's README, "Common issues": the loss
stuck at ln(n_prototypes), every prototype scored alike), as published at SwAV's batches:
  - `n_prototypes` None: 16 per image of the configured batch B, at most 3,000 (SwAV's): 1,024 at B = 64,
    2,048 at B = 128, 3,000 from B = 188 on (SwAV's 3,000 at its batches of 256 and 4,096). With far more
    prototypes than the projections Sinkhorn spreads over them every code is flat and so are the predicted
    scores: measured, batch 64 against 3,000 prototypes sat at ln(3000) = 8.006 (issue 22: 30 epochs on the
    sample; here 8.0045 after 3 epochs, tinyconv 64 px); against 1,024 the loss fell from 6.85 to 6.44 in 3
    epochs (ln(1024) = 6.93; sample v2, tinyconv 64 px).
  - `queue_size` 0 (no queue) unless given; with one, it fills from the epoch a fraction `queue_start` into the
    run. SwAV's batch-256 script queues 3,840 projections from epoch 15 of 200 (75,000 steps in); its README
    warns that a queue started too early or too large disturbs training. Measured on the sample (sample v2,
    1,120 images, batch 64, 6 epochs, tinyconv 64 px): a 960-projection queue (15 batches) filled in epoch 2
    and used from epoch 3 pushed the loss from 6.44 to 7.72, above ln(1024), and the collapse monitor from
    0.076 to 0.030; the
    runs here are too short for the features to settle before a queue would start. `queue_start` 0.1 (SwAV
    0.075) when a queue is asked for.
  - `epsilon` 0.03, not SwAV's 0.05: the README's first remedy for collapse ("lower epsilon ... more peaked
    codes"); float32 scores keep exp(score / 0.03) finite.
  - softer colour than SwAV's ImageNet views (README: "softer data augmentation"): jitter strength 0.5
    (SimCLR's small-image setting; SwAV 1.0) with p 0.8, grayscale p 0.2, and no Gaussian blur (SwAV p 0.5;
    at 64 px a sigma of up to 2 px blurs a 48 px crop past recognition; the 72.94 % entry used none).
Where we differ: the stage's optimizer (AdamW) and schedule, not SwAV's LARS (`-p optimizer lars`; at SwAV's lr it
did no better on the sample and its loss fell less, docs/results.md);
the prototypes are normalised at the start of each training forward (the same point of the step as
SwAV's loop); frozen prototypes get a zero gradient rather than none (see models/heads.py Prototypes);
the views' colour jitter runs in a fixed order and crops are resampled bilinearly (data/views.py, data/augment.py).
Under torchrun Sinkhorn's sums run over every rank's batch, as SwAV's distributed_sinkhorn.
Collapse monitor: `embeddings` are the L2-normalised z of the first large view (train/collapse.py).

Metric "pair_accuracy" (as simclr): for each of the 2B large views, is its most cosine-similar other
view's projection its partner? Chance is 1 / (2B - 1), B the largest batch made
(the configured one; see tasks/multiview.py).
"""

from __future__ import annotations

import math

from lightly.loss import SwaVLoss
from torch import nn

from ..core.errors import ConfigError
from ..data.augment import make_augment
from ..data.views import small_side
from ..distributed.gather import gathering
from ..models.swav import POOLS, SwaVModel
from .base import register
from .multiview import ViewTask, check_colour, check_scale, check_small_crops, pair_accuracy

PUBLISHED_PROTOTYPES, PROTOTYPES_PER_BATCH_IMAGE = 3000, 16  # SwAV's count; the small-batch rule (docstring)


@register
class SwAV(ViewTask):
    name = "swav"
    needs_two = "codes are balanced across the batch"

    def __init__(self, *, n_prototypes: int | None = None, temperature: float = 0.1, epsilon: float = 0.03,
                 sinkhorn_iterations: int = 3, n_small_crops: int = 6, small_fraction: float = 0.75,
                 min_scale: float = 0.25, max_scale: float = 1.0, small_min_scale: float = 0.2,
                 small_max_scale: float = 0.35, jitter: float = 0.5, jitter_p: float = 0.8, gray_p: float = 0.2,
                 blur_p: float = 0.0, proj_dim: int = 128, hidden_dim: int = 2048, pool: str = "avg",
                 freeze_prototypes_iters: int = -1, queue_size: int = 0, queue_start: float = 0.1,
                 noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if n_prototypes is not None and n_prototypes < 2:
            raise ConfigError(f"swav needs at least 2 prototypes, got {n_prototypes}")
        if temperature <= 0 or epsilon <= 0:
            raise ConfigError(f"swav temperature and epsilon must be > 0, got {temperature} and {epsilon}")
        if sinkhorn_iterations < 1:
            raise ConfigError(f"swav sinkhorn_iterations must be >= 1, got {sinkhorn_iterations}")
        check_small_crops("swav", "small", n_small_crops, small_fraction)
        if queue_size < 0 or not 0.0 <= queue_start <= 1.0:
            raise ConfigError(f"swav queue_size (queued projections per view, 0 = no queue) must be >= 0 and queue_start "
                              f"(fraction of the epochs before the queue fills) in [0, 1], got {queue_size} and {queue_start}")
        if freeze_prototypes_iters < -1:
            raise ConfigError(f"swav freeze_prototypes_iters must be >= 0, or -1 for the first epoch, got "
                              f"{freeze_prototypes_iters}")
        if proj_dim < 1 or hidden_dim < 1:
            raise ConfigError(f"swav proj_dim and hidden_dim must be >= 1, got {proj_dim} and {hidden_dim}")
        if pool not in POOLS:
            raise ConfigError(f"swav pool must be one of {', '.join(POOLS)}, got {pool!r}")
        check_scale("swav", "min_scale/max_scale", min_scale, max_scale)
        check_scale("swav", "small_min_scale/small_max_scale", small_min_scale, small_max_scale)
        check_colour("swav", jitter, jitter_p, gray_p, blur_p)
        self.temperature = float(temperature)
        self.n_small_crops, self.small_fraction = int(n_small_crops), float(small_fraction)
        self.scale, self.small_scale = (min_scale, max_scale), (small_min_scale, small_max_scale)
        self.colour = dict(jitter=jitter, jitter_p=jitter_p, gray_p=gray_p, blur_p=blur_p)
        self.proj_dim, self.hidden_dim, self.queue_start, self.pool = int(proj_dim), int(hidden_dim), float(queue_start), pool
        self.given_prototypes = n_prototypes  # None: sized by fit_to_run; SwAV's 3,000 until a run is known
        self.n_prototypes = PUBLISHED_PROTOTYPES if n_prototypes is None else int(n_prototypes)
        self.queue_size = int(queue_size)
        self.freeze_prototypes_iters = int(freeze_prototypes_iters)
        self._criterion = SwaVLoss(temperature=self.temperature, sinkhorn_iterations=int(sinkhorn_iterations),
                                   sinkhorn_epsilon=float(epsilon))

    def fit_to_run(self, *, batch_size: int, epochs: int) -> None:
        """The prototype count for the configured batch, where not given (the rule in the docstring above)."""
        if self.given_prototypes is None:
            self.n_prototypes = max(2, min(PUBLISHED_PROTOTYPES, PROTOTYPES_PER_BATCH_IMAGE * batch_size))

    def view_kinds(self, side: int):
        kinds = [(2, make_augment(side, "pretrain", scale=self.scale, **self.colour))]
        if self.n_small_crops:
            small = make_augment(small_side(side, self.small_fraction), "pretrain", scale=self.small_scale, **self.colour)
            kinds.append((self.n_small_crops, small))
        return kinds

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return SwaVModel(encoder, self.proj_dim, self.n_prototypes, self.queue_size, self.hidden_dim, self.pool)

    # --- the training loop's hooks (host-side flags only) ----------------------------------------------
    def queue_start_epoch(self, epochs: int) -> int:
        return math.ceil(self.queue_start * epochs - 1e-9)

    def on_epoch_start(self, model, epoch: int, epochs: int) -> None:
        model.queue_active = epoch >= self.queue_start_epoch(epochs)

    def before_step(self, model, step: int, total_steps: int, steps_per_epoch: int) -> None:
        frozen_for = steps_per_epoch if self.freeze_prototypes_iters == -1 else self.freeze_prototypes_iters
        model.prototypes.frozen = step < frozen_for

    def loss(self, outputs, targets):
        scores = [s.float() for s in outputs[1]]  # float32 already (models/swav.py); plain tensors from tests too
        queued = [s.float() for s in outputs[2]] if len(outputs) > 2 else []
        self._criterion.sinkhorn_gather_distributed = gathering()  # under torchrun: Sinkhorn's sums over all ranks
        return self._criterion(scores[:2], scores[2:], queued or None).reshape(())  # lightly returns shape (1,)

    def metric(self, outputs, targets):
        projections = outputs[0]
        return pair_accuracy(projections[0], projections[1])

    def embeddings(self, outputs):
        return outputs[0][0]
