"""Numbers for the training timeline: the loss a model gets on the prompt, the card's
validation loss at a step, next-token probabilities across snapshots, and which bundled
models have snapshots to show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gptviz.analysis.generation import top_ids
from gptviz.checkpoints import BUNDLED, bundled_snapshots
from gptviz.tokenizer import Tokenizer
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


def models_with_snapshots() -> list[str]:
    """The bundled models that ship training snapshots, in ``BUNDLED`` order (the timeline's
    choices: a model family added with snapshots appears without touching the page)."""
    return [name for name in BUNDLED if bundled_snapshots(name)]


@dataclass(frozen=True)
class Sweep:
    """Every snapshot on one prompt: ``ids`` are the final snapshot's top next tokens,
    ``probs[s, j]`` snapshot ``s``'s probability of ``ids[j]``, ``losses[s]`` its loss on the
    prompt, ``favourites[s]`` its own top next token (as text)."""

    steps: tuple[int, ...]
    ids: list[int]
    probs: np.ndarray
    losses: list[float]
    favourites: list[str]

    def table(self, names: Sequence[str]) -> pd.DataFrame:
        """One row per snapshot (the chart's data table); ``names`` label ``ids``' columns."""
        out = pd.DataFrame(
            {"step": list(self.steps), "loss on the prompt": self.losses, "favourite next token": self.favourites}
        )
        for j, name in enumerate(names):
            out[f"p({name})"] = self.probs[:, j]
        return out


def snapshot_sweep(traces: Sequence[Trace], steps: Sequence[int], tokenizer: Tokenizer, k: int = 5) -> Sweep:
    """What each snapshot's trace of the same prompt predicts, compared on the final snapshot's
    ``k`` favourite next tokens (the ones training ends up preferring)."""
    if len(traces) != len(steps) or not traces:
        raise ValueError("one trace per step, at least one")
    ids = top_ids(traces[-1].probs(), k).tolist()
    favourites = [tokenizer.token_str(int(np.argmax(t.probs()))) for t in traces]
    return Sweep(tuple(steps), ids, next_token_probs(traces, ids), [prompt_loss(t) for t in traces], favourites)
