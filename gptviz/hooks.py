"""Named activation points and a context manager that hooks them safely.

A ``HookPoint`` is an identity module with a stable name (TransformerLens's vocabulary). Hooks
are added only inside ``hooks(...)`` and removed in ``finally``, so a failing page, an
interrupted run or two browser tabs sharing one cached model never leave a hook behind.
A hook function that *returns* a tensor replaces the activation: that is how ablation works,
without ever touching the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


class HookPoint(nn.Module):
    """Identity module marking an activation; ``name`` is its full dotted hook name."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def name_hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Give every HookPoint its dotted module path as name; return them by name."""
    points = {}
    for name, module in model.named_modules():
        if isinstance(module, HookPoint):
            module.name = name
            points[name] = module
    return points


def _matches(name: str, selector: str | Callable[[str], bool]) -> bool:
    return selector(name) if callable(selector) else name == selector


@contextmanager
def hooks(model: nn.Module, fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]]) -> Iterator[nn.Module]:
    """Run ``model`` with ``fn(activation, name)`` attached to each selected hook point.

    A selector is a hook name or a predicate on names. Unknown names raise ``KeyError`` so a
    typo cannot silently capture nothing. Handles are removed even if the forward pass fails.
    """
    points = {n: m for n, m in model.named_modules() if isinstance(m, HookPoint)}
    handles = []
    try:
        for selector, fn in fwd_hooks:
            chosen = [n for n in points if _matches(n, selector)]
            if not chosen and not callable(selector):
                raise KeyError(f"no hook point named {selector!r}")
            for name in chosen:
                handles.append(points[name].register_forward_hook(_adapt(fn, name)))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _adapt(fn: HookFn, name: str) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]:
    def forward_hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return fn(output, name)

    return forward_hook


def count_hooks(model: nn.Module) -> int:
    """Number of forward hooks still registered anywhere in ``model`` (tests expect 0)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
