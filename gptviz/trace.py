"""One forward pass, every hook captured: the ``Trace`` every page and notebook reads.

Storage policy (``precision``):
- ``"compact"`` (the app's default): attention patterns and MLP activations in float16, the
  residual stream and everything else in float32, attention scores recomputed on access from
  Q and K (exact: it is the same product), logits stored as float16 *offsets from each row's
  maximum* plus that maximum in float32, so the top of the distribution (what a page shows)
  keeps ~1e-3 precision. At GPT-2-small shape and 1,024 tokens this is ~1.1 GB instead of 2 GB.
- ``"full"``: every hook in float32 as the model produced it (parity tests, notebooks).

Arrays are read-only, so one cached Trace can be shared by many sessions safely.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gptviz.config import GPTConfig
from gptviz.hooks import hooks
from gptviz.model import GPT
from gptviz.tokenizer import Tokenizer, get_tokenizer

Precision = Literal["compact", "full"]
_HALF = re.compile(r"blocks\.\d+\.(attn\.hook_pattern|mlp\.hook_pre|mlp\.hook_post)$")
_SCORES = re.compile(r"blocks\.(\d+)\.attn\.hook_attn_scores$")


class EmptyPromptError(ValueError):
    """The prompt has no tokens, so there is nothing to run."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Everything one forward pass computed, batch axis dropped, as numpy arrays by hook name.

    ``trace["blocks.0.attn.hook_pattern"]`` is ``[H, T, T]``; ``trace.ids``/``trace.tokens``
    are the (possibly truncated) input. ``truncated`` says whether the prompt was longer than
    the model's context (``n_input_tokens`` is its full length).
    """

    text: str
    ids: np.ndarray
    tokens: tuple[str, ...]
    token_bytes: tuple[bytes, ...]
    config: GPTConfig
    model_name: str
    n_input_tokens: int
    precision: Precision
    store: dict[str, np.ndarray] = field(repr=False)

    @property
    def truncated(self) -> bool:
        return self.n_input_tokens > len(self.ids)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    def keys(self) -> list[str]:
        names = [k for k in self.store if not k.startswith("_")]
        if self.precision == "compact":
            names += [f"blocks.{i}.attn.hook_attn_scores" for i in range(self.config.n_layer)]
            names.append("hook_logits")
        return names

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.store and not name.startswith("_"):
            return self.store[name]
        if name == "hook_logits" and "_logits_offset" in self.store:
            return self.store["_logits_offset"].astype(np.float32) + self.store["_logits_max"]
        m = _SCORES.match(name)
        if m and f"blocks.{m[1]}.attn.hook_q" in self.store:
            q = self.store[f"blocks.{m[1]}.attn.hook_q"]  # [T, H, Dh]
            k = self.store[f"blocks.{m[1]}.attn.hook_k"]
            return np.einsum("qhd,khd->hqk", q, k) / np.float32(math.sqrt(self.config.d_head))
        raise KeyError(f"{name!r} is not in this trace; see trace.keys()")

    def pattern(self, layer: int, head: int) -> np.ndarray:
        """Attention pattern of one head, float32 ``[T, T]`` (row = query, column = key)."""
        return self.store[f"blocks.{layer}.attn.hook_pattern"][head].astype(np.float32)

    def logits(self, pos: int = -1) -> np.ndarray:
        """Float32 logits ``[V]`` for the prediction after position ``pos``."""
        if "hook_logits" in self.store:
            return self.store["hook_logits"][pos]
        return self.store["_logits_offset"][pos].astype(np.float32) + self.store["_logits_max"][pos]

    def probs(self, pos: int = -1) -> np.ndarray:
        """Next-token probabilities after position ``pos`` (softmax of ``logits``)."""
        z = self.logits(pos).astype(np.float64)
        p = np.exp(z - z.max())
        return (p / p.sum()).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the trace as ``.npz``: hook names as keys, plus ``__meta__`` (JSON)."""
        from gptviz.io import save_trace

        return save_trace(self, path)


def prepare(tokenizer: Tokenizer, text: str, n_ctx: int) -> tuple[list[int], int]:
    """Ids to run (at most the context; the first ``n_ctx`` tokens) and the full token count."""
    ids = tokenizer.encode(text)
    if not ids:
        raise EmptyPromptError("the prompt is empty: type some text to run the model on")
    return ids[:n_ctx], len(ids)


@torch.inference_mode()
def run(
    model: GPT,
    text: str | None = None,
    precision: Precision = "compact",
    tokenizer: Tokenizer | None = None,
    extra_hooks: list | None = None,
    token_ids: Sequence[int] | None = None,
) -> Trace:
    """Tokenize ``text`` (or take ``token_ids``), run ``model`` once, capture every hook point.

    ``extra_hooks`` (``[(name, fn)]``) are applied *before* capture (ablation): what is
    captured is what flowed. Hooks live only for this call, so concurrent calls on one cached
    model cannot mix captures.
    """
    cfg = model.cfg
    tok = tokenizer or get_tokenizer(cfg.tokenizer)
    if token_ids is not None:
        ids, n_input = [int(i) for i in token_ids][: cfg.n_ctx], len(token_ids)
        if not ids:
            raise EmptyPromptError("no token ids given")
        if max(ids) >= cfg.vocab_size or min(ids) < 0:
            raise ValueError(f"token ids must be in 0..{cfg.vocab_size - 1} for this model")
        text = tok.decode(ids) if text is None else text
    elif not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    else:
        ids, n_input = prepare(tok, text, cfg.n_ctx)
    if max(ids) >= cfg.vocab_size or min(ids) < 0:
        raise ValueError(f"token ids must be in 0..{cfg.vocab_size - 1} for this model")
    compact = precision == "compact"
    if precision not in ("compact", "full"):
        raise ValueError(f"precision must be 'compact' or 'full', not {precision!r}")
    store: dict[str, np.ndarray] = {}

    def capture(t: torch.Tensor, name: str) -> None:
        t = t[0]
        if compact and name == "hook_logits":
            top = t.amax(-1, keepdim=True)
            store["_logits_offset"] = (t - top).to(torch.float16).numpy()
            store["_logits_max"] = top.numpy()
            return
        if compact and _HALF.search(name):
            t = t.to(torch.float16)
        elif t._is_view():
            t = t.clone()  # never alias a weight (positions) or a larger buffer
        store[name] = t.numpy()

    def wanted(name: str) -> bool:
        return not (compact and _SCORES.match(name))

    x = torch.tensor([ids], dtype=torch.long)
    with hooks(model, [*(extra_hooks or []), (wanted, capture)]):
        model(x)
    for arr in store.values():
        arr.flags.writeable = False
    ids_arr = np.asarray(ids, dtype=np.int64)
    ids_arr.flags.writeable = False
    return Trace(
        text=text,
        ids=ids_arr,
        tokens=tuple(tok.token_str(i) for i in ids),
        token_bytes=tuple(tok.token_bytes(i) for i in ids),
        config=cfg,
        model_name=getattr(model, "name", "model"),
        n_input_tokens=n_input,
        precision=precision,
        store=store,
    )


def trace_nbytes(trace: Trace) -> int:
    """Bytes held by a trace's arrays (for cache budgets and the benchmarks)."""
    return sum(a.nbytes for a in trace.store.values()) + trace.ids.nbytes
