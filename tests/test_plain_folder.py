"""A plain folder of images (no train/ or val/) can be pretrained on: the held-out tenth measures the task."""

import numpy as np

from conftest import plain_image_folder
from imgwang.stages.pretrain import run_pretrain
from imgwang.stages.resolve import resolve


def test_pretrain_on_a_plain_folder_of_images(lab_env, tmp_path):
    folder = plain_image_folder(tmp_path / "my-photos", 80, subfolders=2)
    cfg = resolve("pretrain", dict(data=str(folder), task="rotation", arch="tinyconv", size=24, epochs=2, bs=16,
                                   device="cpu", comet="off", seed=0))
    run_dir = tmp_path / "runs" / "v1"
    run_dir.mkdir(parents=True)
    result = run_pretrain(cfg, run_dir)
    sd = result["data"]
    assert len(sd.val_rows) == 8 and len(sd.unlabelled_rows) == 72 and (sd.val_labels == -1).all()
    assert not np.intersect1d(sd.val_rows, sd.unlabelled_rows).size  # held-out images are never trained on
    assert len(result["history"]) == 2 and 0 <= result["val_metric"] <= 1
    assert (run_dir / "encoder.pt").exists()
