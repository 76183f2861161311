"""A small generated dataset in Imagewang layout, for offline runs, tests and quick checks, built like photographs.

What a class is: an object identity. Each of the 20 classes (named by the real Imagewang wnids, so class
names resolve) is one fixed composite object: three flat parts (ellipses, boxes, triangles) with a fixed
shape, size and spatial arrangement, a fixed relative shading between them, and one surface texture of its
own painted on every part (stripes, checker, dots or grid, at a class angle and period; TEXTURES). Nothing
else about an image belongs to its class. Every image draws at random, independently of the class:
- the object's colour: hue, saturation and brightness, from bands (OBJECT_HUE, OBJECT_SATURATION);
- its position (the centre anywhere that keeps at least half the object in the frame), scale (about 1.5x
  range), a mirror image (p 0.5) and a small rotation (within +-15 degrees; objects stay upright);
- the background: a gradient between two colours from a band of hues (BACKGROUND_HUE), with a faint
  low-frequency texture;
- 0 to 2 distractor parts of the same vocabulary (single ellipses, boxes, triangles, any colour, size,
  place and angle), which are never arranged as a class object;
- lighting from above (the top of the image brighter), the exposure and contrast (each x0.6-1.4), and sensor
  noise.
So no low-level statistic names the class: mean colour, the hue histogram and where the mass of the image
lies are drawn per image; only the object's shape, arrangement, shading and texture survive.

Why colours come from bands (generator 3): the colour of an image must not tell it apart from the others
once the views' colour jitter has run, or view methods (simclr, swav, dino, byol) learn to match colours
instead of objects. With hues over the whole circle (generator 2) they did: simclr found its partner view by
colour and its kNN stayed at chance, while the same run on grey views learnt the classes (docs/results.md,
"Why the view methods do not learn sample v2"). The bands are about as wide as the jitter (BYOL's and DINO's
hue +-0.1, SimCLR's +-0.2).

Which invariances it rewards: an encoder that is invariant to colour (colour jitter, grayscale), position and
scale (random resized crops), small rotations and mirror images, and that ignores background and clutter,
keeps the class; one that keys on colour, position or pixel layout loses it. No two classes' objects are
mirror images of each other, so flips never merge classes. "Up" stays meaningful (objects upright, light from
above), so rotation-prediction pretext tasks have something to learn.

Same seed -> byte-identical files; each image depends only on (seed, split, class, index).
"""

import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from imgwang.data.imagewang import CLASS_NAMES, IMAGEWOOF_CLASSES

from ..core.errors import DataError

GENERATOR_VERSION = 3  # bump when the drawing changes, so old samples are rebuilt (2: object identities,
# 3: class textures, colour bands, exposure and contrast, objects up to half out of the frame and mirrored)
PARAMS_FILE = "sample.json"
MARKER = ".complete"
WNIDS = sorted(CLASS_NAMES)  # train/ class folders, same order as load_layout's class index
VAL_WNIDS = sorted(IMAGEWOOF_CLASSES)  # val/ holds only the Imagewoof ten, as in Imagewang
SUPERSAMPLE = 2  # draw at 2x and downsample: anti-aliased edges for free
PART_KINDS = ("ellipse", "box", "triangle")
PARTS_PER_OBJECT = 3
SHADES = (1.0, 0.72, 0.48)  # relative brightness of an object's parts (a class fixes which part gets which)
# Each class's surface texture (kind, angle in degrees in the object's axes, period in object units; the object's
# larger half-side is 1), painted on every part of its object. Classes 0-7: stripes, 8-11 checkers, 12-15 dots,
# 16-19 grids. Stripes at 45 and 135 degrees are mirror twins; their objects are not (MAX_SILHOUETTE_IOU).
TEXTURES = tuple((kind, angle, period) for kind, angles in (("stripes", (0, 45, 90, 135)), ("checker", (0, 45)),
                                                            ("dots", (0, 45)), ("grid", (0, 45)))
                 for angle in angles for period in (0.2, 0.34))
