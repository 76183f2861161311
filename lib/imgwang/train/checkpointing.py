"""Training checkpoints: everything needed to continue exactly where a run stopped.

`last.pt` is rewritten after every complete epoch and `best.pt` when the monitored metric improves.
Both are written atomically (imgwang.core.atomic), so a kill mid-write leaves the previous good file (a
leftover temporary file is never read).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..core.errors import ImgwangError

FORMAT = 1


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint written by `fit`; an unreadable or foreign file is one clear ImgwangError."""
    path = Path(path)
    if not path.is_file():
        raise ImgwangError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, garbage, or not a torch file
        raise ImgwangError(f"checkpoint {path} is unreadable ({type(e).__name__}); it may be truncated: "
                           f"delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise ImgwangError(f"{path} is not a training checkpoint written by imgwang.train.fit")
    return state


def rng_state() -> dict:
    """Global RNG states (python, numpy, torch cpu and cuda) in types that torch.load(weights_only) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def load_model_state(model: torch.nn.Module, state_dict: dict, source: Path) -> None:
    """Strict load that names the mismatching keys instead of dumping a traceback."""
    own, theirs = set(model.state_dict()), set(state_dict)
    missing, unexpected = sorted(own - theirs), sorted(theirs - own)
    if missing or unexpected:
        raise ImgwangError(f"{source} does not match this model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                           f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:  # same keys, different shapes
        raise ImgwangError(f"{source} does not match this model: {str(e).splitlines()[-1].strip()}") from None
