"""A folder's images smaller than SIZE are named at a stage's start (imgwang.data.native_size)."""

import numpy as np
from PIL import Image

from imgwang.data.native_size import folder_upsampling_warning, median_short_side
from imgwang.stages.stage_data import load_stage_data


def picture(path, width, height, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_the_median_shorter_side_ignores_unreadable_files_and_reads_at_most_the_sample(tmp_path):
    paths = [picture(tmp_path / f"{i}.png", 40 + i, 30 if i < 3 else 100) for i in range(5)]
    (tmp_path / "bad.png").write_text("not an image")
    assert median_short_side([*paths, tmp_path / "bad.png"]) == (30, 5)
    assert median_short_side(paths, most=2) == (30, 2)  # every other file: 0 and 2
    assert median_short_side([tmp_path / "bad.png"]) == (None, 0)


def test_a_folder_of_small_images_at_a_larger_size_warns_with_the_size_that_keeps_their_detail(tmp_path, capsys):
    root = tmp_path / "tiny"
    for i, rel in enumerate(("train/cat/1.png", "train/dog/2.png", "val/cat/3.png", "unsup/4.png")):
        picture(root / rel, 32, 20, seed=i)
    load_stage_data(str(root), 40, cache_dir=tmp_path / "cache")
    out = capsys.readouterr().out
    assert f"warning: SIZE=40 is above the 20 px shorter side of most images in DATA={root}" in out
    assert "upsampled 2.0x, which costs 4x the compute of SIZE=20" in out
    load_stage_data(str(root), 20, cache_dir=tmp_path / "cache")
    assert "upsampled" not in capsys.readouterr().out
    assert folder_upsampling_warning("x", [tmp_path / "missing.png"], 64) is None  # nothing readable: no claim
