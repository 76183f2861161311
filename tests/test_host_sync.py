"""The hot path never makes the host wait for the device: on a GPU one such wait per step leaves the GPU
idle while the host launches the next kernels (session 1 measured a 1.22-1.30 step overhead on an H200).

HostSyncs finds the culprits by the aten operations they dispatch, so these checks run on a CPU.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_torch_thread
from imgwang.data.augment import make_augment
from imgwang.data.cache import build_cache
from imgwang.data.loader import CachedLoader
from imgwang.host_sync import HostSyncs
from imgwang.models.encoders import create_encoder
from imgwang.tasks import get_task, task_names


def test_the_detector_names_each_kind_of_host_wait():
    x = torch.rand(8)
    culprits = [
        lambda: x.sum().item(),
        lambda: bool((x > 0.5).any()),
        lambda: x[x > 0.5],
        lambda: torch.tensor([0.299, 0.587, 0.114]),
        lambda: torch.as_tensor(7),
        lambda: torch.from_numpy(np.arange(3)),
        lambda: x.nonzero(),
    ]
    for culprit in culprits:
        with HostSyncs() as syncs:
            culprit()
        assert len(syncs.found) >= 1, culprit
    with HostSyncs() as syncs:  # device-side work only: nothing to report
        torch.where(x > 0.5, x, 1 - x).clamp(0, 1).argmax()
        x.flip(0)[torch.arange(4)]
    assert syncs.found == []


@pytest.mark.parametrize("name, params", [(n, {}) for n in task_names()] + [("swav", {"queue_size": 8})]
                         + [(n, {"view_rotations": (0, 90, 180, 270)}) for n in ("dino", "patchwork")])
def test_a_pretraining_step_of_every_task_is_free_of_host_waits(name, params):
    """Augment (the GPU's batched crop) -> task batch -> forward -> loss -> backward -> metric, after a
    warm-up step (per-device constants may be made once; swav's queue of 8 is full after it)."""
    torch.manual_seed(0)
    task = get_task(name, **{k: v for k, v in params.items() if not k.startswith("view_")})
    for key in [k for k in params if k.startswith("view_")]:  # ROTATIONS reaching the views (imgwang.data.views)
        setattr(task, key, params[key])
    model = task.build_model(create_encoder("tinyconv"))
    augment = make_augment(32, "pretrain", method="roi")
    gen = torch.Generator().manual_seed(0)
    uint8 = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8, generator=gen)

    def step():
        inputs, targets, _ = task.make_batch(augment(uint8, gen), gen)
        outputs = model(inputs)
        loss = task.loss(outputs, targets)
        loss.backward()
        task.metric(outputs, targets)

    with one_torch_thread():
        step()
        with HostSyncs() as syncs:
            step()
    assert syncs.found == [], f"{name}: {syncs.found}"
    if "queue_size" in params:
        assert model._filled == 8  # full after the warm-up step, so the measured step read it


def _cache(folder, n):
    for i in range(n):
        Image.new("RGB", (20, 16), (i * 20 % 256, 100, 200 - i * 3)).save(folder / f"{i}.png")
    return build_cache(sorted(folder.glob("*.png")), 16, folder / "cache", progress=False)


def test_the_device_resident_loader_makes_no_host_waits_per_batch(tmp_path):
    cache = _cache(tmp_path, 10)
    loader = CachedLoader(cache, np.arange(10), labels=np.arange(10) % 3, batch_size=3, resident=True,
                          augment=make_augment(12, "pretrain", method="roi"))
    batches = iter(loader)
    next(batches)  # the epoch's set-up (order, rows and labels to the device) happens once, here
    with HostSyncs() as syncs:
        rest = list(batches)
    assert len(rest) == 2 and syncs.found == []


@pytest.mark.parametrize("name", ["rotation", "classification"])
def test_training_waits_once_per_epoch_not_once_per_step(tmp_path, name):
    """fit() over the resident loader: the same host waits for an epoch of 3 steps as for one of 9 (the
    epoch's set-up and its summary), so none is per step. The optimiser's step counters do not count:
    they are host tensors on a GPU too."""
    from imgwang.data.loader import device_copy
    from imgwang.evaluate.objective import Classification
    from imgwang.models.classifier import Classifier
    from imgwang.train import FitSettings, fit

    cache = _cache(tmp_path, 36)
    device_copy(cache, torch.device("cpu"))  # once per cache and device, before either run
    waits = []
    for batch_size in (12, 4):
        torch.manual_seed(0)
        if name == "classification":
            objective, model = Classification(3), Classifier(create_encoder("tinyconv"), 3)
        else:
            objective = get_task(name)
            model = objective.build_model(create_encoder("tinyconv"))
        loader = CachedLoader(cache, np.arange(36), np.arange(36) % 3, batch_size=batch_size, resident=True,
                              augment=make_augment(12, "pretrain", method="roi"))
        # objective.py checks labels per batch only when they are on the host (free there; on a GPU the
        # transfer stage checks them once instead), so its check does not count here.
        with one_torch_thread(), HostSyncs(ignore=("torch/optim/", "evaluate/objective.py")) as syncs:
            fit(model, objective, loader, loader, FitSettings(epochs=1, lr=1e-3, device="cpu", progress=False))
        waits.append(syncs.found)
    assert len(loader) == 9 and len(waits[0]) == len(waits[1]), waits
