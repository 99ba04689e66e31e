"""One forward pass, every hook captured: the ``Trace`` every page and notebook reads.

Storage policy (``precision``):
- ``"compact"`` (the app's default): MLP activations in float16, the residual stream and
  everything else in float32; attention scores *and patterns* are derived on access from the
  stored (rotated) Q and K, in float32 (exact: the same product and softmax the model computes),
  so the forward pass can use PyTorch's fused attention and never writes ``[H, T, T]`` per
  layer; logits stored as float16 *offsets from each row's maximum within each block of
  vocabulary columns* plus those maxima in float32, so the top of the distribution (what a page
  shows) keeps ~1e-3 precision. A layer whose scores or pattern an extra hook touches (an
  intervention) keeps what flowed instead. At GPT-2-small shape and 1,024 tokens this is
  ~0.7 GB instead of 2 GB.
- ``"full"``: every hook in float32 as the model produced it (parity tests, notebooks).

Arrays are read-only, so one cached Trace can be shared by many sessions safely.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from gptviz import trace_npz
from gptviz.config import GPTConfig
from gptviz.hooks import hook_name, hooks
from gptviz.model import GPT
from gptviz.tokenizer import Tokenizer, clean_text, get_tokenizer

if TYPE_CHECKING:
    import pandas as pd

Precision = Literal["compact", "full"]
_HALF = re.compile(r"blocks\.\d+\.(attn\.hook_pattern|mlp\.hook_pre|mlp\.hook_pre_linear|mlp\.hook_post)$")
_DERIVED = re.compile(r"blocks\.(\d+)\.attn\.hook_(attn_scores|pattern)$")  # from q, k in a compact trace
_PER_HEAD = re.compile(r"attn\.(hook_(rot_)?[qkvz]|[qk]_norm\.hook_\w+)$")  # [T, H or K, Dh or 1]


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
            for i in range(self.config.n_layer):
                names += [n for n in (hook_name("attn_scores", i), hook_name("pattern", i)) if n not in self.store]
            names.append("hook_logits")
        return names

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    def __getitem__(self, name: str | tuple) -> np.ndarray:
        """``trace[name]`` by full hook name, or ``trace["pattern", 0]`` / ``trace["scale", 1, "ln2"]``
        by short name and layer, as TransformerLens's cache allows (see ``hooks.hook_name``)."""
        if isinstance(name, tuple):
            name = hook_name(*name)
        if name in self.store and not name.startswith("_"):
            return self.store[name]
        if name == "hook_logits" and "_logits_offset" in self.store:
            out = self._compact_logits_of(slice(None))
            out.flags.writeable = False
            return out
        m = _DERIVED.match(name)
        if m and hook_name("q", int(m[1])) in self.store:
            out = self._attention(int(m[1]), softmax=m[2] == "pattern")
            out.flags.writeable = False
            return out
        raise KeyError(f"{name!r} is not in this trace; see trace.keys()")

    def _attention(
        self, layer: int, heads: Sequence[int] | None = None, rows: Sequence[int] | None = None, softmax: bool = True
    ) -> np.ndarray:
        """Scores Q·K/√d_head (``softmax=False``) or the pattern, float32 ``[h, r, T]``, of the
        given heads and query rows (default all), from the stored q and k: the rotated ones in a
        rotary model, each query head against the K head it shares (grouped-query attention).
        The scores are before the causal mask, as ``hook_attn_scores`` is."""
        rotary = hook_name("rot_q", layer) in self.store
        q = self.store[hook_name("rot_q" if rotary else "q", layer)]  # [T, H, Dh]
        k = self.store[hook_name("rot_k" if rotary else "k", layer)]  # [T, K, Dh]
        T, H = q.shape[:2]
        heads_ = np.arange(H) if heads is None else np.asarray(heads, dtype=np.int64)
        rows_ = np.arange(T) if rows is None else np.asarray(rows, dtype=np.int64)
        qh = q[rows_][:, heads_].transpose(1, 0, 2) * np.float32(1.0 / math.sqrt(self.config.d_head))
        kh = k[:, heads_ // (H // k.shape[1])].transpose(1, 2, 0)  # query head h reads K head h // G
        s = np.matmul(qh, kh)  # [h, r, T]
        if not softmax:
            return s
        s[:, rows_[:, None] < np.arange(T)] = -np.inf  # a query never reads a later key
        s -= s.max(-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(-1, keepdims=True)
        return s

    def pattern(self, layer: int, head: int) -> np.ndarray:
        """Attention pattern of one head, float32 ``[T, T]`` (row = query, column = key)."""
        name = hook_name("pattern", layer)
        if name in self.store:
            return self.store[name][head].astype(np.float32)
        return self._attention(layer, heads=[self._head_index(head, self.config.n_head)])[0]

    def pattern_row(self, layer: int, query: int) -> np.ndarray:
        """What token ``query`` reads in ``layer``: every head's weights over keys ``0..query``,
        float32 ``[H, query + 1]``; derives one row, not the layer's whole ``[H, T, T]``."""
        query = range(self.n_tokens)[query]
        name = hook_name("pattern", layer)
        if name in self.store:
            return self.store[name][:, query, : query + 1].astype(np.float32)
        return self._attention(layer, rows=[query])[:, 0, : query + 1]

    def logits(self, pos: int = -1) -> np.ndarray:
        """Float32 logits ``[V]`` for the prediction after position ``pos``."""
        if "hook_logits" in self.store:
            return self.store["hook_logits"][pos]
        return self._compact_logits_of(pos)

    def _compact_logits_of(self, rows: int | slice) -> np.ndarray:
        """Float32 logits of some positions from the compact store: float16 offsets ``[T, V]``
        plus the maximum of each row within each of ``C`` equal column blocks, ``[T, C]``
        (``C = 1``: one maximum per row, as older traces have)."""
        offset, top = self.store["_logits_offset"][rows], self.store["_logits_max"][rows]
        V, C = offset.shape[-1], top.shape[-1]
        return offset.astype(np.float32) + np.repeat(top, -(-V // C), axis=-1)[..., :V]

    def probs(self, pos: int = -1) -> np.ndarray:
        """Next-token probabilities after position ``pos`` (softmax of ``logits``)."""
        z = self.logits(pos).astype(np.float64)
        p = np.exp(z - z.max())
        return (p / p.sum()).astype(np.float32)

    # --- pandas views for notebooks (pandas is imported only when one is asked for) ---------

    def frame(self, name: str, head: int | None = None, tidy: bool = False) -> pd.DataFrame:
        """One hook as a DataFrame, one row per token: ``position``, ``token``, then one column
        per dimension (column labels ``0 .. D-1``, ints). A 1-D hook (``hook_tokens``) has a single
        ``value`` column. Per-head hooks ``[T, H, Dh]`` (``attn.hook_q|k|v|z``) get one row per
        (position, head) with a ``head`` column after ``token``; ``head=h`` keeps one head.

        ``tidy=True`` gives the long form instead, one row per number: ``position, token,
        [head,] dim, value``, ready for ``plotly.express`` or a ``groupby``. Attention
        patterns and scores ``[H, T, T]`` are not per token: use :meth:`pattern_frame`.
        """
        import pandas as pd

        arr = self[name]
        T, ndim = self.n_tokens, arr.ndim
        per_token = 1 <= ndim <= 3 and arr.shape[0] == T and (ndim < 3 or _PER_HEAD.search(name) is not None)
        if not per_token:
            hint = "; use trace.pattern_frame(layer, head)" if "attn_scores" in name or "pattern" in name else ""
            raise ValueError(f"{name!r} has shape {arr.shape}, not one row per token{hint}")
        if ndim == 1:
            arr = arr[:, None]
        index: dict[str, np.ndarray] = {"position": np.arange(T), "token": np.asarray(self.tokens, dtype=object)}
        if ndim == 3:
            H = arr.shape[1]
            heads = range(H) if head is None else [self._head_index(head, H)]
            arr = arr[:, list(heads)]  # [T, h, Dh]
            n = len(heads)
            index = {k: np.repeat(v, n) for k, v in index.items()}
            index["head"] = np.tile(np.asarray(heads), T)
            arr = arr.reshape(T * n, arr.shape[-1])
        elif head is not None:
            raise ValueError(f"{name!r} has no head axis")
        values = np.asarray(arr, dtype=np.float32) if arr.dtype == np.float16 else np.asarray(arr)
        columns: list = ["value"] if ndim == 1 else list(range(values.shape[1]))
        if not tidy:
            return pd.concat([pd.DataFrame(index), pd.DataFrame(values, columns=columns)], axis=1)
        D = values.shape[1]
        long = {k: np.repeat(v, D) for k, v in index.items()}
        long["dim"] = np.tile(np.arange(D), len(values))
        long["value"] = values.reshape(-1)
        return pd.DataFrame(long)

    def pattern_frame(self, layer: int, head: int) -> pd.DataFrame:
        """One head's attention as a long DataFrame, one row per (query, key) pair with
        ``key <= query`` (the causal mask hides the rest): ``query``, ``query_token``, ``key``,
        ``key_token``, ``weight`` (the pattern, each query's weights sum to 1) and ``score``
        (Q·K/√d_head before the softmax)."""
        import pandas as pd

        cfg = self.config
        if not (0 <= layer < cfg.n_layer):
            raise IndexError(f"layer {layer} is outside this model ({cfg.n_layer} layers)")
        head = self._head_index(head, cfg.n_head)
        q, k = np.tril_indices(self.n_tokens)
        tokens = np.asarray(self.tokens, dtype=object)
        scores = self["attn_scores", layer][head]
        return pd.DataFrame(
            {
                "query": q,
                "query_token": tokens[q],
                "key": k,
                "key_token": tokens[k],
                "weight": self.pattern(layer, head)[q, k],
                "score": np.asarray(scores, dtype=np.float32)[q, k],
            }
        )

    def top_tokens(self, pos: int = -1, k: int = 10) -> pd.DataFrame:
        """The ``k`` likeliest next tokens after position ``pos``: ``rank`` (1 = top), ``id``,
        ``token``, ``prob`` and ``logit``, most likely first."""
        import pandas as pd

        from gptviz.tokenizer import get_tokenizer

        if not -self.n_tokens <= pos < self.n_tokens:
            raise IndexError(f"position {pos} is outside this trace ({self.n_tokens} tokens)")
        probs, logits = self.probs(pos), self.logits(pos)
        k = max(0, min(int(k), len(probs)))
        ids = np.argsort(-probs, kind="stable")[:k]
        tok = get_tokenizer(self.config.tokenizer)
        return pd.DataFrame(
            {
                "rank": np.arange(1, k + 1),
                "id": ids,
                "token": [tok.token_str(int(i)) for i in ids],
                "prob": probs[ids],
                "logit": np.asarray(logits, dtype=np.float32)[ids],
            }
        )

    def _head_index(self, head: int, n_head: int) -> int:
        if not 0 <= head < n_head:
            raise IndexError(f"head {head} is outside this model ({n_head} heads)")
        return int(head)

    def save(self, path: str | Path) -> Path:
        """Write the trace as ``.npz``: hook names as keys, plus ``__meta__`` (JSON)."""
        return trace_npz.write(vars(self), path)


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
        text = tok.decode(ids) if text is None else clean_text(text)
    elif not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    else:
        text = clean_text(text)  # lone surrogates -> U+FFFD, as the tokenizer read them
        ids, n_input = prepare(tok, text, cfg.n_ctx)
    if max(ids) >= cfg.vocab_size or min(ids) < 0:
        raise ValueError(f"token ids must be in 0..{cfg.vocab_size - 1} for this model")
    compact = precision == "compact"
    if precision not in ("compact", "full"):
        raise ValueError(f"precision must be 'compact' or 'full', not {precision!r}")
    store: dict[str, np.ndarray] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weights |= {b.untyped_storage().data_ptr() for b in model.buffers()}

    def capture(t: torch.Tensor, name: str) -> None:
        t = t[0]  # converted where it lives (a GPU), then copied to the host: traces are numpy
        if compact and _HALF.search(name):
            t = t.to(torch.float16)
        elif t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()  # numpy has no bfloat16: a half-precision model's other hooks land as float32
        elif t.untyped_storage().data_ptr() in weights:
            t = t.clone()  # never alias a weight (learned positions are a slice of one)
        store[name] = t.cpu().numpy()

    # Compact: scores and patterns are derived from q and k on access, except in a layer where
    # an extra hook may change them (then what flowed is kept, and that layer runs written out).
    touched = {
        layer
        for layer in range(cfg.n_layer)
        for selector, _ in extra_hooks or []
        for kind in ("attn_scores", "pattern")
        if (selector(hook_name(kind, layer)) if callable(selector) else selector == hook_name(kind, layer))
    }

    def wanted(name: str) -> bool:
        m = _DERIVED.match(name) if compact else None
        return m is None or int(m[1]) in touched

    x = torch.tensor([ids], dtype=torch.long, device=model.device)
    with hooks(model, [*(extra_hooks or []), (wanted, capture)]):
        if compact:
            _compact_logits(model, model(x, unembed=False)[0], store)
        else:
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


LOGIT_COLUMNS = 4096  # vocabulary entries unembedded at once: [1024, 4096] float32 is 16 MB


def _compact_logits(model: GPT, h: torch.Tensor, store: dict[str, np.ndarray]) -> None:
    """Logits of the final stream ``h`` [T, D] as float16 offsets from a maximum plus that
    maximum, one block of vocabulary columns at a time, so float32 logits never exist for the
    whole vocabulary. Each row's maximum is taken within each block (the top of every block keeps
    float16's best precision). Column blocks, not row blocks: measured at GPT-2-small shape and
    T=1,024 (unembedding, maxima and conversion), 4,096-column blocks took 0.55 s, 128-row
    blocks 1.14 s and one [T, V] product alone 0.71 s: a slice of W_U stays in cache while every
    position reads it. On a GPU each block is computed and turned to float16 there, and only the
    float16 block and its maxima are copied to the host buffer (a bfloat16 or float16 model's
    maxima are stored as float32)."""
    T, V = h.shape[0], model.cfg.vocab_size
    n = -(-V // LOGIT_COLUMNS)
    width = -(-V // n)
    offset, top = np.empty((T, V), dtype=np.float16), np.empty((T, n), dtype=np.float32)
    into = torch.from_numpy(offset)  # the trace's own buffer: each block is converted straight into it
    w, b = model.unembed.weight, model.unembed.bias
    for c in range(n):
        cols = slice(c * width, (c + 1) * width)
        logits = torch.nn.functional.linear(h, w[cols], None if b is None else b[cols])  # [T, width]
        m = logits.amax(-1, keepdim=True)
        block = logits.sub_(m)
        into[:, cols].copy_(block if block.is_cpu else block.to(torch.float16))  # half the bytes to copy
        top[:, c : c + 1] = m.float().cpu().numpy()
    store["_logits_offset"], store["_logits_max"] = offset, top


def trace_nbytes(trace: Trace) -> int:
    """Bytes held by a trace: its arrays, plus its text and token strings (a 100,000-character
    prompt is kept whole in ``trace.text``), for cache budgets and the benchmarks."""
    strings = sys.getsizeof(trace.text) + sum(sys.getsizeof(t) for t in trace.tokens)
    strings += sum(sys.getsizeof(b) for b in trace.token_bytes)
    return sum(a.nbytes for a in trace.store.values()) + trace.ids.nbytes + strings


def save_trace(trace: Trace, path: str | Path) -> Path:
    """``trace.save(path)``, as a function for symmetry with ``load_trace``."""
    return trace.save(path)


def load_trace(path: str | Path) -> Trace:
    """A Trace back from a ``.npz`` written by ``Trace.save``, without the model."""
    return Trace(**trace_npz.read(path))
