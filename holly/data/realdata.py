"""Training on an image store (real SMLM data): HOLLy's real-data mode.

At every step the curriculum asks for a sigma; the images come from the store's level nearest to
it (pre-rendered, as the original's one-folder-per-sigma data). Train and test sets are split by
particle (``particle_id``), so the augmentation copies of one particle never straddle the split.

Memory: with ``data.preload`` (default) the current level's images of a split are held in RAM
(the CEP152 data: ~1.9 GB per level) and replaced when the curriculum moves to the next level;
without it, each batch is read from Zarr on demand, so memory stays at a few batches. Training
announces its batches (:meth:`StoreSplit.plan`), and a streaming split reads the next
``READ_AHEAD`` of them in a background thread while the current step computes.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from holly.config import ExperimentConfig
from holly.errors import HollyError

log = logging.getLogger(__name__)

READ_AHEAD = 4  # batches a streaming split reads ahead of training


class StoreSplit:
    """One split of an image store with the ``images(idx, sigma)`` interface of training."""

    def __init__(self, store, indices: np.ndarray, preload: bool, device: torch.device):
        self.store, self.indices = store, np.asarray(indices, dtype=np.int64)
        self.preload, self.device = preload, device
        self._level: float | None = None
        self._cache: torch.Tensor | None = None
        self._ahead: _ReadAhead | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def plan(self, batches: Callable[[int], tuple[torch.Tensor, float]], start: int, stop: int):
        """Announce the requests to come: step ``k`` in ``[start, stop)`` asks ``batches(k)``.

        A streaming split then reads those batches ahead in a background thread; requests that
        leave the plan are still served, read on the spot. A preloading split ignores the plan.
        """
        self.close()
        if not self.preload and start < stop:
            self._ahead = _ReadAhead(
                self._read, self.store.level_for, batches, start, stop, READ_AHEAD
            )

    def close(self) -> None:
        """Stop reading ahead (pending reads are dropped)."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    def _read(self, level: float, pos: np.ndarray) -> torch.Tensor:
        block = next(self.store.iter_batches(level, self.indices[pos], batch_size=len(pos)))
        tensor = torch.from_numpy(block)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def particle_ids(self) -> np.ndarray:
        """The particle of each image of this split → ``[I]`` (for splits by particle)."""
        return np.asarray(self.store.particle_ids)[self.indices]

    def subset(self, items: np.ndarray) -> StoreSplit:
        """The images at positions ``items`` of this split, as a new split."""
        return StoreSplit(self.store, self.indices[np.asarray(items)], self.preload, self.device)

    def images(self, idx: torch.Tensor, sigma: float) -> torch.Tensor:
        """Images ``idx`` (positions within this split) at the level nearest ``sigma``."""
        level = self.store.level_for(sigma)
        pos = idx.cpu().numpy()
        if not self.preload:
            ahead = self._ahead.take(level, pos) if self._ahead is not None else None
            return ahead if ahead is not None else self._read(level, pos)
        if level != self._level:
            log.info(
                "loading level sigma=%.2f (%d images) from %s", level, len(self), self.store.path
            )
            order = np.argsort(self.indices)  # sorted reads touch each shard once
            data = np.empty((len(self), self.store.height, self.store.width), np.float32)
            start = 0  # filled batch by batch: peak memory is the level, not three copies of it
            for block in self.store.iter_batches(level, self.indices[order], batch_size=1024):
                data[order[start : start + len(block)]] = block
                start += len(block)
            self._cache, self._level = torch.from_numpy(data).to(self.device), level
        return self._cache[torch.as_tensor(pos, device=self.device)]


class _ReadAhead:
    """Reads planned batches in one background thread, ``depth`` steps ahead of their use."""

    def __init__(self, read, level_for, batches, start: int, stop: int, depth: int):
        self.read, self.level_for, self.batches = read, level_for, batches
        self.next, self.stop, self.depth = start, stop, depth
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="holly-read-ahead")
        self.pending: deque[tuple[float, np.ndarray, Future]] = deque()
        self._fill()

    def _fill(self) -> None:
        while len(self.pending) < self.depth and self.next < self.stop:
            idx, sigma = self.batches(self.next)
            level = self.level_for(sigma)
            pos = idx.cpu().numpy()
            self.pending.append((level, pos, self.pool.submit(self.read, level, pos)))
            self.next += 1

    def take(self, level: float, pos: np.ndarray) -> torch.Tensor | None:
        """The prefetched batch if it is the next one planned, else ``None`` (plan dropped)."""
        if self.pending:
            want_level, want_pos, future = self.pending[0]
            if want_level == level and np.array_equal(want_pos, pos):
                self.pending.popleft()
                self._fill()
                return future.result()
        if self.pending or self.next < self.stop:
            log.debug("a request left the read-ahead plan; reading on demand from now on")
        self.close()
        return None

    def close(self) -> None:
        for *_, future in self.pending:
            future.cancel()
        self.pending.clear()
        self.next = self.stop
        self.pool.shutdown(wait=False, cancel_futures=True)


def store_splits(cfg: ExperimentConfig, device: torch.device):
    """Train/test splits of the store named by ``cfg.data.store``, and what provenance records.

    Returns ``(train, test, inputs, scale)``: two :class:`StoreSplit`, the store's identity
    (``inputs``) and its physical scale (``scale``, None without a pixel size), which
    :func:`holly.data.datasets.build_data` puts together as its ``Data``.
    """
    from holly.data.imagestore import ImageStore, split_by_particle

    d = cfg.data
    if not d.store:
        raise HollyError("data.source is 'zarr' but data.store names no image store")
    store = ImageStore.open(d.store)
    if (store.height, store.width) != (cfg.render.height, cfg.render.width):
        raise HollyError(
            f"{d.store} holds {store.height}x{store.width} images but render.height/width are "
            f"{cfg.render.height}x{cfg.render.width}; set them to the store's size"
        )
    ids = store.particle_ids
    if d.max_images is not None:
        ids = ids[: d.max_images]
    train_idx, test_idx = split_by_particle(ids, d.test_fraction, cfg.seed)
    if len(test_idx) == 0:
        raise HollyError(f"{d.store}: data.test_fraction {d.test_fraction} leaves no test images")
    log.info(
        "%s: %d train and %d test images (%d particles), levels %s",
        d.store,
        len(train_idx),
        len(test_idx),
        len(np.unique(ids)),
        store.sigmas,
    )
    attrs = store.group.attrs.get("holly", {})
    inputs = {str(d.store): attrs.get("created", ""), "source": attrs.get("source", {})}
    scale = None
    if store.nm_per_px is not None:
        scale = {
            "nm_per_px": store.nm_per_px,
            "nm_per_model_unit": store.nm_per_model_unit,
            "from": str(d.store),
        }
    train = StoreSplit(store, train_idx, d.preload, device)
    test = StoreSplit(store, test_idx, d.preload, device)
    return train, test, inputs, scale
