"""CachedLoader: every row once per epoch, order a function of (seed, epoch), labels follow rows,
images are the cache content, and no silent zero-batch epochs."""

import numpy as np
import pytest
import torch
from PIL import Image

from imgwang.core.errors import DataError
from imgwang.data.augment import make_augment
from imgwang.data.batch import Batch
from imgwang.data.cache import build_cache
from imgwang.data.loader import CachedLoader

S = 12
N = 23


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """N solid-colour PNGs whose colour encodes the file number, so each row is identifiable."""
    d = tmp_path_factory.mktemp("imgs")
    for i in range(N):
        Image.new("RGB", (16, 14), (i * 10, 255 - i * 10, (i * 37) % 256)).save(d / f"{i:02d}.png")
    return build_cache(sorted(d.iterdir()), S, tmp_path_factory.mktemp("cache"), progress=False)


def _all_rows(loader):
    return [b.indices.tolist() for b in loader]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_every_row_exactly_once_without_drop_last(cache, prefetch):
    rows = np.arange(3, N)  # a subset: rows need not start at 0
    loader = CachedLoader(cache, rows, batch_size=6, drop_last=False, prefetch=prefetch)
    batches = _all_rows(loader)
    assert len(batches) == len(loader) == 4 and [len(b) for b in batches] == [6, 6, 6, 2]
    assert sorted(sum(batches, [])) == rows.tolist()
    dropped = CachedLoader(cache, rows, batch_size=6, drop_last=True, prefetch=prefetch)
    kept = _all_rows(dropped)
    assert len(kept) == len(dropped) == 3 and all(len(b) == 6 for b in kept)
    assert len(set(sum(kept, []))) == 18


@pytest.mark.parametrize("resident", [False, True])
def test_a_last_batch_shorter_than_min_last_joins_the_one_before(cache, resident):
    """20 rows at batch 6 leave 2 over: a task that needs 3 images a batch (unmix's n_sources, simclr's 2) gets
    6, 6, 8 rather than a batch it refuses; every row still comes once."""
    rows = np.arange(N - 20, N)
    merged = CachedLoader(cache, rows, batch_size=6, drop_last=False, min_last=3, resident=resident)
    batches = _all_rows(merged)
    assert len(merged) == 3 and [len(b) for b in batches] == [6, 6, 8] and sorted(sum(batches, [])) == rows.tolist()
    assert [len(b) for b in _all_rows(CachedLoader(cache, rows, batch_size=6, drop_last=False, min_last=2))] == [6, 6, 6, 2]
    few = CachedLoader(cache, rows[:2], batch_size=6, drop_last=False, min_last=3)  # fewer than one batch: as it is
    assert [len(b) for b in _all_rows(few)] == [2]


def test_order_is_a_function_of_seed_and_epoch(cache):
    rows = np.arange(N)

    def order(seed, epoch):
        loader = CachedLoader(cache, rows, batch_size=5, drop_last=False, seed=seed)
        loader.set_epoch(epoch)
        return sum(_all_rows(loader), [])

    assert order(0, 3) == order(0, 3)  # resume at epoch 3 replays epoch 3 exactly
    assert order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
    assert order(0, 3) != sorted(order(0, 3))  # actually shuffled
    loader = CachedLoader(cache, rows, batch_size=5, drop_last=False)
    first, second = sum(_all_rows(loader), []), sum(_all_rows(loader), [])
    assert first == order(0, 0) and second == order(0, 1)  # without set_epoch each pass moves on
    unshuffled = CachedLoader(cache, rows, batch_size=5, drop_last=False, shuffle=False)
    assert sum(_all_rows(unshuffled), []) == rows.tolist()


