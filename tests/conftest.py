"""Shared test set-up: offline, small thread count, importable lib."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COMET_MODE", "off")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import torch  # noqa: E402

torch.set_num_threads(2)

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def lab_env(tmp_path_factory):
    """Data and cache folders for the whole session (the sample is generated once), runs elsewhere."""
    root = tmp_path_factory.mktemp("lab")
    env = {"IMGWANG_DATA": str(root / "data"), "IMGWANG_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def one_torch_thread():
    """One thread: on a 2-core machine shared with other jobs, two threads spin-wait and run ~10x slower."""
    from imgwang.device import torch_threads

    return torch_threads(1)


def assert_overfit(result: dict) -> None:
    """An overfit_one_batch result: (nearly) perfect on its batch, and the loss down at least tenfold."""
    assert result["train_metric"] >= 0.95
    assert result["last_loss"] <= 0.1 * result["first_loss"]


def plain_image_folder(folder: Path, n: int, sample: Path | None = None, subfolders: int = 1) -> Path:
    """A folder of the first n unlabelled sample images, no train/ or val/ (spread over `subfolders`
    subfolders when > 1, as photos usually come)."""
    if sample is None:
        from imgwang.data.resolve import resolve_data

        sample = resolve_data("sample")
    import shutil

    for i, path in enumerate(sorted((sample / "unsup").iterdir())[:n]):
        dest = folder / f"roll{i % subfolders}" / path.name if subfolders > 1 else folder / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    return folder