TEXTURE_DARKEN = 0.5  # the texture's dark cells: the part's colour at half its brightness
# Colours vary per image within bands about as wide as the views' colour jitter (DINO's and BYOL's hue +-0.1,
# SimCLR's +-0.2), so an image's colour does not single it out from the others once its views are jittered
# (with hues over the whole circle, view methods learn colour matching instead of the object: docs/results.md).
OBJECT_HUE = (0.58, 0.73)  # blues to violets
OBJECT_SATURATION = (0.45, 0.65)
BACKGROUND_HUE = (0.08, 0.22)  # oranges to olives
CLASS_SEED = 20240  # the 20 objects are drawn once from this seed (not from the sample's seed)
MAX_SILHOUETTE_IOU = 0.55  # accepted objects overlap less than this with every other one and its mirror image
MAX_TILT = np.deg2rad(15)


def _part_polygon(kind: str, cx: float, cy: float, hw: float, hh: float) -> np.ndarray:
    """(n, 2) vertices (x, y) of one part in object coordinates (y down, the object in about [-1, 1]^2)."""
    if kind == "ellipse":
        a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        return np.stack([cx + hw * np.cos(a), cy + hh * np.sin(a)], 1)
    if kind == "box":
        return np.array([(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)])
    if kind == "triangle":  # apex up: upright objects keep an "up"
        return np.array([(cx, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)])
    raise ValueError(kind)


def _random_object(rng: np.random.Generator) -> list[tuple]:
    """Three parts that touch: each new part sits on the outline of one already placed."""
    parts = []
    for i in range(PARTS_PER_OBJECT):
        kind = PART_KINDS[rng.integers(len(PART_KINDS))]
        hw, hh = rng.uniform(0.18, 0.5, size=2) if i else rng.uniform(0.3, 0.55, size=2)
        if i == 0:
            cx, cy = 0.0, 0.0
        else:
            _, px, py, phw, phh = parts[rng.integers(len(parts))]
            a = rng.uniform(0, 2 * np.pi)
            cx, cy = px + np.cos(a) * (phw + 0.6 * hw), py + np.sin(a) * (phh + 0.6 * hh)
        parts.append((kind, cx, cy, hw, hh))
    order = rng.permutation(PARTS_PER_OBJECT)  # which part is drawn last (in front), and which shade is where
    shades = rng.permutation(SHADES)
    rng.integers(5, size=PARTS_PER_OBJECT)  # generator v2 drew each part's pattern here: kept, so the shapes stay
    return [(*parts[k], float(s)) for k, s in zip(order, shades)]


def _normalised(parts: list[tuple]) -> list[tuple]:
    """The object centred on its bounding box and scaled so its larger half-side is 1."""
    points = np.concatenate([_part_polygon(*p[:5]) for p in parts])
    lo, hi = points.min(0), points.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2
    return [(k, (cx - centre[0]) / half, (cy - centre[1]) / half, hw / half, hh / half, *rest)
            for k, cx, cy, hw, hh, *rest in parts]


def _silhouette(parts: list[tuple], side: int = 32, mirror: bool = False) -> np.ndarray:
    canvas = Image.new("L", (side, side))
    draw = ImageDraw.Draw(canvas)
    for kind, cx, cy, hw, hh, *_ in parts:
        points = _part_polygon(kind, cx, cy, hw, hh) * np.array([-1 if mirror else 1, 1])
        draw.polygon([tuple(v) for v in (points + 1) * (side - 1) / 2], fill=255)
    return np.asarray(canvas) > 0


@lru_cache(maxsize=1)
def class_objects() -> tuple:
    """The 20 class objects' shapes, drawn once from CLASS_SEED: each a list of (kind, cx, cy, hw, hh, shade),
    centred and scaled to [-1, 1]. Objects are redrawn until no silhouette overlaps another one, or its
    mirror image, by MAX_SILHOUETTE_IOU or more, so no two classes are alike or mirror twins."""
    rng = np.random.default_rng(CLASS_SEED)
    objects, taken = [], []  # taken: the silhouettes of the accepted objects and of their mirror images
    while len(objects) < len(WNIDS):
        parts = _normalised(_random_object(rng))
        mine = _silhouette(parts)
        if all((mine & s).sum() / (mine | s).sum() < MAX_SILHOUETTE_IOU for s in taken):
            objects.append(parts)
            taken += [mine, _silhouette(parts, mirror=True)]
    return tuple(objects)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One colour, h/s/v in [0, 1] -> float RGB in [0, 1]."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _rgb255(colour: np.ndarray) -> tuple:
    return tuple(int(round(c)) for c in np.clip(colour, 0, 1) * 255)


