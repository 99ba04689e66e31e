"""Caching: models and traces are shared between sessions in byte-bounded LRUs (both are only
read: hooks are per call, trace arrays are read-only), and every model spec passes the served
mode's check (``gptviz.serving``) before anything is loaded.

Where models run comes from the environment: ``GPTVIZ_DEVICE`` (``cpu``, the default, ``cuda``,
``cuda:N``, ``auto``) and ``GPTVIZ_DTYPE`` (``float32``, the default, ``bfloat16``,
``float16``), which ``gptviz app/serve --device/--dtype`` set for the Streamlit process and a
user of ``streamlit run app.py`` can set by hand."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

import gptviz
from gptviz import serving
from gptviz.cache import ByteLRU, model_nbytes, release_memory
from gptviz.checkpoints import resolve_device, resolve_dtype
from gptviz.figcache import TRACE_KEYS, FigureCache
from gptviz.model import GPT
from gptviz.tokenizer import Tokenizer, get_tokenizer
from gptviz.trace import Trace, trace_nbytes
from gptviz.ui.state import special_tokens

TRACE_CACHE_BYTES = int(os.environ.get("GPTVIZ_TRACE_CACHE_MB", "1500")) * 2**20
# Models by size, not count: a few links naming large cached models must not exhaust the server.
# A single model larger than the budget is still loaded (GPTVIZ_MAX_MODEL_GB refuses those before
# they are built) and then stays alone in the cache: every other model is evicted first.
MODEL_CACHE_BYTES = int(os.environ.get("GPTVIZ_MODEL_CACHE_MB", "3000")) * 2**20
FIGURE_CACHE_BYTES = int(os.environ.get("GPTVIZ_FIGURE_CACHE_MB", "200")) * 2**20


@dataclass(frozen=True)
class Context:
    """What a page needs: the model, its tokenizer, the trace of the shared prompt."""

    spec: str
    model: GPT
    tokenizer: Tokenizer
    trace: Trace
    projector: bool
    special: bool = False  # typed special tokens are parsed as control tokens (the chat-template opt-in)

    @property
    def cfg(self) -> gptviz.GPTConfig:
        return self.model.cfg


def serving_mode() -> str:
    """``local`` or ``served`` (``gptviz.serving.resolve_mode``): ``GPTVIZ_MODE``, else the
    address this Streamlit server is bound to."""
    return serving.current_mode(st.config.get_option("server.address"))


def check_spec(spec: str) -> str:
    """``spec`` if this server may load it, else ``serving.RefusedSpec`` (one message for all)."""
    return serving.resolve_spec(spec, serving_mode(), serving.env_allowlist())


@st.cache_resource
def _model_cache() -> ByteLRU[GPT]:
    return ByteLRU(MODEL_CACHE_BYTES, model_nbytes, on_evict=release_memory)


def placement() -> dict[str, str]:
    """``load_model``'s ``device`` and ``dtype`` from ``GPTVIZ_DEVICE`` and ``GPTVIZ_DTYPE``,
    resolved (``auto`` becomes ``cuda`` or ``cpu``); empty for the default, CPU and float32. A
    bad value or a GPU this machine lacks is a ``CheckpointError`` naming it, which the sidebar
    shows like any loading error."""
    device = str(resolve_device(os.environ.get("GPTVIZ_DEVICE", "").strip() or "cpu"))
    dtype = str(resolve_dtype(os.environ.get("GPTVIZ_DTYPE", "").strip() or None)).removeprefix("torch.")
    return {} if (device, dtype) == ("cpu", "float32") else {"device": device, "dtype": dtype}


def model_key(spec: str, where: dict[str, str] | None = None) -> str | tuple[str, str, str]:
    """The cache key of model ``spec`` where models run now: the spec itself on the CPU in
    float32 (the default), ``(spec, device, dtype)`` elsewhere, so a model placed one way is
    never handed out for another, nor a trace it computed (``get_trace`` keys on this too)."""
    where = placement() if where is None else where
    return spec if not where else (spec, where["device"], where["dtype"])


def _load(spec: str, where: dict[str, str]) -> GPT:
    with st.spinner("Loading the model…"):
        return gptviz.load_model(spec, **where)


def load_model(spec: str) -> GPT:
    """One model object per spec (and placement) per process, within ``GPTVIZ_MODEL_CACHE_MB``;
    sessions only read it (hooks are per call) and keep it only for one script run (``Context``
    is never stored in ``st.session_state``), so an evicted model is freed once the runs using
    it finish."""
    spec = check_spec(spec)
    where = placement()
    return _model_cache().get_or_compute(model_key(spec, where), lambda: _load(spec, where))


@st.cache_resource
def _trace_cache() -> ByteLRU[Trace]:
    return ByteLRU(TRACE_CACHE_BYTES, trace_nbytes)


def get_trace(
    spec: str, text: str, extra_key: Any = None, extra_hooks: list | None = None, special: bool | None = None
) -> Trace:
    """The trace of ``text`` through model ``spec``, computed once and shared (bounded).

    ``special``: whether special tokens written in the text (``<|im_start|>``, ``<s>``) are read
    as the control tokens they name, as a chat template writes them, instead of as plain text
    (the default, as a typed ``<|endoftext|>`` always was). ``None`` takes the session's setting
    (``state.special_tokens``: the sidebar's toggle, ``special=1`` in a link), so every trace a
    page asks for (ablations, side by side) reads the prompt as the sidebar's does. It is part of
    the cache key: the same text gives two different traces. ``gptviz.run`` encodes plain text
    itself, so the parsed ids are computed here and passed as ``token_ids`` with the text."""
    model = load_model(spec)
    special = special_tokens() if special is None else bool(special)
    key = (model_key(spec), text, special, extra_key)

    def compute() -> Trace:
        if not special:
            return gptviz.run(model, text, extra_hooks=extra_hooks)
        ids = get_tokenizer(model.cfg.tokenizer).encode(text, allow_special=True)
        if not ids:
            raise gptviz.EmptyPromptError("the prompt is empty: type some text to run the model on")
        return gptviz.run(model, text, extra_hooks=extra_hooks, token_ids=ids)

    trace = _trace_cache().get_or_compute(key, compute)
    TRACE_KEYS.register(trace, key)  # how the figure cache knows which trace a figure was drawn from
    return trace


@st.cache_resource
def _figure_cache() -> FigureCache:
    return FigureCache(FIGURE_CACHE_BYTES)


def figure(fn: Callable[..., go.Figure], *args: Any, key: str, **kwargs: Any) -> go.Figure:
    """``fn(*args, **kwargs)`` through the shared figure cache (``gptviz.figcache``): a room on
    the same step and prompt builds the figure once. ``key`` is the chart's key, part of the cache
    key like every argument; a call whose arguments cannot all be keyed is just built."""
    return pio.from_json(_figure_cache().json(fn, key, *args, **kwargs))
