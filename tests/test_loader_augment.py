"""The loader's augmentation parameters, measured on constructed images: crop area, flips, rotations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import gen
from imgwang.data.loader_augment import (
    DEFAULTS,
    apply,
    check,
    make_loader_augment,
    random_rot90,
)
from imgwang.errors import ConfigError

S, OUT = 64, 32


def coordinate_images(b=256):
    """Float images whose red channel is the pixel's x (0..1 left to right) and green its y (top to bottom):
    after a crop the range of each tells the crop's width and height."""
    y, x = torch.meshgrid((torch.arange(S) + 0.5) / S, (torch.arange(S) + 0.5) / S, indexing="ij")
    return torch.stack([x, y, torch.zeros_like(x)])[None].expand(b, -1, -1, -1).contiguous()


def measured_areas(out: torch.Tensor) -> torch.Tensor:
    """Crop area / image area from the coordinate channels (output pixel centres span (OUT-1)/OUT of the crop)."""
    width = (out[:, 0].amax((1, 2)) - out[:, 0].amin((1, 2))) * OUT / (OUT - 1)
    height = (out[:, 1].amax((1, 2)) - out[:, 1].amin((1, 2))) * OUT / (OUT - 1)
    return width * height


@pytest.mark.parametrize("crop_scale", [(0.1, 0.2), (0.5, 0.6), (0.35, 1.0), (1.0, 1.0)])
def test_crop_area_stays_in_the_asked_range(crop_scale):
    out = make_loader_augment(OUT, "train", crop_scale=crop_scale, flip_p=0.0)(coordinate_images(), gen())
    areas = measured_areas(out)
    lo, hi = crop_scale
    assert areas.min() >= lo - 0.03 and areas.max() <= hi + 0.03, (areas.min(), areas.max())
    if hi - lo > 0.05:
        assert areas.max() - areas.min() > 0.6 * (hi - lo)  # the range is used, not just one value in it


def test_flip_off_never_flips_and_on_always_flips():
    images = coordinate_images()
    for p, want_flipped in ((0.0, 0), (1.0, len(images))):
        out = make_loader_augment(OUT, "train", flip_p=p)(images, gen(1))
        x = out[:, 0]
        flipped = (x[:, :, 0].mean(1) > x[:, :, -1].mean(1)).sum().item()  # x falls from left to right
        assert flipped == want_flipped
    out = make_loader_augment(OUT, "train", flip_p=0.5)(images, gen(2))
    assert 0.35 < (out[:, 0, :, 0].mean(1) > out[:, 0, :, -1].mean(1)).float().mean() < 0.65


def pil_rotated(image: torch.Tensor, angle: int) -> torch.Tensor:
    """The reference: PIL's counter-clockwise rotation of a (3, S, S) float image."""
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    turned = np.asarray(Image.fromarray(array).rotate(angle))
    return torch.from_numpy(turned.copy()).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("angles", [[90], [180], [270], [0, 180], [0, 90, 180, 270]])
def test_rotations_by_the_asked_angles_only(angles):
    images = torch.rand(1, 3, OUT, OUT, generator=gen(3)).expand(64, -1, -1, -1).contiguous()
    out = make_loader_augment(OUT, "train", crop_scale=(1.0, 1.0), flip_p=0.0, rotations=angles)(images, gen(4))
    plain = F.interpolate(images[:1], size=(OUT, OUT), mode="bilinear", antialias=True)[0]
    references = {a: pil_rotated(plain, a) for a in (0, 90, 180, 270)}
    seen = set()
    for image in out:
        match = [a for a, ref in references.items() if (image - ref).abs().max() < 2 / 255]
        assert len(match) == 1 and match[0] in angles, match
        seen.add(match[0])
    assert seen == set(angles)  # each asked angle is drawn


def test_random_rot90_keeps_pixels_exactly():
    images = torch.randint(0, 256, (8, 3, 5, 5), dtype=torch.uint8)
    out = random_rot90(images, [90, 270], gen())
    for a, b in zip(images, out):
        assert torch.equal(b, torch.rot90(a, 1, (1, 2))) or torch.equal(b, torch.rot90(a, 3, (1, 2)))
    with pytest.raises(ConfigError, match="square"):
        random_rot90(torch.zeros(2, 3, 4, 5), [90], gen())


def test_eval_ignores_the_parameters_and_defaults_draw_no_rotation():
    images = coordinate_images(4)
    plain = make_loader_augment(OUT, "eval")(images)
    assert torch.equal(make_loader_augment(OUT, "eval", crop_scale=(0.1, 0.2), flip_p=1.0, rotations=[90])(images), plain)
    a = make_loader_augment(OUT, "train")(images, gen(5))
    from imgwang.data.augment import make_augment

    assert torch.equal(a, make_augment(OUT, "train")(images, gen(5)))  # the default: the same stream as before


def test_deterministic_given_the_generator():
    images = coordinate_images(16)
    aug = make_loader_augment(OUT, "pretrain", crop_scale=(0.2, 0.9), rotations=[0, 90, 180, 270])
    assert torch.equal(aug(images, gen(7)), aug(images, gen(7)))
    assert not torch.equal(aug(images, gen(7)), aug(images, gen(8)))