def _placed(points: np.ndarray, cx: float, cy: float, scale: float, angle: float) -> list[tuple]:
    """Object-space vertices rotated by `angle`, scaled and moved to (cx, cy) in canvas pixels."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = points[:, 0] * c - points[:, 1] * s, points[:, 0] * s + points[:, 1] * c
    return list(zip((cx + scale * x).tolist(), (cy + scale * y).tolist()))


def _paint_texture(canvas: Image.Image, where: list[tuple], texture: tuple, colour: tuple, cx: float, cy: float,
                   scale: float, angle: float) -> None:
    """Paint the dark cells of `texture` (kind, angle in degrees, period) inside the placed polygon `where`, in
    the object's own axes (so it turns and scales with the object)."""
    kind, texture_angle, period = texture
    xs, ys = zip(*where)
    x0, y0 = max(int(min(xs)), 0), max(int(min(ys)), 0)
    x1, y1 = min(int(max(xs)) + 2, canvas.width), min(int(max(ys)) + 2, canvas.height)
    if x1 <= x0 or y1 <= y0:
        return
    mask = Image.new("L", (x1 - x0, y1 - y0))
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in where], fill=255)
    dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = dx - cx, dy - cy
    t = angle + np.deg2rad(texture_angle)
    c, s = np.cos(t), np.sin(t)
    u, v = (dx * c + dy * s) / (scale * period), (dy * c - dx * s) / (scale * period)  # undo the rotation
    fu, fv = u - np.floor(u), v - np.floor(v)
    dark = {"stripes": lambda: fv < 0.5,
            "checker": lambda: (np.floor(u).astype(int) + np.floor(v).astype(int)) % 2 == 0,
            "dots": lambda: (fu - 0.5) ** 2 + (fv - 0.5) ** 2 < 0.09,
            "grid": lambda: (fu < 0.25) | (fv < 0.25)}[kind]()
    canvas.paste(colour, (x0, y0), Image.fromarray(np.where(dark, np.asarray(mask), 0).astype(np.uint8)))


