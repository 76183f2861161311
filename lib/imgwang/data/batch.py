"""The one batch type every loader yields and every task/objective consumes."""

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, H, W) float in [0, 1], already on the device and augmented
    labels: torch.Tensor  # (B,) long class index; -1 where the image is unlabelled
    indices: torch.Tensor  # (B,) long index of each image in its dataset (cache row)

    def __len__(self) -> int:
        return self.images.shape[0]
