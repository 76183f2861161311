"""A small generated dataset in Imagewang layout, for offline runs, tests and quick checks.

Each of the 20 classes (named by the real Imagewang wnids, so class names resolve) is a fixed
combination of shape, colour palette, surface texture and preferred position; every image draws its
own size, jitter, rotation, background gradient, distractor and noise, so the classes are separable
but not by one pixel. Backgrounds are lit from above and shapes have an orientation, which gives
rotation-like pretext tasks something real to predict. Same seed -> byte-identical files.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgwang.data.imagewang import CLASS_NAMES, IMAGEWOOF_CLASSES
from imgwang.errors import DataError

GENERATOR_VERSION = 1  # bump when the drawing changes, so old samples are rebuilt
PARAMS_FILE = "sample.json"
MARKER = ".complete"
WNIDS = sorted(CLASS_NAMES)  # train/ class folders, same order as load_layout's class index
VAL_WNIDS = sorted(IMAGEWOOF_CLASSES)  # val/ holds only the Imagewoof ten, as in Imagewang
SHAPES = ("circle", "square", "triangle", "stripes", "ring")
# (foreground hue centre, background hue centre) in [0, 1): each palette a distinct pair
PALETTES = ((0.02, 0.60), (0.33, 0.80), (0.15, 0.45), (0.50, 0.08))
TEXTURES = ("plain", "checker", "grain")
# preferred shape centre as (y, x) fractions of the image
POSITIONS = ((0.35, 0.32), (0.35, 0.68), (0.65, 0.32), (0.65, 0.68))
SUPERSAMPLE = 2  # draw at 2x and downsample: anti-aliased edges for free


def class_style(class_index: int) -> dict:
    """Fixed look of a class: the (shape, palette) pair is unique among the 20 classes."""
    c = class_index
    return {
        "shape": SHAPES[c % 5],
        "palette": PALETTES[c // 5],
        "texture": TEXTURES[(c // 2) % 3],
        "position": POSITIONS[(c + c // 5) % 4],
    }


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One colour, h/s/v in [0, 1] -> float RGB in [0, 1]."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, r: float, freq: float) -> np.ndarray:
    """Boolean mask of a shape of radius r, in coordinates already centred and rotated."""
    dist = np.sqrt(dy**2 + dx**2)
    if shape == "circle":
        return dist < r
    if shape == "square":
        return np.maximum(abs(dy), abs(dx)) < 0.8 * r
    if shape == "triangle":  # apex up (before rotation): an oriented shape
        return (dy < 0.6 * r) & (abs(dx) < (dy + r) * 0.65)
    if shape == "stripes":
        return (dist < 1.1 * r) & (np.sin(dx * freq) > 0)
    if shape == "ring":
        return (dist < r) & (dist > 0.6 * r)
    raise ValueError(shape)


def _texture(texture: str, colour: np.ndarray, yy, xx, rng) -> np.ndarray:
    """(H, W, 3) foreground colour field with the class's surface texture."""
    field = np.broadcast_to(colour.astype(np.float32), yy.shape + (3,)).copy()
    if texture == "checker":
        period = rng.uniform(6, 12) * SUPERSAMPLE
        dark = ((yy // period + xx // period) % 2).astype(bool)
        field[dark] *= 0.55
    elif texture == "grain":
        field *= 1 + 0.35 * rng.standard_normal(yy.shape, dtype=np.float32)[..., None]
    return field


def draw_image(class_index: int, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """One (H, W, 3) uint8 image of the class, with per-image random variation."""
    style = class_style(class_index)
    h, w = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # background: a gradient lit from above (angle near vertical), hue from the palette
    bg_hue = (style["palette"][1] + rng.normal(0, 0.07)) % 1
    top = _hsv_to_rgb(bg_hue, rng.uniform(0.2, 0.5), rng.uniform(0.75, 0.95))
    bottom = _hsv_to_rgb((bg_hue + rng.normal(0, 0.05)) % 1, rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.5))
    angle = rng.normal(0, 0.35)
    t = ((yy / h - 0.5) * np.cos(angle) + (xx / w - 0.5) * np.sin(angle)) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    image = (top * (1 - t) + bottom * t).astype(np.float32)

    # a distractor: a small blob of any colour anywhere, so "any colour patch" is not the class
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 < (rng.uniform(0.05, 0.12) * min(h, w)) ** 2
    image[blob] = _hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 1), rng.uniform(0.3, 1))

    # the class object: preferred position with jitter, random size and rotation
    r = rng.uniform(0.2, 0.36) * min(h, w)
    cy = (style["position"][0] + rng.normal(0, 0.12)) * h
    cx = (style["position"][1] + rng.normal(0, 0.12)) * w
    theta = rng.normal(0, 0.4)
    dy, dx = yy - cy, xx - cx
    ry, rx = dy * np.cos(theta) - dx * np.sin(theta), dy * np.sin(theta) + dx * np.cos(theta)
    mask = _shape_mask(style["shape"], ry, rx, r, freq=rng.uniform(0.25, 0.4) / SUPERSAMPLE * 2)
    fg_hue = (style["palette"][0] + rng.normal(0, 0.05)) % 1
    fg = _hsv_to_rgb(fg_hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    image[mask] = _texture(style["texture"], fg, yy, xx, rng)[mask]

    big = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    small = np.asarray(big.resize((size[1], size[0]), Image.BOX), dtype=np.float32)
    small += rng.standard_normal(small.shape, dtype=np.float32) * (255 * rng.uniform(0.01, 0.05))  # sensor noise
    return np.clip(small, 0, 255).astype(np.uint8)


def _save(pixels: np.ndarray, path: Path) -> None:
    if path.suffix.lower() == ".png":
        Image.fromarray(pixels).save(path, optimize=False)
    else:
        Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def _file_name(stem: str, i: int) -> str:
    # Imagewang files end in .JPEG; every 16th image is a PNG, as ImageNet has a few of those
    return f"{stem}_{i:05d}" + (".png" if i % 16 == 7 else ".JPEG")


def _write_split(folder: Path, split_id: int, class_indices, per_class: int, seed: int, size) -> None:
    for c in class_indices:
        class_dir = folder / WNIDS[c]
        class_dir.mkdir(parents=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, split_id, c, i])  # independent of counts and order
            _save(draw_image(c, rng, size), class_dir / _file_name(WNIDS[c], i))


