"""swav: swapped prediction of online cluster codes between views (Caron et al., 2020, "Unsupervised
Learning of Visual Features by Contrasting Cluster Assignments"; facebookresearch/swav, main_swav.py).

As published:
  - multi-crop: 2 large views + `n_small_crops` small ones, each cropped once from the whole image (data/views.py).
    Imagewang defaults are those of the best leaderboard entry (KeremTurgutlu/self_supervised, 72.94 %):
    2 x SIZE px at area 0.25-1 (`min_scale`, `max_scale`) + 6 x 0.75 SIZE px (`small_fraction`: 96 px at
    SIZE 128) at 0.2-0.35 (`small_min_scale`, `small_max_scale`). SwAV's ImageNet setting is 2 x 224 at
    0.14-1 + 6 x 96 at 0.05-0.14. Colour as SwAV's (SimCLR's): jitter strength 1 with p 0.8, grayscale
    p 0.2, Gaussian blur p 0.5 (the leaderboard entry used weaker colour and a small rotation, which we lack);
  - encoder -> projection head (lightly's SwaVProjectionHead, 2048 -> `proj_dim` 128) -> L2-normalised z ->
    bias-free prototypes (models/heads.py `Prototypes`, `n_prototypes` 3,000) renormalised to the unit
    sphere before every training step, and frozen (no gradient) for the first `freeze_prototypes_iters`
    iterations (-1 = the first epoch; SwAV: 5,005 iterations, about one ImageNet epoch at batch 256);
  - codes of the 2 large views by Sinkhorn-Knopp (epsilon 0.05, 3 iterations); every other view, small
    ones included, predicts them with a softmax at `temperature` 0.1 (lightly's SwaVLoss; the tests check
    its codes and loss against SwAV's own lines on fixed inputs);
  - one encoder pass per resolution;
  - `queue_size` > 0 keeps the projections of the last `queue_size` large views of each kind (a FIFO in the
    model's buffers, so checkpoints and resumes keep it), filled from epoch `queue_start_epoch` on (SwAV: 15)
    and used once full: each batch's codes are computed together with the queue's, and only the batch's
    are kept. SwAV uses it when batches hold fewer than about 1,000 images; off by default here.
Where we differ: no LARS and no learning-rate schedule of SwAV's own (the stage's optimizer and schedule);
the prototypes are normalised at the start of each training forward (the same point of the step as
SwAV's loop); frozen prototypes get a zero gradient rather than none (see models/heads.py Prototypes);
the views' colour jitter runs in a fixed order and crops are resampled bilinearly (data/views.py, data/augment.py).
Under torchrun Sinkhorn's sums run over every rank's batch, as SwAV's distributed_sinkhorn.

Metric "pair_accuracy" (as simclr): for each of the 2B large views, is its most cosine-similar other
view's projection its partner? Chance is 1 / (2B - 1) for the batch size B last seen.
"""

from __future__ import annotations

from lightly.loss import SwaVLoss
from torch import nn

from ..core.errors import ConfigError
from ..data.augment import make_augment
from ..data.views import small_side
from ..distributed.gather import gathering
from ..models.swav import SwaVModel
from .base import register
from .multiview import ViewTask, check_colour, check_scale, check_small_crops, pair_accuracy


@register
class SwAV(ViewTask):
    name = "swav"
    needs_two = "codes are balanced across the batch"

    def __init__(self, *, n_prototypes: int = 3000, temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, n_small_crops: int = 6, small_fraction: float = 0.75,
                 min_scale: float = 0.25, max_scale: float = 1.0, small_min_scale: float = 0.2,
                 small_max_scale: float = 0.35, jitter: float = 1.0, jitter_p: float = 0.8, gray_p: float = 0.2,
                 blur_p: float = 0.5, proj_dim: int = 128, freeze_prototypes_iters: int = -1, queue_size: int = 0,
                 queue_start_epoch: int = 15, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if n_prototypes < 2:
            raise ConfigError(f"swav needs at least 2 prototypes, got {n_prototypes}")
        if temperature <= 0 or epsilon <= 0:
            raise ConfigError(f"swav temperature and epsilon must be > 0, got {temperature} and {epsilon}")
        if sinkhorn_iterations < 1:
            raise ConfigError(f"swav sinkhorn_iterations must be >= 1, got {sinkhorn_iterations}")
        check_small_crops("swav", "small", n_small_crops, small_fraction)
        if queue_size < 0 or queue_start_epoch < 0:
            raise ConfigError(f"swav queue_size (queued projections per view, 0 = no queue) and queue_start_epoch "
                              f"must be >= 0, got {queue_size} and {queue_start_epoch}")
        if freeze_prototypes_iters < -1:
            raise ConfigError(f"swav freeze_prototypes_iters must be >= 0, or -1 for the first epoch, got "
                              f"{freeze_prototypes_iters}")
        check_scale("swav", "min_scale/max_scale", min_scale, max_scale)
        check_scale("swav", "small_min_scale/small_max_scale", small_min_scale, small_max_scale)
        check_colour("swav", jitter, jitter_p, gray_p, blur_p)
        self.n_prototypes, self.temperature = int(n_prototypes), float(temperature)
        self.n_small_crops, self.small_fraction = int(n_small_crops), float(small_fraction)
        self.scale, self.small_scale = (min_scale, max_scale), (small_min_scale, small_max_scale)
        self.colour = dict(jitter=jitter, jitter_p=jitter_p, gray_p=gray_p, blur_p=blur_p)
        self.proj_dim, self.queue_size, self.queue_start_epoch = int(proj_dim), int(queue_size), int(queue_start_epoch)
        self.freeze_prototypes_iters = int(freeze_prototypes_iters)
        self._criterion = SwaVLoss(temperature=self.temperature, sinkhorn_iterations=int(sinkhorn_iterations),
                                   sinkhorn_epsilon=float(epsilon))

    def view_kinds(self, side: int):
        kinds = [(2, make_augment(side, "pretrain", scale=self.scale, **self.colour))]
        if self.n_small_crops:
            small = make_augment(small_side(side, self.small_fraction), "pretrain", scale=self.small_scale, **self.colour)
            kinds.append((self.n_small_crops, small))
        return kinds

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return SwaVModel(encoder, self.proj_dim, self.n_prototypes, self.queue_size)

    # --- the training loop's hooks (host-side flags only) ----------------------------------------------
    def on_epoch_start(self, model, epoch: int, epochs: int) -> None:
        model.queue_active = epoch >= self.queue_start_epoch

    def before_step(self, model, step: int, total_steps: int, steps_per_epoch: int) -> None:
        frozen_for = steps_per_epoch if self.freeze_prototypes_iters == -1 else self.freeze_prototypes_iters
        model.prototypes.frozen = step < frozen_for

    def loss(self, outputs, targets):
        scores = [s.float() for s in outputs[1]]  # Sinkhorn's exp(score / 0.05) needs float32 under amp
        queued = [s.float() for s in outputs[2]] if len(outputs) > 2 else []
        self._criterion.sinkhorn_gather_distributed = gathering()  # under torchrun: Sinkhorn's sums over all ranks
        return self._criterion(scores[:2], scores[2:], queued or None).reshape(())  # lightly returns shape (1,)

    def metric(self, outputs, targets):
        projections = outputs[0]
        return pair_accuracy(projections[0], projections[1])
