"""dino: self-distillation with no labels (Caron et al., 2021, "Emerging Properties in Self-Supervised
Vision Transformers"; facebookresearch/dino, main_dino.py).

A student (encoder -> lightly's DINOProjectionHead) matches, on every view, the centred and sharpened
softmax of a teacher that sees only the 2 global views. The teacher is an exponential moving average of
the student and gets no gradient: after every optimizer step teacher <- m teacher + (1 - m) student, m on
a cosine schedule from `momentum` 0.996 to 1 over the run (lightly's cosine_schedule and update_momentum).
Collapse is held off by centring (a running mean of the teacher logits, momentum `center_momentum` 0.9,
updated after each training forward, used by the next) and sharpening (teacher temperature below the
student's 0.1). Loss: models/losses.py `dino_loss`, checked against lightly's DINOLoss.

Views, each cropped once from the whole image (data/views.py), DINO's DataAugmentationDINO: 2 global views at
SIZE and `n_local_crops` local views at `local_fraction` x SIZE (96/224 of it, as DINO's 96 px at 224); all
with flip, colour jitter 0.4/0.4/0.2/0.1 at p 0.8 and grayscale p 0.2; Gaussian blur (sigma 0.1-2) with p 1.0
on global view 1, 0.1 on global view 2 (plus solarization p 0.2), 0.5 on local views. One encoder pass per
resolution, then the head once over the features of every crop (DINO's MultiCropWrapper, models/dino.py);
the head's last layer in float32.

Settings follow the encoder (`None` = by encoder; a value given wins):
  - a CNN: DINO's ResNet-50 command (facebookresearch/dino README, "ResNet-50 and other convnets"): global
    crops area 0.14-1 (`min_scale`), local 0.05-0.14 (`local_min_scale`, `local_max_scale`), and
    main_dino.py's defaults it keeps: teacher temperature 0.04 throughout (`teacher_temp`,
    `warmup_teacher_temp` 0.04, no warm-up); BatchNorm in the head (DINO's `use_bn_in_head`; ours: a CNN's
    head keeps it, as before);
  - a ViT (timm model with `patch_embed`): DINO's ViT defaults: global 0.4-1, local 0.05-0.4, no BatchNorm in
    the head, teacher temperature 0.04 warmed up to 0.07 over `warmup_teacher_temp_epochs` 30 (the README's
    "boosting DINO performance" setting, cut to the run's length when shorter).
Gradient clipping 3.0 (`grad_clip`; main_dino.py's `--clip_grad` for both).

The saved encoder (`encoder.pt`, what transfer and evaluate use) is the teacher's, as DINO evaluates and
releases it (eval_knn.py `--checkpoint_key teacher`); the kNN monitor measures the teacher too.

Where we differ: the head's output has `out_dim` 4,096 (DINO: 65,536, sized for ImageNet, slow and memory-hungry
at the batch sizes run here); 6 local crops (DINO's default: 8), to keep the step affordable; gradients are
clipped by their global norm (DINO clips each parameter's norm to 3.0); no SGD, weight-decay or lr schedule of
its own (the ResNet command: SGD, lr 0.03, weight decay 1e-4; here the stage's). The head's last layer is
frozen for `freeze_last_layer` epochs (1, as DINO) and weight-normalised with its norm fixed (`norm_last_layer`,
DINO's default; false lets the norm learn, as DINO suggests for better but less stable runs). On sample
generator 3 neither head option lifts the kNN (docs/results.md).
Collapse monitor: `embeddings` are the student's L2-normalised 256-d bottleneck of the first global view
(train/collapse.py).

Metric "pair_accuracy": for each of the 2B global views, is the most cosine-similar other view's student
output its partner? Chance 1 / (2B - 1).
"""

from __future__ import annotations

import torch
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ..core.errors import ConfigError
from ..data.augment import make_augment
from ..data.views import small_side
from ..models.dino import DINOModel
from ..models.losses import dino_loss
from .base import register
from .multiview import DINO_COLOUR, ViewTask, check_scale, check_small_crops, pair_accuracy

# DINO's ResNet-50 command (README) with main_dino.py's defaults, and its ViT defaults (see the docstring).
CNN = dict(min_scale=0.14, local_max_scale=0.14, teacher_temp=0.04, warmup_teacher_temp_epochs=0, use_bn_in_head=True)
VIT = dict(min_scale=0.4, local_max_scale=0.4, teacher_temp=0.07, warmup_teacher_temp_epochs=30, use_bn_in_head=False)


