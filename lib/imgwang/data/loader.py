"""The device loader: batches are slices of the decode-once cache, moved to the device, augmented there.

Per batch: gather the rows from the memmap in sorted order (sequential reads), restore the shuffled order,
torch.from_numpy (+ pin_memory for CUDA), .to(device, non_blocking=True), then `augment(uint8, generator)`
with a device generator seeded from (seed, epoch). No decoding, no per-image Python. A background thread
gathers the next host batches while the current one is augmented and trained on.

On a GPU with room for it, the whole uint8 cache is copied to the device once (`resident`): batches are
then `index_select`s on the device, and the host neither copies nor waits per batch.
"""

from __future__ import annotations

import queue
import threading

import numpy as np
import torch

from ..core.errors import DataError
from .augment import to_float
from .batch import Batch


class CachedLoader:
    """Iterate `Batch(images, labels, indices)` over `rows` of an ImageCache; `indices` are cache rows.

    The order is a pure function of (seed, epoch): `set_epoch(e)` picks the epoch the next pass uses, and
    each pass then moves on to the next epoch, so forgetting set_epoch still gives fresh orders.

    `shard=(rank, world)`: under torchrun each rank takes its contiguous 1/world slice of every batch of
    the epoch's order (batch_size is the global batch), so the ranks' rows are disjoint, change with the
    epoch, and together are exactly the batch one process would have drawn. Each rank augments with its
    own stream (rank 0 draws what one process draws).
    """

    def __init__(self, cache, rows, labels=None, batch_size: int = 64, shuffle: bool = True, drop_last: bool = True,
                 device="cpu", augment=None, seed: int = 0, prefetch: int = 2, resident="auto",
                 shard: tuple[int, int] = (0, 1), min_last: int = 1):
        self.cache = cache
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.rows.size == 0:
            raise DataError("the loader was given no images (empty row list)")
        n_cache = len(cache.array)
        bad = self.rows[(self.rows < 0) | (self.rows >= n_cache)]
        if bad.size:
            raise DataError(f"row {int(bad[0])} is outside the image cache ({n_cache} images)")
        if labels is None:
            self.labels = np.full(self.rows.shape, -1, dtype=np.int64)
        else:
            self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
            if self.labels.shape != self.rows.shape:
                raise DataError(f"{self.labels.size} labels given for {self.rows.size} images")
        if int(batch_size) < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.shard = (int(shard[0]), int(shard[1]))
        if not 0 <= self.shard[0] < self.shard[1]:
            raise DataError(f"shard {shard} is not (rank, world size) with 0 <= rank < world size")
        if self.shard[1] > 1 and self.batch_size % self.shard[1]:
            raise DataError(f"batch size {self.batch_size} does not split evenly over {self.shard[1]} processes")
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.min_last = int(min_last)  # without drop_last: a last batch shorter than this joins the one before it
        self.device = torch.device(device)
        self.augment = augment
        self.seed = int(seed)
        self.prefetch = int(prefetch)
        self.resident = fits_on_device(cache, self.device) if resident == "auto" else bool(resident)
        self.epoch = 0
        self._device_rows = None  # (rows, labels) on the device, made by the first resident pass

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n, bs = len(self.rows), self.batch_size
        if self.drop_last:
            return max(1, n // bs)  # fewer images than one batch: one smaller batch, never zero batches
        full, rest = divmod(n, bs)
        return full + (rest >= self.min_last or full == 0) if rest else full

    def batch_positions(self, epoch: int) -> list[np.ndarray]:
        """Positions into `rows` for each batch of an epoch (what one pass will yield, in order)."""
        n = len(self.rows)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        rank, world = self.shard
        bs = min(self.batch_size, n)
        bs -= bs % world  # a short epoch's single batch still splits evenly
        count = len(self)
        last_end = count * bs if self.drop_last else n  # without drop_last the last batch takes what is left
        batches = [order[i * bs : (i + 1) * bs if i < count - 1 else last_end] for i in range(count)]
        if world == 1:
            return batches
        return [b[len(b) * rank // world : len(b) * (rank + 1) // world] for b in batches]

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        gen = torch.Generator(device=self.device)
        stream = [self.seed, epoch, 0xA06] + ([self.shard[0]] if self.shard[0] else [])
        gen.manual_seed(int(np.random.SeedSequence(stream).generate_state(1)[0]))
        if self.resident:
            yield from self._resident_batches(epoch, gen)
            return
        for images, labels, rows in self.host_batches(epoch):
            yield self._to_device(images, labels, rows, gen)

    def _resident_batches(self, epoch: int, gen):
        """Batches from the cache copy on the device. Rows, labels and the epoch's order go to the device
        once, so a batch is device work only: a host-to-device copy per batch would make the host wait
        for the GPU every step."""
        stored = device_copy(self.cache, self.device)
        if self._device_rows is None:
            self._device_rows = (torch.from_numpy(self.rows).to(self.device), torch.from_numpy(self.labels).to(self.device))
        all_rows, all_labels = self._device_rows
        positions = self.batch_positions(epoch)
        order = torch.from_numpy(np.concatenate(positions)).to(self.device)
        for take in order.split([len(pos) for pos in positions]):
            rows = all_rows.index_select(0, take)
            yield self._to_device(stored.index_select(0, rows), all_labels.index_select(0, take), rows, gen)

    def _gather(self, pos: np.ndarray):
        """uint8 (B, 3, S, S) channels-last for the rows at `pos`; read in row order, returned in `pos` order.

        For CUDA the rows land straight in pinned memory (one copy, done in the prefetch thread), and labels
        and row numbers are pinned too, so every host-to-device copy runs asynchronously."""
        rows = self.rows[pos]
        sort = np.argsort(rows, kind="stable")
        pixels = self.cache.pixels
        pin = self.device.type == "cuda"  # pageable memory may make the copy wait for the GPU's queue
        images = torch.empty((len(rows),) + pixels.shape[1:], dtype=torch.uint8, pin_memory=pin)
        images.numpy()[sort] = pixels[rows[sort]]
        labels, rows = torch.from_numpy(self.labels[pos]), torch.from_numpy(rows)
        if pin:
            labels, rows = labels.pin_memory(), rows.pin_memory()
        return images.permute(0, 3, 1, 2), labels, rows

    def host_batches(self, epoch: int):
        """(uint8 images, labels, rows) CPU tensors of an epoch, gathered ahead by a thread: the host's share."""
        positions = self.batch_positions(epoch)
        if self.prefetch <= 0:
            for pos in positions:
                yield self._gather(pos)
            return
        yield from _prefetched((self._gather(pos) for pos in positions), self.prefetch)

    def _to_device(self, images, labels, rows, gen) -> Batch:
        images = images.to(self.device, non_blocking=True)  # pinned already for CUDA (see _gather)
        labels = labels.to(self.device, non_blocking=True)
        rows = rows.to(self.device, non_blocking=True)
        if self.augment is not None:
            images = self.augment(images, gen)
        else:
            images = to_float(images)
        return Batch(images=images, labels=labels, indices=rows)


def fits_on_device(cache, device: torch.device, share: float = 0.4) -> bool:
    """Keep the cache on a CUDA device when it takes at most `share` of the free memory there."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return cache.array.nbytes <= share * free


def device_copy(cache, device: torch.device, chunk: int = 4096) -> torch.Tensor:
    """The whole cache as one uint8 tensor on `device`, made once per cache and device (in chunks, so the
    host never holds more than one chunk beyond the memory map)."""
    copies = cache.__dict__.setdefault("_device_copies", {})
    key = str(device)
    if key not in copies:
        pixels = cache.pixels
        stored = torch.empty(pixels.shape, dtype=torch.uint8, device=device)
        for start in range(0, len(pixels), chunk):
            stored[start:start + chunk] = torch.from_numpy(np.array(pixels[start:start + chunk])).to(device)  # a writable copy
        copies[key] = stored.permute(0, 3, 1, 2)  # (N, 3, S, S), channels-last like the host batches
    return copies[key]


_DONE = object()


def _prefetched(iterator, depth: int):
    """Run `iterator` in a daemon thread, `depth` items ahead; errors surface in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
            put(e)

    thread = threading.Thread(target=work, daemon=True, name="imgwang-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the consumer stopped early (break, error): let the worker exit
