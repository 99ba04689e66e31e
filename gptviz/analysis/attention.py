"""Stage 4a beyond one picture: per-head statistics, induction on repeated tokens, ablation effects.

Patterns are ``[..., T, T]`` arrays (row = query, column = key), as in ``trace["blocks.L.attn.
hook_pattern"]``. Every score here is a plain mean over queries, so each is easy to check by hand:

- entropy: how spread out a query's attention is (0 = all on one token; log(i+1) = uniform);
- previous-token score: mean weight from position i to i-1;
- first-token score: mean weight from position i to position 0 (an "attention sink");
- induction score: on random tokens repeated twice, mean weight from the second copy's position
  i to the token *after* the previous occurrence of token i (key i-n+1): the head has learned
  "find where this token appeared before and look at what came next".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from gptviz.analysis.ablation import compare_next_token  # noqa: F401  (re-exported: used with head ablation)
from gptviz.hooks import hooks
from gptviz.model import GPT
from gptviz.trace import Trace

STAT_HELP = {
    "entropy": "How spread out the head's attention is, in nats (0: every query looks at one token; "
    "higher: attention smeared over many tokens).",
    "previous-token": "Average weight each token puts on the token just before it (1.0: a pure "
    "'look one step back' head).",
    "first-token": "Average weight on the very first token. Heads with nothing useful to do often "
    "park their attention there (an 'attention sink').",
    "induction": "On random tokens repeated twice, the weight from a token in the second copy to the "
    "token that followed it last time: the head copies patterns ([A][B] … [A] → [B]).",
}


def pattern_entropy(pattern: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each query's attention, averaged over queries: ``[..., T, T] -> [...]``."""
    p = np.asarray(pattern, dtype=np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    return 0.0 - (p * logp).sum(-1).mean(-1)  # 0.0 - x: no "-0.0" for one-hot rows


def previous_token_score(pattern: np.ndarray) -> np.ndarray:
    """Mean attention from position i to i-1 over queries i >= 1 (NaN for one token)."""
    p = np.asarray(pattern, dtype=np.float64)
    T = p.shape[-1]
    if T < 2:
        return np.full(p.shape[:-2], np.nan)
    q = np.arange(1, T)
    return p[..., q, q - 1].mean(-1)


def first_token_score(pattern: np.ndarray) -> np.ndarray:
    """Mean attention to position 0 over queries i >= 1 (position 0 can only see itself)."""
    p = np.asarray(pattern, dtype=np.float64)
    if p.shape[-1] < 2:
        return np.full(p.shape[:-2], np.nan)
    return p[..., 1:, 0].mean(-1)


def induction_score(pattern: np.ndarray, n: int) -> np.ndarray:
    """Mean attention from second-copy query i (n <= i < 2n) to key i-n+1, the token that
    followed the previous occurrence of token i. ``pattern``: ``[..., 2n, 2n]``."""
    p = np.asarray(pattern, dtype=np.float64)
    if p.shape[-1] < 2 * n or n < 2:
        raise ValueError(f"need a pattern over 2n = {2 * n} tokens (n >= 2), got {p.shape[-1]}")
    q = np.arange(n, 2 * n)
    return p[..., q, q - n + 1].mean(-1)


def repeated_tokens(vocab_size: int, n: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """``[batch, 2n]`` ids: ``n`` random tokens, then the same ``n`` again (last id left out,
    it is an end-of-text marker in our vocabularies)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, max(1, vocab_size - 1), (batch, n), generator=g)
    return torch.cat([first, first], dim=1)


@torch.inference_mode()
def induction_scores(model: GPT, n: int | None = None, batch: int = 4, seed: int = 0) -> np.ndarray:
    """Induction score ``[n_layer, n_head]`` of every head, averaged over ``batch`` random
    sequences. A pure function of the weights, ``n``, ``batch`` and ``seed`` (cache it by those)."""
    cfg = model.cfg
    n = n or min(50, cfg.n_ctx // 2)
    if 2 * n > cfg.n_ctx:
        raise ValueError(f"2n = {2 * n} tokens exceed the model's context of {cfg.n_ctx}")
    ids = repeated_tokens(cfg.vocab_size, n, batch, seed)
    scores = np.zeros((cfg.n_layer, cfg.n_head))

    def capture(t: torch.Tensor, name: str) -> None:
        layer = int(name.split(".")[1])
        scores[layer] = induction_score(t.float().cpu().numpy(), n).mean(0)

    with hooks(model, [(lambda name: name.endswith("attn.hook_pattern"), capture)]):
        model(ids.to(model.device))  # drawn on the CPU: the same ids on every device
    return scores


def head_stats(trace: Trace, induction: np.ndarray | None = None) -> pd.DataFrame:
    """One row per head ("layer.head"): entropy, previous-token, first-token (on the trace's
    prompt) and induction (from ``induction_scores``; omitted when ``None``). A head is a
    *query* head; with grouped-query attention a "K/V head" column says which key/value head it
    reads (query heads of one group share keys, not patterns: each row is still its own)."""
    cfg = trace.config
    G = cfg.n_head // cfg.kv_heads
    rows = []
    for layer in range(trace.config.n_layer):
        p = trace["pattern", layer]
        ent, prev, first = pattern_entropy(p), previous_token_score(p), first_token_score(p)
        for h in range(trace.config.n_head):
            row = {
                "head": f"{layer}.{h}",
                "layer": layer,
                "head index": h,
                **({"K/V head": h // G} if G > 1 else {}),
                "entropy": ent[h],
                "previous-token": prev[h],
                "first-token": first[h],
            }
            if induction is not None:
                row["induction"] = float(induction[layer, h])
            rows.append(row)
    return pd.DataFrame(rows).set_index("head")


def max_pool(pattern: np.ndarray, size: int = 32) -> tuple[np.ndarray, int]:
    """Shrink ``[..., T, T]`` to at most ``size × size`` by max over ``s × s`` blocks (so a sharp
    stripe survives); blocks entirely in the masked future become NaN. Returns (pooled, s)."""
    p = np.asarray(pattern, dtype=np.float32)
    T = p.shape[-1]
    s = max(1, math.ceil(T / size))
    m = math.ceil(T / s)
    if s > 1:
        pad = np.full((*p.shape[:-2], m * s, m * s), np.nan, dtype=np.float32)
        pad[..., :T, :T] = p
        p = np.nanmax(pad.reshape(*p.shape[:-2], m, s, m, s), axis=(-3, -1))
    else:
        p = p.copy()
    p[..., np.triu(np.ones((m, m), dtype=bool), 1)] = np.nan
    return p, s


def causal_masked(a: np.ndarray) -> np.ndarray:
    """``a`` ([..., T, T], float32 copy) with the future (key > query) set to NaN, for display."""
    out = np.array(a, dtype=np.float32)
    T = out.shape[-1]
    out[..., np.triu(np.ones((T, T), dtype=bool), 1)] = np.nan
    return out
