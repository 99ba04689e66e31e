"""Caching: models are loaded once per process (``st.cache_resource``); traces are shared between
sessions in a byte-bounded LRU (traces are read-only, so sharing is safe)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import streamlit as st

import gptviz
from gptviz.cache import ByteLRU
from gptviz.model import GPT
from gptviz.tokenizer import Tokenizer
from gptviz.trace import Trace, trace_nbytes

TRACE_CACHE_BYTES = int(os.environ.get("GPTVIZ_TRACE_CACHE_MB", "1500")) * 2**20


@dataclass(frozen=True)
class Context:
    """What a page needs: the model, its tokenizer, the trace of the shared prompt."""

    spec: str
    model: GPT
    tokenizer: Tokenizer
    trace: Trace
    projector: bool

    @property
    def cfg(self) -> gptviz.GPTConfig:
        return self.model.cfg


@st.cache_resource(max_entries=12, show_spinner="Loading the model…")  # room for the 5 snapshots + others
def load_model(spec: str) -> GPT:
    """One model object per spec per process; sessions only read it (hooks are per call)."""
    return gptviz.load_model(spec)


@st.cache_resource
def _trace_cache() -> ByteLRU[Trace]:
    return ByteLRU(TRACE_CACHE_BYTES, trace_nbytes)


def get_trace(spec: str, text: str, extra_key: Any = None, extra_hooks: list | None = None) -> Trace:
    """The trace of ``text`` through model ``spec``, computed once and shared (bounded)."""
    model = load_model(spec)
    return _trace_cache().get_or_compute(
        (spec, text, extra_key), lambda: gptviz.run(model, text, extra_hooks=extra_hooks)
    )
