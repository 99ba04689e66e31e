"""Numbers for the training timeline: the loss a model gets on the prompt, the card's
validation loss at a step, and next-token probabilities across snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from gptviz.trace import Trace


def prompt_loss(trace: Trace) -> float:
    """Mean cross-entropy (nats per token) of predicting each next token of the prompt; NaN for one token."""
    if trace.n_tokens < 2:
        return float("nan")
    z = np.asarray(trace["hook_logits"][:-1], dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    target = np.asarray(trace.ids[1:])
    return float(-logp[np.arange(len(target)), target].mean())


def history_value(history: Sequence[Mapping[str, float]], step: int, key: str = "val_loss") -> float | None:
    """``key`` at ``step`` in a card's history: exact, or linear between the two evaluations
    around it; None outside the evaluated range (e.g. step 0, before the first evaluation)."""
    points = sorted((int(h["step"]), float(h[key])) for h in history if h.get(key) is not None)
    if not points or step < points[0][0] or step > points[-1][0]:
        return None
    xs, ys = zip(*points, strict=True)
    return float(np.interp(step, xs, ys))


def next_token_probs(traces: Sequence[Trace], ids: Sequence[int]) -> np.ndarray:
    """``[len(traces), len(ids)]``: probability of each of ``ids`` after each trace's last token."""
    return np.stack([t.probs()[list(ids)] for t in traces]) if traces else np.zeros((0, len(ids)))
