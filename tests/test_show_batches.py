"""The notebooks' pictures of one training batch: what pretraining and fine-tuning feed the model."""

import matplotlib.pyplot as plt
import torch

from imgwang.data.batch import Batch
from imgwang.stages.show import first_batch, show_task_batch, show_train_batch
from imgwang.tasks import get_task


def batches(n=16, size=24):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    return [Batch(images=images, labels=torch.arange(n) % 3, indices=torch.arange(n))]


def test_the_fine_tuning_batch_is_shown_with_its_classes():
    fig = show_train_batch(batches(), ["n01440764", "cat", "dog"], n=6)
    assert [ax.get_title() for ax in fig.axes] == ["n01440764 tench", "cat", "dog"] * 2
    plt.close(fig)


def test_the_pretraining_batch_goes_through_the_task():
    fig = show_task_batch(get_task("rotation"), batches(), n=8)
    assert len(fig.axes) == 8 and all(ax.get_title().startswith("target ") for ax in fig.axes)
    plt.close(fig)


def test_the_show_loaders_augment_as_the_run_asked(lab_env):
    from imgwang.stages.show import pretrain_show_loader, transfer_show_loader
    from imgwang.stages.stage_data import load_stage_data

    sd = load_stage_data("sample", 24, progress=False)
    cfg = {"seed": 0, "crop_scale": [0.5, 0.5], "flip_p": 0.0, "rotations": [0, 180]}
    for make, mode in ((pretrain_show_loader, "pretrain"), (transfer_show_loader, "train")):
        loader = make(sd, cfg, "cpu", n=8)
        assert loader.augment.angles == (0, 180) and loader.augment.augment.mode == mode
        assert loader.augment.augment.scale == (0.5, 0.5) and loader.augment.augment.flip_p == 0.0
        assert first_batch(loader).images.shape == (8, 3, 24, 24)
    assert set(transfer_show_loader(sd, cfg, "cpu").rows) <= set(sd.train_rows)  # labelled train images only