def test_check_fills_defaults_normalises_and_refuses_bad_values():
    assert check({}) == DEFAULTS == {"crop_scale": [0.35, 1.0], "flip_p": 0.5, "rotations": [0]}
    assert check({"crop_scale": [0.5, 1], "flip_p": 0, "rotations": [0, -90, 450]}) == {
        "crop_scale": [0.5, 1.0], "flip_p": 0.0, "rotations": [0, 90, 270]}
    bad = [
        ({"crop_scale": [0, 1]}, "CROP_SCALE=[0, 1]: area fractions must be in (0, 1]"),
        ({"crop_scale": [0.5, 1.2]}, "must be in (0, 1]"),
        ({"crop_scale": [0.8, 0.5]}, "min must not exceed max"),
        ({"crop_scale": 0.5}, "must be two numbers"),
        ({"crop_scale": ["a", 1]}, "is not a number"),
        ({"flip_p": -0.1}, "FLIP_P=-0.1 is a probability"),
        ({"flip_p": 1.5}, "is a probability"),
        ({"rotations": [45]}, "multiples of 90"),
        ({"rotations": []}, "at least one angle"),
    ]
    for params, message in bad:
        with pytest.raises(ConfigError) as e:
            check(params)
        assert message in str(e.value)
    with pytest.raises(ConfigError, match="TASK=rotation"):
        check({"rotations": [0, 90]}, task="rotation")
    assert check({"rotations": [0]}, task="rotation")["rotations"] == [0]


def test_a_baseline_must_be_fine_tuned_with_the_same_augmentation(tmp_path):
    from test_verdicts import transfer_run

    from imgwang.stages import compare

    transfer_run(tmp_path, "v1", "none", [0.30, 0.31, 0.32], flip_p=0.0)
    transfer_run(tmp_path, "v2", "v2", [0.40, 0.41, 0.42])  # recorded before the parameters existed: defaults
    (line,) = compare.baseline_verdicts(compare.compare_table(tmp_path))
    assert line.endswith("differs in: flip_p 0.5 vs 0.0")
    transfer_run(tmp_path, "v3", "none", [0.30, 0.31, 0.32], **DEFAULTS)  # the defaults, written out
    assert compare.compare_table(tmp_path).set_index("version").loc["v2", "baseline"] == "v3"


def test_the_stage_loader_takes_the_parameters(lab_env):
    from imgwang.stages.data import load_stage_data

    sd = load_stage_data("sample", 24, progress=False)
    rows = sd.train_rows[:8]
    chosen = sd.loader(rows, batch_size=8, device="cpu", mode="train", augment={"crop_scale": [0.5, 0.7], "flip_p": 0.0,
                                                                               "rotations": [0, 90]}).augment
    assert chosen.angles == (0, 90) and chosen.augment.scale == (0.5, 0.7) and chosen.augment.flip_p == 0.0
    default = sd.loader(rows, batch_size=8, device="cpu", mode="train").augment
    assert default.scale == (0.35, 1.0) and default.flip_p == 0.5  # the leaderboard recipe
    assert sd.loader(rows, batch_size=8, device="cpu", mode="eval", augment={"rotations": [90]}).augment.mode == "eval"


def test_a_task_that_makes_its_own_views_takes_no_loader_crop_but_flips_and_turns_its_views():
    views = {"flip_p": 0.5, "rotations": [0]}
    assert check({}, task="simclr") == views == check(dict(DEFAULTS), task="patchwork")  # no crop_scale to record
    with pytest.raises(ConfigError, match=r"CROP_SCALE=\[0.5, 1.0\] does not apply to TASK=simclr") as refused:
        check({"crop_scale": [0.5, 1]}, task="simclr")
    assert 'P="-p min_scale 0.2"' in str(refused.value)  # the hint is bin/stage.py's -p NAME VALUE, as typed
    assert check({"crop_scale": [0.5, 1]}, task="dino", strict=False) == views  # a pipeline passes it to fine-tuning
    assert check({"flip_p": 0, "rotations": [0, 90]}, task="dino") == {"flip_p": 0.0, "rotations": [0, 90]}  # the views'
    assert check({"flip_p": 0}, task="rotation")["flip_p"] == 0.0  # the loader crops for the others
    cfg = {"task": "byol", "lr": 0.1, **DEFAULTS, "flip_p": 0.0}
    apply(cfg, task="byol")
    assert cfg == {"task": "byol", "lr": 0.1, "flip_p": 0.0, "rotations": [0]}
    cfg = {"flip_p": 0}
    apply(cfg, task="quadrant")
    assert cfg == {**DEFAULTS, "flip_p": 0.0}


def test_the_pretraining_pictures_are_the_images_the_task_gets(lab_env):
    from imgwang.stages.data import load_stage_data
    from imgwang.stages.show import pretrain_show_loader
    from imgwang.tasks import get_task

    sd = load_stage_data("sample", 24, progress=False)
    whole = next(iter(pretrain_show_loader(sd, {}, "cpu", get_task("simclr"), n=4)))
    cropped = next(iter(pretrain_show_loader(sd, {}, "cpu", get_task("rotation"), n=4)))
    assert whole.images.shape[-1] == sd.cache.size > 24 and cropped.images.shape[-1] == 24  # whole: stored side


def test_a_notebook_of_a_view_making_task_shows_no_loader_crop(lab_env, tmp_path, monkeypatch):
    from imgwang import notebook
    from imgwang.stages.spec import stage_spec

    monkeypatch.setattr(notebook, "take_thread_share", lambda *a: None)
    namespace = {**stage_spec("pretrain").defaults(), "version": "v1", "runs_dir": str(tmp_path), "data": "sample"}
    cfg, _ = notebook.start("pretrain", {**namespace, "task": "simclr", "flip_p": 0.0})
    assert "crop_scale" not in cfg and cfg["flip_p"] == 0.0 and cfg["rotations"] == [0]  # what its views take
    cfg, _ = notebook.start("pretrain", {**namespace, "task": "rotation", "flip_p": 0.0})
    assert cfg["flip_p"] == 0.0 and cfg["crop_scale"] == [0.35, 1.0]