def _write_unsup(folder: Path, n: int, seed: int, size) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        rng = np.random.default_rng([seed, 2, 999, i])
        c = int(rng.integers(len(WNIDS)))  # unlabelled images come from the same 20 classes
        _save(draw_image(c, rng, size), folder / _file_name("unsup", i))


def make_sample(root: Path, seed: int = 0, n_train: int = 24, n_unsup: int = 640, n_val: int = 30,
                image_size: tuple[int, int] = (72, 96)) -> Path:
    """Generate (or reuse) a sample dataset at `root`; n_train/n_val are per class, n_unsup in total.

    The folder is built beside `root` and renamed into place, so a half-written sample never appears.
    """
    root = Path(root)
    params = {"version": GENERATOR_VERSION, "seed": int(seed), "n_train": int(n_train),
              "n_unsup": int(n_unsup), "n_val": int(n_val), "image_size": [int(v) for v in image_size]}
    if n_train < 1 or n_val < 1 or n_unsup < 0 or min(image_size) < 8:
        raise DataError(f"sample needs n_train >= 1, n_val >= 1, n_unsup >= 0, sides >= 8 px; got {params}")
    if (root / MARKER).is_file() and _read_params(root) == params:
        return root
    if root.exists() and not _read_params(root) and any(root.iterdir()):
        raise DataError(f"{root} exists and is not a generated sample: choose another folder or remove it")

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        size = tuple(params["image_size"])
        _write_split(staging / "train", 0, range(len(WNIDS)), n_train, seed, size)
        _write_split(staging / "val", 1, [WNIDS.index(w) for w in VAL_WNIDS], n_val, seed, size)
        _write_unsup(staging / "unsup", n_unsup, seed, size)
        (staging / PARAMS_FILE).write_text(json.dumps(params, indent=1))
        (staging / MARKER).write_text("")
        if root.exists():
            shutil.rmtree(root)  # an older or different sample, ours to replace
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _read_params(root: Path) -> dict | None:
    try:
        return json.loads((root / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return None
