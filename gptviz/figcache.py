"""The shared figure cache: sessions on the same lesson step and prompt cost one figure build.

Figures are pure functions of their inputs (``figures/``), so a figure's JSON can be shared by
every session that asks for the same function with the same inputs. The key is built from
*every* argument, never from a subset the caller picks: the function's qualified name, the chart
key, and each argument by value, where a trace counts by the key it was cached under in the
trace cache (model spec with snapshot step, prompt, ablation), small arrays by their bytes,
dataclasses (an ``Ablation``, a config) field by field, a tokenizer by its name. An argument
that cannot be keyed that way makes the call uncacheable: it is then simply built, never served
from another input's entry. The JSON lives in a byte-bounded, thread-safe LRU (``ByteLRU``).

No Streamlit here: ``gptviz.ui.caching.figure`` wraps it for the pages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import weakref
from collections.abc import Callable, Hashable
from types import MappingProxyType
from typing import Any

import numpy as np

from gptviz.cache import ByteLRU

MAX_ARRAY_BYTES = 4 * 2**20  # larger arrays are not hashed on every run: the call is not cached


class Uncacheable(TypeError):
    """An argument has no key that captures its whole value."""


class TraceKeys:
    """The trace cache's key of each live trace object, forgotten when the trace is freed (so a
    reused ``id`` can never point to another trace's key)."""

    def __init__(self) -> None:
        self._keys: dict[int, Hashable] = {}
        self._lock = threading.Lock()

    def register(self, trace: object, key: Hashable) -> None:
        tid = id(trace)
        with self._lock:
            if tid in self._keys:
                return
            self._keys[tid] = key
        weakref.finalize(trace, self._forget, tid)

    def _forget(self, tid: int) -> None:
        with self._lock:
            self._keys.pop(tid, None)

    def get(self, trace: object) -> Hashable | None:
        with self._lock:
            return self._keys.get(id(trace))


TRACE_KEYS = TraceKeys()


def input_key(value: Any) -> Hashable:
    """A hashable key equal for two values exactly when they are the same input (see module doc)."""
    from gptviz.tokenizer import TokenizerBase
    from gptviz.trace import Trace

    if value is None or isinstance(value, bool | int | float | str | bytes):
        return (type(value).__name__, value)
    if isinstance(value, Trace):
        key = TRACE_KEYS.get(value)
        if key is None:
            raise Uncacheable("a trace that did not come from the trace cache")
        return ("trace", key)
    if isinstance(value, np.generic):
        return ("np", value.dtype.str, value.item())
    if isinstance(value, np.ndarray):
        if value.nbytes > MAX_ARRAY_BYTES:
            raise Uncacheable(f"an array of {value.nbytes:,} bytes")
        data = np.ascontiguousarray(value)
        return ("nd", data.dtype.str, data.shape, hashlib.sha1(data.tobytes()).hexdigest())
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(input_key(v) for v in value))
    if isinstance(value, dict | MappingProxyType):
        return ("dict", tuple(sorted((str(k), input_key(v)) for k, v in value.items())))
    if isinstance(value, frozenset | set):
        return ("set", tuple(sorted((input_key(v) for v in value), key=repr)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = tuple((f.name, input_key(getattr(value, f.name))) for f in dataclasses.fields(value))
        return ("dc", type(value).__qualname__, fields)
    if isinstance(value, TokenizerBase):
        return ("tok", type(value).__qualname__, str(getattr(value, "name", "")), str(getattr(value, "path", "")))
    self = getattr(value, "__self__", None)
    if self is not None and callable(value):  # a bound method: the tokenizer's token_str…
        return ("bound", value.__qualname__, input_key(self))
    if callable(value) and getattr(value, "__closure__", True) is None and "<" not in value.__qualname__:
        return ("fn", value.__module__, value.__qualname__)  # a plain module-level function
    raise Uncacheable(f"an argument of type {type(value).__name__}")


def figure_key(fn: Callable[..., Any], chart_key: str, args: tuple, kwargs: dict) -> Hashable:
    """The cache key of ``fn(*args, **kwargs)`` drawn as chart ``chart_key``."""
    return (
        fn.__module__,
        fn.__qualname__,
        chart_key,
        input_key(args),
        input_key(kwargs),
    )


class FigureCache:
    """Figure JSON by ``figure_key``, within ``max_bytes``; built once however many sessions ask."""

    def __init__(self, max_bytes: int) -> None:
        self.lru: ByteLRU[str] = ByteLRU(max_bytes, len)
        self.uncacheable = 0

    def json(self, fn: Callable[..., Any], chart_key: str, *args: Any, **kwargs: Any) -> str:
        """The figure's JSON (``plotly.io.to_json``), from the cache when the inputs match."""
        try:
            key = figure_key(fn, chart_key, args, kwargs)
        except Uncacheable:
            self.uncacheable += 1
            return fn(*args, **kwargs).to_json()
        return self.lru.get_or_compute(key, lambda: fn(*args, **kwargs).to_json())
