"""Shared test set-up: offline, small thread count, importable lib."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("COMET_MODE", "off")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import torch  # noqa: E402

torch.set_num_threads(2)