def test_labels_follow_rows_and_images_are_the_cache_rows(cache):
    rows = np.array([20, 2, 7, 11, 5, 16, 0, 9])
    labels = rows * 3 + 1
    loader = CachedLoader(cache, rows, labels=labels, batch_size=3, drop_last=False, augment=make_augment(S, "eval"))
    seen = 0
    for batch in loader:
        assert isinstance(batch, Batch) and batch.images.dtype == torch.float32
        assert batch.labels.dtype == torch.long and batch.indices.dtype == torch.long
        assert torch.equal(batch.labels, batch.indices * 3 + 1)
        expected = torch.from_numpy(np.asarray(cache.array[batch.indices.numpy()])).float() / 255
        assert torch.equal(batch.images, expected)
        seen += len(batch)
    assert seen == len(rows)
    # the batch keeps the shuffled order (rows are only read sorted), so neighbours are random images
    order = sum(_all_rows(CachedLoader(cache, np.arange(N), batch_size=N, drop_last=False)), [])
    assert order != sorted(order)


def test_cache_rows_are_stored_interleaved_and_batches_come_channels_last(cache):
    assert cache.pixels.shape == (N, S, S, 3) and cache.array.shape == (N, 3, S, S)
    assert np.array_equal(cache.array[4], cache.pixels[4].transpose(2, 0, 1))
    images, _, rows = next(CachedLoader(cache, np.arange(N), batch_size=5).host_batches(0))
    assert images.shape == (5, 3, S, S) and images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images, torch.from_numpy(np.asarray(cache.array[rows.numpy()])))
    batch = next(iter(CachedLoader(cache, np.arange(N), batch_size=5)))  # no augment: plain float batch
    assert batch.images.is_contiguous() and torch.equal(batch.images, images.float() / 255)


def test_unlabelled_rows_get_minus_one_and_augment_runs(cache):
    loader = CachedLoader(cache, np.arange(N), batch_size=8, augment=make_augment(8, "pretrain"))
    batch = next(iter(loader))
    assert batch.images.shape == (8, 3, 8, 8) and (batch.labels == -1).all()
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    a = [b.images for b in _set(CachedLoader(cache, np.arange(N), batch_size=8, augment=make_augment(8, "pretrain")), 2)]
    b = [b.images for b in _set(CachedLoader(cache, np.arange(N), batch_size=8, augment=make_augment(8, "pretrain")), 2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # augmentation reproducible per (seed, epoch)


def _set(loader, epoch):
    loader.set_epoch(epoch)
    return loader


def test_small_datasets_and_bad_input(cache):
    tiny = CachedLoader(cache, [4, 1, 9], batch_size=64, drop_last=True)
    batches = _all_rows(tiny)
    assert len(tiny) == 1 and len(batches) == 1 and sorted(batches[0]) == [1, 4, 9]
    with pytest.raises(DataError, match="no images"):
        CachedLoader(cache, [])
    with pytest.raises(DataError, match="outside the image cache"):
        CachedLoader(cache, [0, N])
    with pytest.raises(DataError, match="labels"):
        CachedLoader(cache, [0, 1], labels=[3])


def test_stopping_early_does_not_hang(cache):
    loader = CachedLoader(cache, np.arange(N), batch_size=2, prefetch=1)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert len(_all_rows(loader)) == len(loader)


def test_device_resident_cache_yields_the_same_batches(cache):
    """The GPU path (whole cache on the device, index_select per batch) gives exactly the host path's batches."""
    rows = np.arange(len(cache.array))[::-1].copy()
    for mode in ("eval", "pretrain"):
        kwargs = dict(batch_size=8, shuffle=True, drop_last=False, augment=make_augment(24, mode), seed=3)
        host = CachedLoader(cache, rows, resident=False, **kwargs)
        resident = CachedLoader(cache, rows, resident=True, **kwargs)
        assert resident.resident and not host.resident
        for a, b in zip(host, resident, strict=True):
            assert torch.equal(a.indices, b.indices) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.images, b.images)
    assert "cpu" in cache.__dict__["_device_copies"]  # one copy, reused by every loader of this cache
