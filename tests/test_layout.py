"""load_layout: class index from sorted train folders, val reuses it, clear errors off-layout."""

from pathlib import Path

import pytest
from PIL import Image

from imgwang.core.errors import DataError
from imgwang.data.layout import load_layout


def touch_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "WEBP" if path.suffix.lower() == ".webp" else "JPEG"
    Image.new("RGB", (6, 4), (200, 10, 10)).save(path, format=fmt)
    return path


def make_tree(root: Path, files: list[str]) -> Path:
    for rel in files:
        touch_image(root / rel)
    return root


def test_class_index_from_sorted_train_folders_and_val_subset_reuses_it(tmp_path):
    root = make_tree(tmp_path, [
        "train/zebra/a.jpg", "train/apple/b.jpg", "train/mango/c.jpg", "train/mango/d.jpg",
        "val/mango/e.jpg", "val/zebra/f.jpg",
        "unsup/u1.jpg", "unsup/u2.jpg",
    ])
    layout = load_layout(root)
    assert layout.classes == ["apple", "mango", "zebra"]
    assert [(p.name, k) for p, k in layout.train] == [("b.jpg", 0), ("c.jpg", 1), ("d.jpg", 1), ("a.jpg", 2)]
    # val holds only two of the three classes and keeps the train index, not its own 0/1
    assert [(p.name, k) for p, k in layout.val] == [("e.jpg", 1), ("f.jpg", 2)]
    assert layout.has_unsup
    # pretext images: unsup + train, never val
    names = [p.name for p in layout.unlabelled()]
    assert names == ["u1.jpg", "u2.jpg", "b.jpg", "c.jpg", "d.jpg", "a.jpg"]
    assert not {"e.jpg", "f.jpg"} & set(names)
    assert layout.counts() == {"train": 4, "unsup": 2, "val": 2}


def test_folder_without_unsup_uses_train_images_for_pretext(tmp_path):
    root = make_tree(tmp_path, ["train/a/1.jpg", "train/b/2.jpg", "val/a/3.jpg"])
    layout = load_layout(root)
    assert not layout.has_unsup and layout.unsup == []
    assert layout.unlabelled() == [p for p, _ in layout.train]
    assert len(layout.unlabelled()) == 2


def test_mixed_case_extensions_count_and_other_files_are_ignored(tmp_path):
    root = make_tree(tmp_path, [
        "train/a/x1.JPEG", "train/a/x2.Jpg", "train/a/x3.png", "train/a/x4.WEBP", "train/a/x5.jpeg",
        "val/a/y.PNG", "unsup/z.JPG",
    ])
    (root / "train/a/notes.txt").write_text("not an image")
    (root / "train/a/labels.csv").write_text("x,y")
    touch_image(root / "train/a/.hidden.jpg")  # editor/OS droppings
    (root / "train/.ipynb_checkpoints").mkdir()  # hidden folder: not a class
    layout = load_layout(root)
    assert layout.classes == ["a"]
    assert sorted(p.name for p, _ in layout.train) == ["x1.JPEG", "x2.Jpg", "x3.png", "x4.WEBP", "x5.jpeg"]
    assert [p.name for p, _ in layout.val] == ["y.PNG"]
    assert [p.name for p in layout.unsup] == ["z.JPG"]


def test_order_is_sorted_regardless_of_creation_order(tmp_path):
    root = make_tree(tmp_path, ["train/a/c.jpg", "train/a/a.jpg", "train/a/b.jpg", "val/a/v.jpg"])
    assert [p.name for p, _ in load_layout(root).train] == ["a.jpg", "b.jpg", "c.jpg"]


def test_val_class_not_in_train_is_a_data_error(tmp_path):
    root = make_tree(tmp_path, ["train/cat/1.jpg", "val/cat/2.jpg", "val/dog/3.jpg"])
    with pytest.raises(DataError, match=r"val/dog is not one of the train classes"):
        load_layout(root)


