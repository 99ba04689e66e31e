"""Interventions as replacing hooks: zero- or mean-ablate attention heads and MLP neurons.

Nothing here touches a weight: each hook returns a *new* tensor for one call, so other
sessions sharing the cached model are unaffected and removing the ablation restores the
output exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from gptviz.hooks import hook_name

Mode = Literal["zero", "mean"]


@dataclass(frozen=True)
class Ablation:
    """Which heads ``(layer, head)`` and neurons ``(layer, neuron)`` to knock out, and how.

    ``zero`` replaces the component's output by 0; ``mean`` by its mean over the prompt's
    positions (keeps the average signal, removes what depends on the token).
    """

    heads: tuple[tuple[int, int], ...] = ()
    neurons: tuple[tuple[int, int], ...] = ()
    mode: Mode = "zero"

    def __bool__(self) -> bool:
        return bool(self.heads or self.neurons)

    @property
    def key(self) -> tuple:
        """Hashable identity for caches (sorted, so order of selection does not matter)."""
        return (tuple(sorted(self.heads)), tuple(sorted(self.neurons)), self.mode)

    def hooks(self) -> list[tuple[str, object]]:
        """``[(hook name, fn)]`` for ``gptviz.run(..., extra_hooks=...)``."""
        out: list[tuple[str, object]] = []
        by_layer: dict[int, list[int]] = defaultdict(list)
        for layer, head in self.heads:
            by_layer[layer].append(head)
        for layer, heads in sorted(by_layer.items()):
            out.append((hook_name("z", layer), _knockout(sorted(heads), self.mode, axis=2)))
        by_layer = defaultdict(list)
        for layer, neuron in self.neurons:
            by_layer[layer].append(neuron)
        for layer, neurons in sorted(by_layer.items()):
            out.append((hook_name("post", layer), _knockout(sorted(neurons), self.mode, axis=2)))
        return out

    def describe(self) -> str:
        parts = [f"head {layer}.{h}" for layer, h in sorted(self.heads)]
        parts += [f"neuron {layer}.{n}" for layer, n in sorted(self.neurons)]
        return f"{self.mode}-ablated: " + ", ".join(parts) if parts else "no ablation"


def _knockout(index: list[int], mode: Mode, axis: int):
    """A hook replacing entries ``index`` along ``axis`` of a [B, T, ...] activation."""

    def fn(x: torch.Tensor, name: str) -> torch.Tensor:
        x = x.clone()
        sel = [slice(None)] * x.dim()
        sel[axis] = index
        sel = tuple(sel)
        if mode == "zero":
            x[sel] = 0.0
        else:
            x[sel] = x[sel].mean(dim=1, keepdim=True).expand_as(x[sel])
        return x

    return fn


def parse_components(items: Iterable[str]) -> tuple[tuple[int, int], ...]:
    """``["0.3", "1.2"]`` -> ``((0, 3), (1, 2))``; raises ValueError on bad text."""
    out = []
    for item in items:
        a, _, b = str(item).partition(".")
        out.append((int(a), int(b)))
    return tuple(out)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) in nats between two next-token distributions (p: before, q: after)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(np.maximum(q[mask], 1e-30)))))


def compare_next_token(before: np.ndarray, after: np.ndarray, k: int = 10) -> dict:
    """The tokens that matter before or after an ablation: the union of both top-``k`` lists,
    ordered by the probability before. Returns ``ids``, ``before``, ``after`` (probabilities of
    those ids) and ``kl`` = KL(before ‖ after) over the whole vocabulary, in nats."""
    before, after = np.asarray(before), np.asarray(after)
    top = np.union1d(np.argsort(-before)[:k], np.argsort(-after)[:k])
    ids = top[np.argsort(-before[top], kind="stable")]
    return {"ids": ids, "before": before[ids], "after": after[ids], "kl": kl_divergence(before, after)}
