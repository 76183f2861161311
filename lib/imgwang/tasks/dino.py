"""dino: self-distillation with no labels (Caron et al., 2021, "Emerging Properties in Self-Supervised
Vision Transformers"; facebookresearch/dino, main_dino.py).

A student (encoder -> lightly's DINOProjectionHead) matches, on every view, the centred and sharpened
softmax of a teacher that sees only the 2 global views. The teacher is an exponential moving average of
the student and gets no gradient: after every optimizer step teacher <- m teacher + (1 - m) student, m on
a cosine schedule from `momentum` 0.996 to 1 over the run (lightly's cosine_schedule and update_momentum).
Collapse is held off by centring (a running mean of the teacher logits, momentum `center_momentum` 0.9,
updated after each training forward, used by the next) and sharpening (teacher temperature below the
student's 0.1): `teacher_temp` 0.07 after a linear warm-up from `warmup_teacher_temp` 0.04 over
`warmup_teacher_temp_epochs` 30 epochs (main_dino.py's defaults are 0.04 -> 0.04 over 30; its help text
suggests raising the final temperature to 0.07 when training is stable, as for longer runs).
Loss: models/losses.py `dino_loss`, checked against lightly's DINOLoss.

Views, each cropped once from the whole image (data/views.py), DINO's DataAugmentationDINO: 2 global views at
SIZE, area 0.4-1 (`min_scale`), and `n_local_crops` local views at `local_fraction` x SIZE (96/224 of it,
as DINO's 96 px at 224), area 0.05-0.4 (`local_max_scale`); all with flip, colour jitter 0.4/0.4/0.2/0.1
at p 0.8 and grayscale p 0.2; Gaussian blur (sigma 0.1-2) with p 1.0 on global view 1, 0.1 on global view
2 (plus solarization p 0.2), 0.5 on local views. One encoder pass per resolution.

Where we differ: the head's output has `out_dim` 4,096 (DINO: 65,536, sized for ImageNet, slow and memory-hungry
at the batch sizes run here); the head has BatchNorm (DINO's `use_bn_in_head`, off by default there for ViTs;
our encoders are CNNs); 6 local crops (DINO's default: 8), to keep the step affordable; the warm-up is cut to
the run's length when it is shorter; no weight-decay or lr schedule of its own (the stage's); the saved encoder
is the student's (DINO evaluates the teacher, which a short run leaves close to the student, up to the EMA). The
head's last layer is frozen for `freeze_last_layer` epochs (1, as DINO).

Metric "pair_accuracy": for each of the 2B global views, is the most cosine-similar other view's student
output its partner? Chance 1 / (2B - 1).
"""

from __future__ import annotations

from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ..core.errors import ConfigError
from ..data.augment import make_augment
from ..data.views import small_side
from ..models.dino import DINOModel
from ..models.losses import dino_loss
from .base import register
from .multiview import DINO_COLOUR, ViewTask, check_scale, check_small_crops, pair_accuracy


@register
class DINO(ViewTask):
    name = "dino"
    needs_two = "the centre and BatchNorm are batch statistics"

    def __init__(self, *, out_dim: int = 4096, n_local_crops: int = 6, local_fraction: float = 0.43,
                 min_scale: float = 0.4, local_max_scale: float = 0.4, local_min_scale: float = 0.05,
                 student_temp: float = 0.1, teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int = 30, center_momentum: float = 0.9, momentum: float = 0.996,
                 freeze_last_layer: int = 1, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if out_dim < 2:
            raise ConfigError(f"dino out_dim must be >= 2, got {out_dim}")
        check_small_crops("dino", "local", n_local_crops, local_fraction)
        if min(student_temp, teacher_temp, warmup_teacher_temp) <= 0:
            raise ConfigError("dino temperatures must be > 0")
        if warmup_teacher_temp_epochs < 0 or freeze_last_layer < 0:
            raise ConfigError("dino warmup_teacher_temp_epochs and freeze_last_layer must be >= 0")
        for name, m in (("center_momentum", center_momentum), ("momentum", momentum)):
            if not 0.0 <= m <= 1.0:
                raise ConfigError(f"dino {name} must be in [0, 1], got {m}")
        check_scale("dino", "min_scale", min_scale, 1.0)
        check_scale("dino", "local_min_scale/local_max_scale", local_min_scale, local_max_scale)
        self.out_dim, self.n_local_crops, self.local_fraction = int(out_dim), int(n_local_crops), float(local_fraction)
        self.min_scale, self.local_scale = float(min_scale), (float(local_min_scale), float(local_max_scale))
        self.student_temp, self.teacher_temp = float(student_temp), float(teacher_temp)
        self.warmup_teacher_temp, self.warmup_teacher_temp_epochs = float(warmup_teacher_temp), int(warmup_teacher_temp_epochs)
        self.center_momentum, self.momentum, self.freeze_last_layer = float(center_momentum), float(momentum), int(freeze_last_layer)
        self.current_teacher_temp = self.warmup_teacher_temp if self.warmup_teacher_temp_epochs else self.teacher_temp

    def view_kinds(self, side: int):
        glob = dict(scale=(self.min_scale, 1.0), **DINO_COLOUR)
        kinds = [(1, make_augment(side, "pretrain", blur_p=1.0, **glob)),
                 (1, make_augment(side, "pretrain", blur_p=0.1, solarize_p=0.2, **glob))]
        if self.n_local_crops:
            local = make_augment(small_side(side, self.local_fraction), "pretrain", scale=self.local_scale,
                                 blur_p=0.5, **DINO_COLOUR)
            kinds.append((self.n_local_crops, local))
        return kinds

    def build_model(self, encoder: nn.Module) -> nn.Module:
        return DINOModel(encoder, self.out_dim, self.center_momentum)

    # --- the training loop's hooks ---------------------------------------------------------------------
    def teacher_temp_at(self, epoch: int, epochs: int) -> float:
        """DINO's schedule: linear from warmup_teacher_temp to teacher_temp over the warm-up epochs (cut to the
        run's length), then constant."""
        warmup = min(self.warmup_teacher_temp_epochs, epochs)
        if epoch >= warmup:
            return self.teacher_temp
        if warmup == 1:
            return self.warmup_teacher_temp
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * epoch / (warmup - 1)

    def on_epoch_start(self, model, epoch: int, epochs: int) -> None:
        self.current_teacher_temp = self.teacher_temp_at(epoch, epochs)
        model.last_layer_frozen = epoch < self.freeze_last_layer

    def momentum_at(self, step: int, total_steps: int) -> float:
        return cosine_schedule(step, max(1, total_steps), self.momentum, 1.0)

    def after_step(self, model, step: int, total_steps: int) -> None:
        model.update_teacher(self.momentum_at(step, total_steps))

    def loss(self, outputs, targets):
        teacher, student, center = outputs
        return dino_loss([t.float() for t in teacher], [s.float() for s in student], center,
                         self.current_teacher_temp, self.student_temp)

    def metric(self, outputs, targets):
        student = outputs[1]
        return pair_accuracy(student[0], student[1])
