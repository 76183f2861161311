"""Turn a DATA= value into a dataset folder: a generated sample, an Imagewang download, or a path."""

from __future__ import annotations

import os
from pathlib import Path

from imgwang.data.download import DATASETS, fetch_dataset
from imgwang.data.layout import load_layout
from imgwang.data.sample import make_sample
from ..core.errors import ConfigError

SAMPLE = "sample"
KNOWN = (SAMPLE, *DATASETS)


def default_data_root() -> Path:
    """Where named datasets live: data/ in the project, or $IMGWANG_DATA (the tests point it elsewhere)."""
    return Path(os.environ.get("IMGWANG_DATA", "data"))


def resolve_data(data: str, data_root: Path | None = None) -> Path:
    """Return the root of a dataset folder (Imagewang layout, or plain images), generating or downloading it when needed.

    Raises ConfigError for a value that is neither a known name nor an existing folder, and DataError
    when the data cannot be fetched or the folder is not in Imagewang layout.
    """
    data = str(data).strip()
    data_root = Path(data_root) if data_root is not None else default_data_root()
    if data == SAMPLE:
        return make_sample(data_root / SAMPLE)
    if data in DATASETS:
        return fetch_dataset(data, data_root)
    path = Path(data).expanduser()
    if not data or not path.exists():
        raise ConfigError(f"unknown DATA={data!r}: use sample, imagewang, imagewang-320, imagewang-full "
                          f"or a path to a folder in Imagewang layout (or of plain images, to pretrain on)")
    load_layout(path)  # raises DataError naming what is missing
    return path
