"""The whole GPT at a glance: what the overview draws, read off one Trace.

For one selected token (the *query*, by default the last one) the overview follows every stage:
its id and embedding (plus the position vector, or none in a rotary model, whose positions are
rotations of q and k inside attention), each layer's attention (which earlier tokens it reads,
from one head per layer: the strongest, or the one the user chose), the residual stream's size
and what attention and the feed-forward network add to it, the final norm and the next-token
probabilities. Everything here is a plain number from the trace, so a test can compare the
figure with ``trace["pattern", layer]`` and ``trace.probs()`` directly.

Long prompts do not fit as columns on one screen: ``window`` picks the columns shown (the query
and the tokens just before it); attention to tokens left of the window is summed, not dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gptviz.hooks import hook_name
from gptviz.trace import Trace

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class LayerView:
    """One layer as the overview shows it, for the query token.

    ``weights[k]`` is ``pattern[head, query, k]`` for every key ``k <= query`` (they sum to 1);
    ``strength[h]`` is what "strongest head" ranks by: head ``h``'s heaviest link from the query,
    leaving out the first token when there is another (many heads park attention there);
    ``resid_pre``, ``attn_add``, ``ffn_add`` and ``resid_post`` are L2 norms per token ``[T]``."""

    layer: int
    head: int
    chosen: bool  # the user chose this head (else: the strongest)
    weights: np.ndarray
    strength: np.ndarray
    resid_pre: np.ndarray
    attn_add: np.ndarray
    ffn_add: np.ndarray
    resid_post: np.ndarray


@dataclass(frozen=True)
class Overview:
    """Every stage of the pipeline for one query token of one trace."""

    tokens: tuple[str, ...]
    ids: np.ndarray
    query: int
    positions: str  # the config's ``pos``: "learned", "sinusoidal" or "rotary"
    embed_norm: np.ndarray  # [T] |token embedding|
    pos_norm: np.ndarray | None  # [T] |position vector| (None: rotary, nothing is added)
    layers: tuple[LayerView, ...]
    final_norm: str | None  # "LayerNorm" / "RMSNorm", None for post-LN models (no final norm)
    final_scale: np.ndarray | None  # [T] what the final norm divides by (std or RMS)
    top_ids: np.ndarray  # the likeliest next tokens after the query, most likely first
    top_probs: np.ndarray
    top_tokens: tuple[str, ...]
    n_head: int
    d_model: int

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


def _norms(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(x, dtype=np.float32), axis=-1)


def head_strength(pattern_row: np.ndarray) -> np.ndarray:
    """Each head's heaviest link from one query, ``pattern_row`` ``[H, keys]``: the first token
    is left out when there are others (attention parked on it says little about the prompt)."""
    row = np.asarray(pattern_row, dtype=np.float32)
    return (row[:, 1:] if row.shape[1] > 1 else row).max(axis=1)


def overview(
    trace: Trace,
    token_str: Callable[[int], str],
    query: int = -1,
    heads: Mapping[int, int] | None = None,
    k: int = 5,
) -> Overview:
    """The overview of ``trace`` for the token at ``query`` (negative: from the end).

    ``heads`` maps a layer to the head to show there; other layers show their strongest head.
    ``token_str`` names the ``k`` likeliest next tokens (``tokenizer.token_str``)."""
    cfg, T = trace.config, trace.n_tokens
    q = query % T if -T <= query < T else None
    if q is None:
        raise IndexError(f"query {query} is outside this trace ({T} tokens)")
    heads = dict(heads or {})
    layers = []
    for layer in range(cfg.n_layer):
        row = trace.pattern_row(layer, q)  # [H, q+1]
        strength = head_strength(row)
        chosen = layer in heads and 0 <= heads[layer] < cfg.n_head
        head = int(heads[layer]) if chosen else int(np.argmax(strength))
        layers.append(
            LayerView(
                layer=layer,
                head=head,
                chosen=chosen,
                weights=row[head],
                strength=strength,
                resid_pre=_norms(trace["resid_pre", layer]),
                attn_add=_norms(trace["attn_out", layer]),
                ffn_add=_norms(trace["mlp_out", layer]),
                resid_post=_norms(trace["resid_post", layer]),
            )
        )
    rotary = cfg.pos == "rotary"
    scale_name = hook_name("scale", norm="ln_final")
    final = cfg.final_ln and scale_name in trace
    probs = trace.probs(q)
    top = np.argsort(-probs.astype(np.float64), kind="stable")[:k]
    return Overview(
        tokens=tuple(trace.tokens),
        ids=np.asarray(trace.ids),
        query=q,
        positions=cfg.pos,
        embed_norm=_norms(trace["hook_embed"]),
        pos_norm=None if rotary else _norms(trace["hook_pos_embed"]),
        layers=tuple(layers),
        final_norm=("RMSNorm" if cfg.norm_kind == "rmsnorm" else "LayerNorm") if cfg.final_ln else None,
        final_scale=np.asarray(trace[scale_name], dtype=np.float32).reshape(T) if final else None,
        top_ids=top,
        top_probs=probs[top],
        top_tokens=tuple(token_str(int(i)) for i in top),
        n_head=cfg.n_head,
        d_model=cfg.d_model,
    )


def window(n_tokens: int, query: int, width: int) -> range:
    """The token columns shown: at most ``width``, always including ``query``, ending at it once
    the prompt is longer than the window (the tokens right before the query matter most)."""
    width = max(1, int(width))
    stop = min(n_tokens, max(query + 1, width))
    return range(max(0, stop - width), stop)


def generated_attention(trace: Trace, n_generated: int, layer: int, head: int | None = None) -> np.ndarray:
    """The attention of each of the last ``n_generated`` tokens over everything before it,
    ``[n_generated, T]`` (rows of the pattern; 0 right of each row's diagonal). ``head=None``
    averages the layer's heads. Row ``i`` is what generated token ``i`` read when it was the
    newest query: with a KV cache only this row is computed at that step."""
    T = trace.n_tokens
    n = max(0, min(int(n_generated), T))
    pattern = np.asarray(trace["pattern", layer], dtype=np.float32)  # [H, T, T]
    rows = pattern[:, T - n :, :] if head is None else pattern[head : head + 1, T - n :, :]
    return rows.mean(axis=0)


def overview_table(ov: Overview) -> pd.DataFrame:
    """The overview's numbers at the query token, one row per layer (the chart's text
    alternative): the head drawn, its heaviest link, and the residual stream's sizes."""
    import pandas as pd

    rows = []
    for lv in ov.layers:
        k = int(np.argmax(lv.weights))
        rows.append(
            {
                "layer": lv.layer,
                "head drawn": lv.head,
                "how chosen": "chosen" if lv.chosen else "strongest",
                "reads most": f"{k}: {ov.tokens[k]}",
                "weight": float(lv.weights[k]),
                "|x| in": float(lv.resid_pre[ov.query]),
                "attention adds |a|": float(lv.attn_add[ov.query]),
                "feed-forward adds |f|": float(lv.ffn_add[ov.query]),
                "|x| out": float(lv.resid_post[ov.query]),
            }
        )
    return pd.DataFrame(rows)
