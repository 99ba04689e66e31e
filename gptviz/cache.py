"""A small thread-safe LRU bounded by bytes, for what app sessions share: traces, models, figures.

``st.cache_data`` would pickle a trace on every read (hundreds of MB at GPT-2 size) and bounds
entries by count, not size. Traces are immutable (read-only arrays), so sharing one object
between sessions is safe, and a byte budget keeps memory bounded whatever the model size.

A key being computed is computed once: when a class types the same prompt at the same moment,
the first session runs the model and the others wait for its result instead of each running it.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


class ByteLRU(Generic[T]):
    """Least-recently-used cache holding at most ``max_bytes`` (by ``size(value)``)."""

    def __init__(self, max_bytes: int, size: Callable[[T], int], on_evict: Callable[[], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._on_evict = on_evict  # called after evicting, outside the lock (``release_memory``)
        self._items: OrderedDict[Hashable, tuple[T, int]] = OrderedDict()
        self._pending: dict[Hashable, Future[T]] = {}  # keys being computed right now
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached value for ``key``, else ``compute()`` (once, however many threads ask at
        the same time: the others wait for it; an exception reaches them all, nothing is cached)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = mine = Future()
                self.misses += 1
            else:
                self.hits += 1
        if pending is not None:
            return pending.result()
        try:
            value = compute()  # outside the lock: other sessions keep being served meanwhile
            nbytes = self._size(value)
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            mine.set_exception(exc)
            raise
        evicted = 0
        with self._lock:
            self._items[key] = (value, nbytes)
            self._items.move_to_end(key)
            while self.total_bytes > self.max_bytes and len(self._items) > 1:
                self._items.popitem(last=False)
                evicted += 1
            del self._pending[key]
        mine.set_result(value)
        if evicted and self._on_evict is not None:
            self._on_evict()
        return value

    @property
    def total_bytes(self) -> int:
        return sum(n for _, n in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
        if self._on_evict is not None:
            self._on_evict()

    def keys(self) -> list[Hashable]:
        """The cached keys, least recently used first (a snapshot)."""
        with self._lock:
            return list(self._items)


def release_memory() -> None:
    """Give freed memory back to the operating system. Dropping a model frees its tensors, but
    glibc keeps most of them in its heap (its mmap threshold grows after the first large free),
    so the server's RSS would not fall: ``malloc_trim(0)`` returns the free pages. Measured in
    ``benchmarks/model_cache.py``. A no-op where there is no glibc. Likewise PyTorch's CUDA
    allocator keeps a freed GPU model's blocks for reuse: ``empty_cache`` hands them back (only
    if CUDA was ever used in this process, so a CPU server never initializes it)."""
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def model_nbytes(model: torch.nn.Module) -> int:
    """Bytes a model holds: its parameters and buffers, each storage once (tied weights share
    one). This is what evicting it frees, so the model cache is bounded by it."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())
