"""The supervised objective for fine-tuning and evaluation: plain classification on the loader's labels.

It follows the pretext-task protocol (prepare / loss / metric / metric_name / chance), so the same fit loop
trains a pretext task and a transfer run; the model (encoder + linear head) comes from models/.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError, DataError


class Classification:
    name = "classification"
    metric_name = "accuracy"

    def __init__(self, n_classes: int, label_smoothing: float = 0.0):
        if int(n_classes) < 2:
            raise ConfigError(f"classification needs at least 2 classes, got n_classes={n_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.n_classes = int(n_classes)
        self.label_smoothing = float(label_smoothing)
        self.chance = 1.0 / self.n_classes

    def prepare(self, batch, generator: torch.Generator | None = None):
        """Batch -> (images, labels, meta). Labels on the host are checked here; on a GPU the check would
        make the host wait every step, so the transfer stage checks the loader's labels once instead."""
        if batch.labels.device.type == "cpu":
            self.check_labels(batch.labels)
        return batch.images, batch.labels, {"indices": batch.indices}

    def check_labels(self, labels) -> None:
        """Every label must name a class; unlabelled rows (-1) here mean the loader was given no labels."""
        labels = torch.as_tensor(labels)
        bad = labels[(labels < 0) | (labels >= self.n_classes)]
        if bad.numel():
            raise DataError(
                f"classification batch has label {int(bad[0])}, outside 0..{self.n_classes - 1} "
                "(-1 = unlabelled: build the loader from labelled rows with their labels)"
            )

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # float() so an AMP (half) forward still gets a float32 loss.
        return F.cross_entropy(outputs.float(), targets, label_smoothing=self.label_smoothing)

    def metric(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Top-1 accuracy of the batch as a 0-d float tensor."""
        return (outputs.argmax(dim=1) == targets).float().mean()
