"""The generated sample (layout, determinism, a class that only the object names), resolve_data and bin/data.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import plain_image_folder
from imgwang.core.errors import ConfigError, DataError
from imgwang.data.download import MARKER as DOWNLOAD_MARKER
from imgwang.data.imagewang import CLASS_NAMES, IMAGEWOOF_CLASSES, class_label, leaderboard_entry
from imgwang.data.layout import load_layout
from imgwang.data.resolve import resolve_data
from imgwang.data.sample import (
    GENERATOR_VERSION,
    MARKER,
    MAX_SILHOUETTE_IOU,
    NUISANCES,
    WNIDS,
    _silhouette,
    class_objects,
    draw_image,
    make_sample,
    nuisance_values,
    paint,
    scene_of,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_train=8, n_unsup=24, n_val=6, image_size=(36, 48))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("s") / "sample", seed=3, **SMALL)


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_is_in_imagewang_layout_with_the_requested_counts(sample):
    layout = load_layout(sample)
    assert layout.classes == sorted(CLASS_NAMES)  # the 20 real wnids, so names resolve
    assert len(layout.classes) == 20
    val_classes = {layout.classes[k] for _, k in layout.val}
    assert val_classes == set(IMAGEWOOF_CLASSES)  # val: the 10 Imagewoof classes only
    assert layout.counts() == {"train": 20 * 8, "unsup": 24, "val": 10 * 6}
    assert all(p.parent == sample / "unsup" for p in layout.unsup)  # flat, no class folders
    per_class = np.bincount([k for _, k in layout.train], minlength=20)
    assert (per_class == 8).all()
    assert class_label(layout.classes[0]) == "n01440764 tench"


def test_sample_images_are_non_square_jpegs_with_a_few_pngs(sample):
    paths = load_layout(sample).unlabelled()
    formats = {}
    for path in paths:
        with Image.open(path) as image:
            assert image.size == (48, 36) and image.mode == "RGB"  # PIL size is (W, H)
            formats[image.format] = formats.get(image.format, 0) + 1
            assert image.format == ("PNG" if path.suffix == ".png" else "JPEG")
    assert formats["JPEG"] > formats["PNG"] > 0


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(sample, tmp_path):
    again = files_of(make_sample(tmp_path / "again", seed=3, **SMALL))
    assert again == files_of(sample)
    other = files_of(make_sample(tmp_path / "other", seed=4, **SMALL))
    assert other.keys() == again.keys()
    images = [k for k in again if k.endswith((".JPEG", ".png"))]
    assert sum(other[k] != again[k] for k in images) == len(images)


def test_sample_is_reused_when_present_and_rebuilt_when_parameters_change(tmp_path):
    root = make_sample(tmp_path / "s", seed=0, n_train=1, n_unsup=2, n_val=1, image_size=(16, 24))
    marker_time = (root / MARKER).stat().st_mtime_ns
    probe = root / "train" / sorted(CLASS_NAMES)[0] / "probe.jpg"
    Image.new("RGB", (4, 4)).save(probe)  # would vanish on a rebuild
    make_sample(root, seed=0, n_train=1, n_unsup=2, n_val=1, image_size=(16, 24))
    assert probe.exists() and (root / MARKER).stat().st_mtime_ns == marker_time

    make_sample(root, seed=0, n_train=2, n_unsup=2, n_val=1, image_size=(16, 24))
    assert not probe.exists()
    assert json.loads((root / "sample.json").read_text())["n_train"] == 2
    assert load_layout(root).counts()["train"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no staging folder left behind


def test_a_sample_from_an_older_generator_is_rebuilt(tmp_path):
    small = dict(seed=0, n_train=1, n_unsup=2, n_val=1, image_size=(16, 24))
    root = make_sample(tmp_path / "s", **small)
    params = json.loads((root / "sample.json").read_text())
    assert params["version"] == GENERATOR_VERSION >= 2
    (root / "sample.json").write_text(json.dumps({**params, "version": GENERATOR_VERSION - 1}))
    probe = root / "unsup" / "probe.jpg"
    Image.new("RGB", (4, 4)).save(probe)  # would vanish on a rebuild
    make_sample(root, **small)
    assert not probe.exists() and json.loads((root / "sample.json").read_text())["version"] == GENERATOR_VERSION


def test_sample_refuses_to_replace_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(DataError, match="is not a generated sample"):
        make_sample(tmp_path / "mine", n_train=1, n_unsup=0, n_val=1, image_size=(16, 16))
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"


def drawn_classes(per_class: int, size=(36, 48), seed=0):
    """per_class images of each of the 20 classes, straight from the generator: (n, H, W, 3) floats, labels."""
    images = [draw_image(c, np.random.default_rng([seed, c, i]), size) for c in range(20) for i in range(per_class)]
    return np.stack(images).astype(np.float32) / 255, np.repeat(np.arange(20), per_class)


def nearest_class_mean_accuracy(features, labels, fit):
    means = np.stack([features[fit & (labels == c)].mean(0) for c in range(20)])
    predicted = ((features[~fit][:, None] - means[None]) ** 2).sum(-1).argmin(1)
    return (predicted == labels[~fit]).mean()


def mean_colour(images):
    return images.mean((1, 2))


def centre_of_mass(images):
    """(y, x) centroid of how far each pixel's grey level is from the image's median: where the things are."""
    grey = images.mean(-1)
    weight = np.abs(grey - np.median(grey.reshape(len(grey), -1), 1)[:, None, None])
    yy, xx = np.mgrid[0:grey.shape[1], 0:grey.shape[2]]
    total = weight.sum((1, 2))
    return np.stack([(weight * yy).sum((1, 2)) / total, (weight * xx).sum((1, 2)) / total], 1)


def edge_orientations(images, bins=12):
    """Histogram of grey-level gradient orientations, weighted by magnitude: blind to colour and position,
    it sees the object's outlines and surface patterns."""
    gy, gx = np.gradient(images.mean(-1), axis=(1, 2))
    magnitude, angle = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    which = np.minimum((angle / np.pi * bins).astype(int), bins - 1)
    histogram = np.stack([(magnitude * (which == k)).sum((1, 2)) for k in range(bins)], 1)
    return histogram / histogram.sum(1, keepdims=True)