@register
class DINO(ViewTask):
    name = "dino"
    needs_two = "the centre and BatchNorm are batch statistics"
    # Measured on the sample (docs/results.md): at 510 and 2,550 steps its kNN stayed within a point of
    # the random-init encoder's, at 5,100 it cleared it by 1-7.3 points (6 seeds, mean 4.9).
    # Pretraining prints a note when a run is shorter.
    slow_start_steps = 5000

    def __init__(self, *, out_dim: int = 4096, n_local_crops: int = 6, local_fraction: float = 0.43,
                 min_scale: float | None = None, local_max_scale: float | None = None, local_min_scale: float = 0.05,
                 student_temp: float = 0.1, teacher_temp: float | None = None, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int | None = None, center_momentum: float = 0.9,
                 momentum: float = 0.996, freeze_last_layer: int = 1, grad_clip: float = 3.0,
                 norm_last_layer: bool = True, use_bn_in_head: bool | None = None, noise_p: float = 0.0):
        super().__init__(noise_p=noise_p)
        if out_dim < 2:
            raise ConfigError(f"dino out_dim must be >= 2, got {out_dim}")
        check_small_crops("dino", "local", n_local_crops, local_fraction)
        if min(student_temp, warmup_teacher_temp, 1.0 if teacher_temp is None else teacher_temp) <= 0:
            raise ConfigError("dino temperatures must be > 0")
        if (warmup_teacher_temp_epochs or 0) < 0 or freeze_last_layer < 0:
            raise ConfigError("dino warmup_teacher_temp_epochs and freeze_last_layer must be >= 0")
        if not grad_clip > 0:
            raise ConfigError(f"dino grad_clip (largest gradient norm) must be > 0, got {grad_clip}")
        for name, m in (("center_momentum", center_momentum), ("momentum", momentum)):
            if not 0.0 <= m <= 1.0:
                raise ConfigError(f"dino {name} must be in [0, 1], got {m}")
        self.given = dict(min_scale=min_scale, local_max_scale=local_max_scale, teacher_temp=teacher_temp,
                          warmup_teacher_temp_epochs=warmup_teacher_temp_epochs, use_bn_in_head=use_bn_in_head)
        self.local_min_scale = float(local_min_scale)
        self.out_dim, self.n_local_crops, self.local_fraction = int(out_dim), int(n_local_crops), float(local_fraction)
        self.student_temp, self.warmup_teacher_temp = float(student_temp), float(warmup_teacher_temp)
        self.center_momentum, self.momentum, self.freeze_last_layer = float(center_momentum), float(momentum), int(freeze_last_layer)
        self.grad_clip = float(grad_clip)
        self.norm_last_layer = bool(norm_last_layer)
        self.settle(vit=False)  # a CNN until build_model sees the encoder

    def settle(self, vit: bool) -> None:
        """The settings of the encoder's family (see the docstring), where not given."""
        chosen = {**(VIT if vit else CNN), **{k: v for k, v in self.given.items() if v is not None}}
        numbers = {k: v for k, v in chosen.items() if k != "use_bn_in_head"}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers.values()):
            raise ConfigError(f"dino {', '.join(numbers)} must be numbers, got {numbers}")
        self.vit, self.use_bn_in_head = vit, bool(chosen["use_bn_in_head"])
        self.min_scale, self.local_scale = float(chosen["min_scale"]), (self.local_min_scale, float(chosen["local_max_scale"]))
        self.teacher_temp, self.warmup_teacher_temp_epochs = float(chosen["teacher_temp"]), int(chosen["warmup_teacher_temp_epochs"])
        check_scale("dino", "min_scale", self.min_scale, 1.0)
        check_scale("dino", "local_min_scale/local_max_scale", *self.local_scale)
        self.current_teacher_temp = self.warmup_teacher_temp if self.warmup_teacher_temp_epochs else self.teacher_temp
        self._view_kinds = None  # views are made again with the settled scales

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
        self.settle(vit=is_vit(encoder))
        return DINOModel(encoder, self.out_dim, self.center_momentum, batch_norm=self.use_bn_in_head,
                         norm_last_layer=self.norm_last_layer)

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
        teacher, student, center = outputs[:3]
        with torch.autocast(center.device.type, enabled=False):  # its einsum would run in bf16 under autocast
            return dino_loss([t.float() for t in teacher], [s.float() for s in student], center.float(),
                             self.current_teacher_temp, self.student_temp)

    def metric(self, outputs, targets):
        student = outputs[1]
        return pair_accuracy(student[0], student[1])

    def embeddings(self, outputs):
        return outputs[3]


def is_vit(encoder: nn.Module) -> bool:
    """A vision transformer (timm's ViT family embeds patches), which takes DINO's ViT settings."""
    return hasattr(getattr(encoder, "body", encoder), "patch_embed")
