"""Named activation points and a context manager that hooks them for one call only.

A ``HookPoint`` is an identity module with a stable name (TransformerLens's vocabulary). Hooks
are attached with ``with hooks(model, [(name, fn)]): ...``. They live in a ``ContextVar``, not
on the modules: a cached model shared by many Streamlit sessions (each its own thread) is never
mutated, so two browser tabs running at once cannot see each other's hooks, and leaving the
``with`` block (normally or by an exception) always detaches them.

A hook function ``fn(activation, name)`` that *returns* a tensor replaces the activation: that
is how ablation works, without ever touching the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]
Selector = str | Callable[[str], bool]

# HookPoint -> the functions attached to it in the current context (thread / task).
_ACTIVE: ContextVar[dict[nn.Module, tuple[HookFn, ...]]] = ContextVar("gptviz_hooks", default={})  # noqa: B039


class HookPoint(nn.Module):
    """Identity module marking an activation; ``name`` is its full dotted hook name."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""

    @property
    def hooked(self) -> bool:
        """Whether a hook runs here in this context (its output may then be kept by a caller)."""
        return bool(_ACTIVE.get().get(self))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fns = _ACTIVE.get().get(self)
        if fns:
            for fn in fns:
                out = fn(x, self.name)
                if out is not None:
                    x = out
        return x


def name_hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Give every HookPoint its dotted module path as name; return them by name."""
    points = {}
    for name, module in model.named_modules():
        if isinstance(module, HookPoint):
            module.name = name
            points[name] = module
    return points


@contextmanager
def hooks(model: nn.Module, fwd_hooks: Sequence[tuple[Selector, HookFn]]) -> Iterator[nn.Module]:
    """Run ``model`` with ``fn(activation, name)`` attached to each selected hook point.

    A selector is a hook name or a predicate on names; functions run in the order given.
    Unknown names raise ``KeyError`` so a typo cannot silently capture nothing. Nested blocks
    add to the outer ones.
    """
    points = getattr(model, "hook_points", None) or {n: m for n, m in model.named_modules() if isinstance(m, HookPoint)}
    active = {k: list(v) for k, v in _ACTIVE.get().items()}
    for selector, fn in fwd_hooks:
        if callable(selector):
            chosen = [p for n, p in points.items() if selector(n)]
        elif selector in points:
            chosen = [points[selector]]
        else:
            raise KeyError(f"no hook point named {selector!r}")
        for point in chosen:
            active.setdefault(point, []).append(fn)
    token = _ACTIVE.set({k: tuple(v) for k, v in active.items()})
    try:
        yield model
    finally:
        _ACTIVE.reset(token)


def count_hooks(model: nn.Module) -> int:
    """Hooks attached to ``model``: module hooks plus those active in this context (expect 0)."""
    active = _ACTIVE.get()
    registered = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return registered + sum(len(active.get(m, ())) for m in model.modules())
