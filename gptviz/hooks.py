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


# Short names, as TransformerLens's ``utils.get_act_name`` takes them, and where each hook sits
# inside ``blocks.{layer}``. One table, so no module spells ``f"blocks.{i}.attn.hook_…"`` by hand.
_IN_BLOCK = {
    **{k: f"attn.hook_{k}" for k in ("q", "k", "v", "rot_q", "rot_k", "attn_scores", "pattern", "z")},
    "scores": "attn.hook_attn_scores",
    **{k: f"hook_{k}" for k in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")},
    "pre": "mlp.hook_pre",
    "pre_linear": "mlp.hook_pre_linear",
    "post": "mlp.hook_post",
    "mlp_pre": "mlp.hook_pre",
    "mlp_post": "mlp.hook_post",
}


def hook_name(kind: str, layer: int | None = None, norm: str | None = None) -> str:
    """The full hook name of a short one: ``hook_name("pattern", 0)`` is
    ``"blocks.0.attn.hook_pattern"``, ``hook_name("scale", 2, "ln1")`` is
    ``"blocks.2.ln1.hook_scale"``, ``hook_name("scale", norm="ln_final")`` is
    ``"ln_final.hook_scale"`` and ``hook_name("embed")`` is ``"hook_embed"``. A full name is
    returned as it is, so callers may pass either."""
    if kind.startswith(("hook_", "blocks.", "ln_final.")):
        return kind
    if kind in ("scale", "normalized"):
        if norm is None:
            raise ValueError(f"hook_name({kind!r}) needs norm='ln1', 'ln2' or 'ln_final'")
        return f"{norm}.hook_{kind}" if layer is None else f"blocks.{layer}.{norm}.hook_{kind}"
    if layer is None:
        return f"hook_{kind}"
    if kind not in _IN_BLOCK:
        raise ValueError(f"unknown hook kind {kind!r}; known: {sorted(_IN_BLOCK)}, 'scale', 'normalized'")
    return f"blocks.{layer}.{_IN_BLOCK[kind]}"


def block_name(layer: int, part: str | None = None) -> str:
    """``blocks.{layer}`` (a module path), or ``blocks.{layer}.{part}`` (e.g. ``"ln2"``)."""
    return f"blocks.{layer}" if part is None else f"blocks.{layer}.{part}"


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
