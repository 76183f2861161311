"""Exact copies across splits are named at a stage's start (imgwang.data.copies): val images that are also
in train/ or unsup/."""

import shutil

import numpy as np
from PIL import Image

from imgwang.stages.stage_data import load_stage_data


def picture(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_val_images_copied_from_train_or_unsup_are_named(tmp_path, capsys):
    root = tmp_path / "photos"
    picture(root / "train/cat/1.png", 1)
    dog = picture(root / "train/dog/2.png", 2)
    picture(root / "val/cat/3.png", 3)
    unique = picture(root / "val/dog/4.png", 4)
    (root / "val/cat").mkdir(parents=True, exist_ok=True)
    shutil.copy(dog, root / "val/cat/5.png")  # filed under another class, too: a copy is a copy
    (root / "unsup").mkdir()
    shutil.copy(unique, root / "unsup/u.png")
    picture(root / "unsup/v.png", 6)
    load_stage_data(str(root), 16, cache_dir=tmp_path / "cache")
    out = capsys.readouterr().out
    assert "warning: 1 of 3 val images are exact copies of train/ images" in out
    assert f"{root / 'val/cat/5.png'} = {dog}" in out
    assert "warning: 1 of 3 val images are exact copies of unsup/ images (pretraining saw them)" in out

    clean = tmp_path / "clean"
    for i, rel in enumerate(("train/cat/1.png", "train/dog/2.png", "val/cat/3.png", "unsup/u.png")):
        picture(clean / rel, 10 + i)
    load_stage_data(str(clean), 16, cache_dir=tmp_path / "cache")
    assert "exact copies" not in capsys.readouterr().out