def test_the_class_is_not_in_mean_colour_position_or_pixels_but_in_the_object():
    """A class is an object drawn at any colour and place: nearest-class-mean on the mean colour, on where the
    mass of the image lies, or on raw pixels stays near chance (0.05 over 20 classes), while the same rule on
    edge orientations (shape, no colour, no position) does several times better."""
    images, labels = drawn_classes(16)
    fit = np.tile(np.arange(16) < 10, 20)  # 10 per class to fit, 6 to score (120 images)
    scores = {name: nearest_class_mean_accuracy(f(images), labels, fit) for name, f in (
        ("colour", mean_colour), ("centre", centre_of_mass), ("pixels", lambda a: a.reshape(len(a), -1)),
        ("edges", edge_orientations))}
    # measured here (generator 3, seed 0): colour 0.03, centre 0.08, pixels 0.04, edges 0.35. Over seeds 0-2 the
    # low-level ones range 0.03-0.08 and edges 0.23-0.35 (120 scored images: sd ~0.03), so the seed stays pinned.
    assert max(scores["colour"], scores["centre"], scores["pixels"]) <= 0.15, scores
    assert scores["edges"] >= 0.15 and scores["edges"] > 1.5 * max(scores["colour"], scores["centre"]), scores


def test_no_two_class_objects_look_alike_even_mirrored():
    """Flips are an SSL augmentation: no class may be another one's mirror image (nor close to any other)."""
    objects = class_objects()
    assert len(objects) == 20 and len({tuple(o) for o in objects}) == 20
    silhouettes = [_silhouette(o) for o in objects]
    for i, mine in enumerate(silhouettes):
        for j, other in enumerate(objects[:i]):
            for theirs in (silhouettes[j], _silhouette(other, mirror=True)):
                assert (mine & theirs).sum() / (mine | theirs).sum() < MAX_SILHOUETTE_IOU, (i, j)


def test_a_stored_image_is_its_scene_repainted(tmp_path):
    """scene_of draws an image's nuisances again from its seed: painting them gives the stored pixels (the PNGs are
    lossless) and the class of its folder; unsup images name the class they were drawn from."""
    sample = make_sample(tmp_path / "s", seed=5, n_train=8, n_unsup=8, n_val=8, image_size=(16, 24))  # i = 7: a PNG
    pngs = sorted(sample.rglob("*.png"))
    assert {p.relative_to(sample).parts[0] for p in pngs} == {"train", "val", "unsup"}
    for path in pngs:
        class_index, scene = scene_of(sample, path)
        if path.parent.name != "unsup":
            assert WNIDS[class_index] == path.parent.name
        stored = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(paint(class_index, scene, stored.shape[:2]), stored), path
        values = nuisance_values(scene)
        assert set(values) == set(NUISANCES) and all(np.isfinite(v) for v in values.values())