@pytest.mark.parametrize("files, why", [
    ([], "folder not found"),
    (["val/a/1.jpg"], "no train/ folder"),
    (["train/a/1.jpg"], "no val/ folder"),
    (["train/1.jpg", "val/a/1.jpg"], "train/ has no class folders"),
    (["train/a/readme.txt", "val/a/1.jpg"], "no images in train"),
    (["train/a/1.jpg", "val/a/readme.txt"], "no images in val"),
    (["train/a/1.jpg", "train/b/readme.txt", "val/a/2.jpg"], "no images in train/b/"),
    (["notes/readme.txt"], "no train/ or val/ folder, and no images to pretrain on"),
    (["only.jpg", ".hidden/x.jpg"], "no train/ or val/ folder, and only one image to pretrain on"),
])
def test_folder_not_in_layout_gives_one_clear_line(tmp_path, files, why):
    root = tmp_path / "mydata"
    for rel in files:
        if rel.endswith(".txt"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("x")
        else:
            touch_image(root / rel)
    with pytest.raises(DataError) as info:
        load_layout(root)
    message = str(info.value)
    assert "\n" not in message
    assert str(root) in message and why in message
    assert "root/train/<class>/*.jpg" in message and "root/unsup/*.jpg" in message


def test_a_plain_folder_of_images_is_unlabelled_with_every_tenth_held_out(tmp_path):
    """Point imgwang at any folder of images: all unlabelled, nested folders included, hidden ones not;
    every 10th image in sorted order measures the pretext task and is never trained on."""
    names = [f"trip/{i:02d}.jpg" for i in range(15)] + [f"{i:02d}.PNG" for i in range(7)]
    root = make_tree(tmp_path / "photos", names + [".thumbnails/t.jpg", "trip/.cache/c.jpg"])
    (root / "trip" / "notes.txt").write_text("x")
    layout = load_layout(root)
    images = sorted(root / n for n in names)
    assert not layout.labelled and layout.classes == [] and layout.train == []
    assert [p for p, _ in layout.val] == images[::10] and {y for _, y in layout.val} == {-1}
    assert layout.unlabelled() == [p for i, p in enumerate(images) if i % 10]
    assert not set(layout.unlabelled()) & {p for p, _ in layout.val}
    assert load_layout(make_tree(tmp_path / "labelled", ["train/a/1.jpg", "val/a/2.jpg"])).labelled


def test_images_in_subfolders_and_other_pil_formats_count(tmp_path):
    """unsup/ sorted into shards and class folders with subfolders (as torchvision's ImageFolder reads them) lose
    no image; hidden subfolders stay out; BMP, TIFF and GIF count as images."""
    root = make_tree(tmp_path, ["train/cat/1.jpg", "train/cat/day2/2.jpg", "val/cat/v/3.jpg",
                                "unsup/0.jpg", "unsup/shard1/a.jpg", "unsup/shard1/deep/b.jpg",
                                "unsup/.cache/c.jpg", "train/cat/.ipynb_checkpoints/d.jpg"])
    for name in ("e.bmp", "f.TIF", "g.tiff", "h.gif"):
        Image.new("RGB", (6, 4), (10, 200, 10)).save(root / "unsup" / name)
    layout = load_layout(root)
    rel = [p.relative_to(root).as_posix() for p in layout.unsup]
    assert rel == ["unsup/0.jpg", "unsup/e.bmp", "unsup/f.TIF", "unsup/g.tiff", "unsup/h.gif",
                   "unsup/shard1/a.jpg", "unsup/shard1/deep/b.jpg"]
    assert [p.relative_to(root).as_posix() for p, _ in layout.train] == ["train/cat/1.jpg", "train/cat/day2/2.jpg"]
    assert [p.name for p, _ in layout.val] == ["3.jpg"]


def test_linked_folders_are_followed_once_and_a_link_loop_ends(tmp_path):
    """unsup/coco -> a collection elsewhere counts (ImageFolder follows links too); a link back up the tree is
    walked once, not forever, and lists nothing twice."""
    root = make_tree(tmp_path / "data", ["train/cat/1.jpg", "val/cat/2.jpg", "unsup/0.jpg"])
    elsewhere = make_tree(tmp_path / "coco", ["images/a.jpg", "images/b.jpg"])
    (root / "unsup" / "coco").symlink_to(elsewhere / "images", target_is_directory=True)
    (elsewhere / "images" / "up").symlink_to(root / "unsup", target_is_directory=True)
    layout = load_layout(root)
    assert [p.relative_to(root).as_posix() for p in layout.unsup] == ["unsup/0.jpg", "unsup/coco/a.jpg",
                                                                        "unsup/coco/b.jpg"]
