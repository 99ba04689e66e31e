"""Streamlit helpers of the research pages: text boxes kept in the URL, the token pickers of a
metric, and one byte-bounded cache of research results shared by every session.

Results are cached per (model, prompts, metric, kind, direction…): a patching map costs up to
``patching.MAX_WORK`` forward passes, so a second visitor with the same link gets it at once.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from gptviz.cache import ByteLRU
from gptviz.tokenizer import TokenizerBase
from gptviz.ui.state import keep, kept_or_url, md_text, select

T = TypeVar("T")
RESULT_CACHE_BYTES = int(os.environ.get("GPTVIZ_RESEARCH_CACHE_MB", "200")) * 2**20
MAX_RESEARCH_PROMPT_CHARS = 2_000


def _nbytes(value: Any) -> int:
    """Bytes a cached result holds: its arrays, else its pickled size."""
    arrays = [v for v in getattr(value, "__dict__", {}).values() if isinstance(v, np.ndarray)]
    if arrays:
        return sum(a.nbytes for a in arrays) + 1024
    try:
        return len(pickle.dumps(value))
    except Exception:  # not picklable: count it small rather than fail the page
        return 1024


@st.cache_resource
def _results() -> ByteLRU[Any]:
    return ByteLRU(RESULT_CACHE_BYTES, _nbytes)


def cached(key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()`` once per ``key`` per process (concurrent sessions wait for one computation)."""
    return _results().get_or_compute(key, compute)


def text_box(label: str, key: str, default: str, where: Any = st, height: int = 90, **kw: Any) -> str:
    """A text area whose text survives page switches and lives in the URL under ``key``."""
    wkey = f"w_{key}"
    if wkey not in st.session_state:
        start = kept_or_url(key)
        start = default if start is None else str(start)
        if len(start) > MAX_RESEARCH_PROMPT_CHARS:
            where.warning(f"The link's text for {key} was cut to {MAX_RESEARCH_PROMPT_CHARS:,} characters.")
            start = start[:MAX_RESEARCH_PROMPT_CHARS]
        st.session_state[wkey] = start
    text = where.text_area(label, key=wkey, height=height, max_chars=MAX_RESEARCH_PROMPT_CHARS, **kw)
    keep(key, text)
    return text


def token_picker(
    label: str, key: str, tokenizer: TokenizerBase, candidates: Sequence[int], default: int, vocab: int, where: Any = st
) -> int:
    """A token chosen among ``candidates`` (ids, e.g. both runs' favourites), kept in the URL as
    its id; a linked id outside the candidates is added if it is in the vocabulary."""
    options = list(dict.fromkeys(int(i) for i in candidates))
    linked = kept_or_url(key)
    try:
        extra = int(linked) if linked is not None else None
    except (TypeError, ValueError):
        extra = None
    if extra is not None and 0 <= extra < vocab and extra not in options:
        options.append(extra)
    return int(
        select(
            label, options, key, default=default, where=where,
            format_func=lambda i: f"{tokenizer.token_str(int(i))!r} (id {int(i)})",
        )
    )  # fmt: skip


def token_table(tokenizer: TokenizerBase, ids: Sequence[int]) -> dict[str, list]:
    """Columns of a tokenization table (position, id, token as Python writes it): data, never
    Markdown, so a hostile prompt shows as text."""
    return {
        "position": list(range(len(ids))),
        "id": [int(i) for i in ids],
        "token": [repr(tokenizer.token_str(int(i))) for i in ids],
    }


def progress_bar(text: str) -> tuple[Callable[[int, int], None], Any]:
    """A progress callback ``(done, total)`` and its slot: the bar appears on the first call
    (a cached result never shows one); empty the slot when the work is done."""
    slot = st.empty()

    def update(done: int, total: int) -> None:
        slot.progress(min(1.0, done / max(total, 1)), text=md_text(f"{text} {done:,} / {total:,}"))

    return update, slot