def test_scene_of_refuses_images_it_did_not_make(sample, tmp_path):
    with pytest.raises(DataError, match="not a sample"):
        folder = plain_image_folder(tmp_path / "plain", 2, sample)
        scene_of(folder, next(folder.iterdir()))
    for stray in ("elsewhere/x_00001.png", "train/n00000000/x_00001.png", "unsup/notes.png"):
        with pytest.raises(DataError, match="train/, val/ or unsup/"):
            scene_of(sample, sample / stray)


def test_leaderboard_lookup():
    assert leaderboard_entry(128, 5) == 72.94 and leaderboard_entry(192, 200) == 71.77
    assert leaderboard_entry(256, 5) == 79.56 and leaderboard_entry(256, 200) == 79.27
    assert leaderboard_entry(224, 5) is None and leaderboard_entry(128, 7) is None


def test_a_size_above_the_stored_images_warns_and_names_the_data_to_use():
    from imgwang.data.imagewang import upsampling_warning

    assert upsampling_warning("imagewang", 128) is None and upsampling_warning("imagewang-320", 256) is None
    assert "above the 160 px images of DATA=imagewang: they are upsampled; use DATA=imagewang-320" in upsampling_warning("imagewang", 192)
    assert upsampling_warning("imagewang-320", 384).endswith("use DATA=imagewang-full")
    assert upsampling_warning("/my/folder", 512) is None  # unknown stored side: nothing claimed
    assert class_label("my_folder") == "my_folder"


# resolve_data: DATA= names and paths

def test_resolve_sample_builds_under_the_data_root(tmp_path, monkeypatch):
    calls = []
    import imgwang.data.resolve as resolve

    monkeypatch.setattr(resolve, "make_sample", lambda root: calls.append(root) or root)
    assert resolve_data("sample", tmp_path) == tmp_path / "sample"
    assert calls == [tmp_path / "sample"]


def test_named_datasets_live_in_imgwang_data_when_set(tmp_path, monkeypatch):
    """Stages, `make data` and the checks before a run all look in the same place."""
    calls = []
    import imgwang.data.resolve as resolve

    monkeypatch.setattr(resolve, "make_sample", lambda root: calls.append(root) or root)
    monkeypatch.setenv("IMGWANG_DATA", str(tmp_path / "elsewhere"))
    assert resolve_data("sample") == tmp_path / "elsewhere" / "sample"
    monkeypatch.delenv("IMGWANG_DATA")
    assert resolve_data("sample") == Path("data") / "sample"


def test_resolve_named_dataset_uses_a_completed_folder_without_network(tmp_path):
    root = tmp_path / "imagewang-160"
    root.mkdir()
    (root / DOWNLOAD_MARKER).write_text("{}")  # complete: fetch_dataset must not download
    assert resolve_data("imagewang", tmp_path) == root


def test_resolve_path_and_bad_values(sample, tmp_path):
    assert resolve_data(str(sample), tmp_path) == sample
    with pytest.raises(ConfigError) as info:
        resolve_data("imagewoof", tmp_path)
    assert str(info.value) == ("unknown DATA='imagewoof': use sample, imagewang, imagewang-320, "
                               "imagewang-full or a path to a folder in Imagewang layout (or of plain images, to pretrain on)")
    with pytest.raises(DataError, match="no train/ or val/ folder, and no images"):
        resolve_data(str(tmp_path), tmp_path)  # exists but is not in layout


def run_script(*args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # imgwang found via bin's own path fix
    return subprocess.run([sys.executable, "bin/data.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_bin_data_prints_a_summary_and_errors_as_one_line(sample, tmp_path):
    done = run_script(str(sample), "--data-root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"data: {sample}" in done.stdout
    assert "train 160, unsup 24, val 60" in done.stdout
    assert "20 in train, 10 in val" in done.stdout and "n02086240 Shih-Tzu" in done.stdout

    photos = run_script(str(plain_image_folder(tmp_path / "plain", 12, sample)))
    assert photos.returncode == 0, photos.stderr
    assert "images: 12 without classes" in photos.stdout and "pretraining only" in photos.stdout
    assert "pretext images: 10, held out to measure the pretext task: 2" in photos.stdout

    bad = run_script(str(tmp_path / "nowhere"), "--data-root", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: unknown DATA=") and bad.stderr.count("\n") == 1
    assert bad.stdout == ""
