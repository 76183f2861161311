"""The hot path never makes the host wait for the device: on a GPU one such wait per step leaves the GPU
idle while the host launches the next kernels (session 1 measured a 1.22-1.30 step overhead on an H200).

HostSyncs finds the culprits by the aten operations they dispatch, so these checks run on a CPU.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from imgwang.data.augment import make_augment
from imgwang.data.cache import build_cache
from imgwang.data.loader import CachedLoader
from imgwang.host_sync import HostSyncs
from imgwang.models.encoders import create_encoder
from imgwang.tasks import get_task, task_names

from conftest import one_torch_thread


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


@pytest.mark.parametrize("name", task_names())
def test_a_pretraining_step_of_every_task_is_free_of_host_waits(name):
    """Augment (the GPU's batched crop) -> task batch -> forward -> loss -> backward -> metric, after a
    warm-up step (per-device constants may be made once)."""
    torch.manual_seed(0)
    task = get_task(name)
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


def test_the_device_resident_loader_makes_no_host_waits_per_batch(tmp_path):
    for i in range(10):
        Image.new("RGB", (20, 16), (i * 20, 100, 200 - i * 15)).save(tmp_path / f"{i}.png")
    cache = build_cache(sorted(tmp_path.glob("*.png")), 16, tmp_path / "cache", progress=False)
    loader = CachedLoader(cache, np.arange(10), labels=np.arange(10) % 3, batch_size=3, resident=True,
                          augment=make_augment(12, "pretrain", method="roi"))
    batches = iter(loader)
    next(batches)  # the epoch's set-up (order, rows and labels to the device) happens once, here
    with HostSyncs() as syncs:
        rest = list(batches)
    assert len(rest) == 2 and syncs.found == []