def _background(scene: dict, h: int, w: int) -> Image.Image:
    """An RGB (w, h) image: a two-colour gradient (hues from BACKGROUND_HUE), lighter at the top, times a faint
    smooth texture. Drawn on a coarse grid and upsampled (it is smooth), which keeps it cheap."""
    hue = scene["background_hue"]
    top = _hsv_to_rgb(hue, *scene["background_top_sv"])
    bottom = _hsv_to_rgb((hue + scene["background_hue_shift"]) % 1, *scene["background_bottom_sv"])
    angle = scene["background_angle"]
    y, x = np.linspace(0, 1, 9)[:, None], np.linspace(-0.5, 0.5, 12)[None]
    t = np.clip((y - 0.5) * np.cos(angle) + x * np.sin(angle) + 0.5, 0, 1)[..., None]
    coarse = (top * (1 - t) + bottom * t) * (1 + scene["background_texture_strength"] * scene["background_texture"])
    return Image.fromarray((np.clip(coarse, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)


def draw_scene(rng: np.random.Generator, size: tuple[int, int]) -> dict:
    """Every random choice of one image, independent of its class, drawn in a fixed order (the files depend on it):
    background, distractors, the object's scale, place, mirror image, tilt and colour, the camera. Positions and
    scale are in pixels of the supersampled canvas; `centre_x` is where the object ends up (after the mirror)."""
    h, w = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    scene = {"background_hue": rng.uniform(*BACKGROUND_HUE),
             "background_top_sv": (rng.uniform(0.25, 0.45), rng.uniform(0.6, 0.95)),
             "background_hue_shift": rng.normal(0, 0.04),
             "background_bottom_sv": (rng.uniform(0.3, 0.5), rng.uniform(0.2, 0.6)),
             "background_angle": rng.normal(0, 0.4),
             "background_texture": rng.uniform(-0.5, 0.5, size=(9, 12, 1)),  # blobs about a twelfth of the width
             "background_texture_strength": rng.uniform(0.02, 0.08)}
    distractors = []  # single parts, any colour, size, place and angle
    for _ in range(rng.integers(0, 3)):
        kind = PART_KINDS[rng.integers(len(PART_KINDS))]
        half_sides = rng.uniform(0.4, 1, size=2)
        distractors.append((kind, half_sides, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.13) * h,
                            rng.uniform(-np.pi, np.pi), (rng.uniform(), rng.uniform(0.2, 1), rng.uniform(0.25, 1))))
    scale = rng.uniform(0.30, 0.44) * h  # half the object's larger side, in canvas pixels
    cx, cy = rng.uniform(scale / 2, w - scale / 2), rng.uniform(scale / 2, h - scale / 2)  # up to half out of frame
    mirror = bool(rng.uniform() < 0.5)
    scene.update(distractors=distractors, scale=scale, drawn_x=cx, centre_x=w - cx if mirror else cx, centre_y=cy,
                 mirror=mirror, tilt=rng.uniform(-MAX_TILT, MAX_TILT),
                 object_hsv=(rng.uniform(*OBJECT_HUE), rng.uniform(*OBJECT_SATURATION), rng.uniform(0.55, 1)),
                 contrast=rng.uniform(0.6, 1.4), exposure=rng.uniform(0.6, 1.4))  # the camera (the jitter spans as much)
    scene["noise"] = rng.standard_normal((size[0], size[1], 3), dtype=np.float32)
    scene["noise_level"] = rng.uniform(0.01, 0.04)  # sensor noise, as a fraction of the range
    return scene


def draw_image(class_index: int, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """One (H, W, 3) uint8 image of the class object, with every nuisance drawn at random."""
    return paint(class_index, draw_scene(rng, size), size)


def paint(class_index: int, scene: dict, size: tuple[int, int]) -> np.ndarray:
    """The image of a class object in a scene (draw_scene): no randomness here."""
    h, w = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    canvas = _background(scene, h, w)
    draw = ImageDraw.Draw(canvas)
    for kind, half_sides, x, y, part_scale, angle, hsv in scene["distractors"]:
        where = _placed(_part_polygon(kind, 0, 0, *half_sides), x, y, part_scale, angle)
        draw.polygon(where, fill=_rgb255(_hsv_to_rgb(*hsv)))

    cx, cy, scale, angle = scene["drawn_x"], scene["centre_y"], scene["scale"], scene["tilt"]
    hue, saturation, value = scene["object_hsv"]
    for kind, px, py, hw, hh, shade in class_objects()[class_index]:
        where = _placed(_part_polygon(kind, px, py, hw, hh), cx, cy, scale, angle)
        draw.polygon(where, fill=_rgb255(_hsv_to_rgb(hue, saturation, value * shade)))
        dark = _rgb255(_hsv_to_rgb(hue, saturation, value * shade * TEXTURE_DARKEN))
        _paint_texture(canvas, where, TEXTURES[class_index], dark, cx, cy, scale, angle)
    if scene["mirror"]:
        canvas = canvas.transpose(Image.FLIP_LEFT_RIGHT)

    small = canvas.resize((size[1], size[0]), Image.BOX)
    light = np.linspace(1.12, 0.88, size[0], dtype=np.float32)[:, None, None]  # lit from above
    pixels = np.asarray(small, dtype=np.float32) * light
    mean = pixels.mean()
    pixels = ((pixels - mean) * scene["contrast"] + mean) * scene["exposure"]
    pixels += scene["noise"] * (255 * scene["noise_level"])
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _save(pixels: np.ndarray, path: Path) -> None:
    if path.suffix.lower() == ".png":
        Image.fromarray(pixels).save(path, optimize=False)
    else:
        Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def _file_name(stem: str, i: int) -> str:
    # Imagewang files end in .JPEG; every 16th image is a PNG, as ImageNet has a few of those
    return f"{stem}_{i:05d}" + (".png" if i % 16 == 7 else ".JPEG")


SPLIT_IDS = {"train": 0, "val": 1, "unsup": 2}  # part of each image's random seed
UNSUP_CLASS = 999  # unsup images seed with this in the class's place, then draw their class


def _image_rng(seed: int, split: str, class_index: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], class_index, i])  # independent of counts and order


