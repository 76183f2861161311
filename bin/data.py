"""Get a dataset ready and describe it: python bin/data.py DATA [--data-root data] (default: $IMGWANG_DATA or data/)."""

import argparse
import sys
from pathlib import Path

from imgwang.core.errors import ImgwangError
from imgwang.data.imagewang import class_label
from imgwang.data.layout import HELD_OUT_EVERY, load_layout
from imgwang.data.resolve import resolve_data


def summary(root: Path) -> str:
    layout = load_layout(root)
    if not layout.labelled:
        return "\n".join([
            f"data: {root}",
            f"images: {len(layout.unlabelled()) + len(layout.val)} without classes (no train/ and val/ folders): "
            f"pretraining only",
            f"pretext images: {len(layout.unlabelled())}, held out to measure the pretext task: {len(layout.val)} "
            f"(every {HELD_OUT_EVERY}th)",
        ])
    counts = layout.counts()
    val_classes = sorted({label for _, label in layout.val})
    lines = [
        f"data: {root}",
        f"images: train {counts['train']}, unsup {counts['unsup']}, val {counts['val']}"
        + ("" if layout.has_unsup else " (no unsup/: pretext tasks use the train images)"),
        f"pretext images (unsup + train): {len(layout.unlabelled())}",
        f"classes: {len(layout.classes)} in train, {len(val_classes)} in val",
    ]
    train_per_class = [sum(1 for _, k in layout.train if k == i) for i in range(len(layout.classes))]
    for i, name in enumerate(layout.classes):
        in_val = "  (val)" if i in val_classes else ""
        lines.append(f"  {i:3d} {class_label(name):40s} {train_per_class[i]:6d}{in_val}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", help="sample, imagewang, imagewang-320, imagewang-full, or a folder path")
    parser.add_argument("--data-root", default=None, type=Path, help="where named datasets live (default: $IMGWANG_DATA or data/)")
    args = parser.parse_args(argv)
    try:
        print(summary(resolve_data(args.data, args.data_root)))
    except ImgwangError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
