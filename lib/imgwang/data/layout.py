"""Read a dataset folder: Imagewang layout, or a plain folder of images for pretraining only.

Imagewang layout: train/<class>/*, val/<class>/*, optional unsup/*. The class index comes from the
sorted train folders; val reuses it (Imagewang's val holds only the 10 Imagewoof classes of the 20 train
classes), so a val folder must name a train class. Images in subfolders count too (train/<class>/<any>/x.jpg,
unsup/<shard>/x.jpg), as torchvision's ImageFolder counts them: a folder of unlabelled images sorted into
shards must not be dropped without a word.

A folder with neither train/ nor val/ is a plain folder of images (in any subfolders): every image is
unlabelled, and every 10th (in sorted order) is held out to measure the pretext task on images training
never saw. Such data can be pretrained on, not fine-tuned or evaluated (there are no labels).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}  # what PIL reads (a GIF: its first frame)
EXPECTED_LAYOUT = ("root/train/<class>/*.jpg, root/val/<class>/*.jpg, optional root/unsup/*.jpg; or, to "
                   "pretrain only, a folder of images without train/ and val/")
HELD_OUT_EVERY = 10  # a plain folder: every 10th image measures the pretext task


def is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Image files below `folder`, in any subfolder (hidden files and folders skipped), sorted by path so every
    run sees the same order. Linked folders are followed, as ImageFolder follows them (unsup/coco -> a collection
    elsewhere), each real folder once, so a link back up the tree cannot loop."""
    found, seen = [], set()
    for here, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [path for path in (Path(here) / name for name in files) if is_image(path)]
    return sorted(found)


def class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass
class Layout:
    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    unsup: list[Path] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        """False for a plain folder of images: nothing to fine-tune or evaluate on."""
        return bool(self.classes)

    @property
    def has_unsup(self) -> bool:
        return len(self.unsup) > 0

    def unlabelled(self) -> list[Path]:
        """Every image a pretext task may use: unsup + train (never val, that is the score)."""
        return list(self.unsup) + [path for path, _ in self.train]

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "unsup": len(self.unsup), "val": len(self.val)}


def _not_in_layout(root: Path, why: str) -> DataError:
    return DataError(f"{root} is not in Imagewang layout: {why} (expected {EXPECTED_LAYOUT})")


def _labelled(split: Path, class_index: dict[str, int], root: Path) -> list[tuple[Path, int]]:
    items = []
    for folder in class_folders(split):
        if folder.name not in class_index:
            raise _not_in_layout(root, f"{split.name}/{folder.name} is not one of the train classes")
        items += [(path, class_index[folder.name]) for path in list_images(folder)]
    return items


def load_layout(root: Path) -> Layout:
    root = Path(root)
    if not root.is_dir():
        raise _not_in_layout(root, "folder not found")
    if is_plain_folder(root):
        return plain_folder_layout(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise _not_in_layout(root, f"no {split}/ folder")
    classes = [p.name for p in class_folders(root / "train")]
    if not classes:
        raise _not_in_layout(root, "train/ has no class folders")
    class_index = {name: i for i, name in enumerate(classes)}
    train = _labelled(root / "train", class_index, root)
    val = _labelled(root / "val", class_index, root)
    if not train:
        raise _not_in_layout(root, "no images in train/<class>/")
    if empty := sorted(set(classes) - {classes[k] for _, k in train}):  # a class no fine-tuning could learn
        shown = ", ".join(f"train/{name}/" for name in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise _not_in_layout(root, f"no images in {shown}")
    if not val:
        raise _not_in_layout(root, "no images in val/<class>/")
    unsup = list_images(root / "unsup") if (root / "unsup").is_dir() else []
    return Layout(root=root, classes=classes, train=train, val=val, unsup=unsup)


def is_plain_folder(root: Path) -> bool:
    """Neither train/ nor val/: a folder of unlabelled images (told apart without listing them)."""
    return not (Path(root) / "train").is_dir() and not (Path(root) / "val").is_dir()


def plain_folder_layout(root: Path) -> Layout:
    """Every image below `root` (hidden files and folders skipped), unlabelled; every 10th held out."""
    images = list_images(root)
    if len(images) < 2:
        found = "no images" if not images else "only one image"
        raise _not_in_layout(root, f"no train/ or val/ folder, and {found} to pretrain on")
    held_out = [(p, -1) for p in images[::HELD_OUT_EVERY]]
    rest = [p for i, p in enumerate(images) if i % HELD_OUT_EVERY]
    return Layout(root=root, classes=[], train=[], val=held_out, unsup=rest)