# The scalar nuisances of a scene, by name (nuisance_values): what an encoder's neighbours may share instead of the class.
NUISANCES = ("background_hue", "background_top_value", "background_bottom_value", "distractors", "centre_x", "centre_y",
             "scale", "mirror", "tilt", "object_hue", "object_saturation", "object_value", "contrast", "exposure",
             "noise_level")


def nuisance_values(scene: dict) -> dict[str, float]:
    """NUISANCES of a scene (draw_scene), each a number."""
    hue, saturation, value = scene["object_hsv"]
    return {"background_hue": scene["background_hue"], "background_top_value": scene["background_top_sv"][1],
            "background_bottom_value": scene["background_bottom_sv"][1], "distractors": len(scene["distractors"]),
            "centre_x": scene["centre_x"], "centre_y": scene["centre_y"], "scale": scene["scale"],
            "mirror": float(scene["mirror"]), "tilt": scene["tilt"], "object_hue": hue, "object_saturation": saturation,
            "object_value": value, "contrast": scene["contrast"], "exposure": scene["exposure"],
            "noise_level": scene["noise_level"]}


def _write_split(folder: Path, split: str, class_indices, per_class: int, seed: int, size) -> None:
    for c in class_indices:
        class_dir = folder / WNIDS[c]
        class_dir.mkdir(parents=True)
        for i in range(per_class):
            _save(draw_image(c, _image_rng(seed, split, c, i), size), class_dir / _file_name(WNIDS[c], i))


def _write_unsup(folder: Path, n: int, seed: int, size) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        rng = _image_rng(seed, "unsup", UNSUP_CLASS, i)
        c = int(rng.integers(len(WNIDS)))  # unlabelled images come from the same 20 classes
        _save(draw_image(c, rng, size), folder / _file_name("unsup", i))


def is_generated(root: Path) -> bool:
    """A folder this generator made, at its current version."""
    params = _read_params(Path(root))
    return bool(params) and params.get("version") == GENERATOR_VERSION and (Path(root) / MARKER).is_file()


def scene_of(root: Path, path: Path) -> tuple[int, dict]:
    """(class index, scene) of a stored sample image, drawn again from its seed: what every nuisance of that image
    was (position, scale, colour, exposure, ...), e.g. to ask what an encoder's neighbours share."""
    params, path = _read_params(Path(root)), Path(path)
    if not is_generated(root):
        raise DataError(f"{root} is not a sample of generator {GENERATOR_VERSION}: its scenes cannot be redrawn")
    split = path.parent.name if path.parent.name == "unsup" else path.parent.parent.name
    number = path.stem.rsplit("_", 1)[-1]
    if split not in SPLIT_IDS or (split != "unsup" and path.parent.name not in WNIDS) or not number.isdigit():
        raise DataError(f"{path} is not a sample image under {root}'s train/, val/ or unsup/")
    i, size = int(number), tuple(params["image_size"])
    if split == "unsup":
        rng = _image_rng(params["seed"], split, UNSUP_CLASS, i)
        c = int(rng.integers(len(WNIDS)))
    else:
        c = WNIDS.index(path.parent.name)
        rng = _image_rng(params["seed"], split, c, i)
    return c, draw_scene(rng, size)


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
        _write_split(staging / "train", "train", range(len(WNIDS)), n_train, seed, size)
        _write_split(staging / "val", "val", [WNIDS.index(w) for w in VAL_WNIDS], n_val, seed, size)
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
