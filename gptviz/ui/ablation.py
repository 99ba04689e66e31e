"""The ablation shared by the attention and feed-forward pages: one picker, one result.

One ``Ablation`` (heads and neurons together) is kept per session and in the URL, so heads
switched off on the attention page stay off on the feed-forward page and in a shared link. Each
page picks one kind of component; the other kind is carried along untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from gptviz.analysis.ablation import Ablation, compare_next_token, parse_components
from gptviz.figures import next_token_bars_for
from gptviz.trace import Trace
from gptviz.ui.caching import Context, figure, get_trace
from gptviz.ui.layout import chart
from gptviz.ui.state import keep, kept_or_url

# The widgets' keys (tests drive them by these names).
_KEYS = {"heads": "w_attn_ablate", "neurons": "ff_ablate_pick"}


def ablation(ctx: Context) -> Ablation:
    """The session's current ablation (heads and neurons), kept in the URL like any choice."""
    cfg = ctx.cfg
    try:
        heads = parse_components(_kept_or_url_list("ablate_heads"))
        neurons = parse_components(_kept_or_url_list("ablate_neurons"))
    except ValueError:
        heads, neurons = (), ()
    heads = tuple(h for h in heads if 0 <= h[0] < cfg.n_layer and 0 <= h[1] < cfg.n_head)
    neurons = tuple(n for n in neurons if 0 <= n[0] < cfg.n_layer and 0 <= n[1] < cfg.d_mlp)
    mode = kept_or_url("ablate_mode")
    return Ablation(heads, neurons, "mean" if mode == "mean" else "zero")


def set_ablation(ab: Ablation) -> None:
    keep("ablate_heads", [f"{a}.{b}" for a, b in sorted(ab.heads)])
    keep("ablate_neurons", [f"{a}.{b}" for a, b in sorted(ab.neurons)])
    keep("ablate_mode", ab.mode)


def _kept_or_url_list(key: str) -> list[str]:
    """The kept list (an empty list counts: the user cleared it), else the URL's comma list."""
    value = kept_or_url(key)
    return [x for x in (value or "").split(",") if x] if value is None or isinstance(value, str) else list(value)


def ablated_trace(ctx: Context, ab: Ablation) -> Trace:
    """The prompt rerun with ``ab`` applied (cached like any trace); the plain trace if empty."""
    if not ab:
        return ctx.trace
    return get_trace(ctx.spec, ctx.trace.text, extra_key=ab.key, extra_hooks=ab.hooks())


def _picked(ab: Ablation, kind: str) -> tuple:
    return ab.heads if kind == "heads" else ab.neurons


def _apply(kind: str, carried: tuple) -> None:
    """Widget callback: the picked components of ``kind`` plus the other kind, as they were."""
    picked = parse_components(st.session_state[_KEYS[kind]])
    mode = st.session_state[f"{_KEYS[kind]}_mode"]
    keep_heads, keep_neurons = (picked, carried) if kind == "heads" else (carried, picked)
    set_ablation(Ablation(keep_heads, keep_neurons, mode))


def ablation_picker(ctx: Context, kind: str, options: Sequence[str], label: str, mode_label: str) -> Ablation:
    """A multiselect of components of ``kind`` ("heads" or "neurons", as "layer.index" strings)
    and a zero/mean switch; returns the session's ablation with the pick applied.

    The widgets show the kept ablation on every run and write back in callbacks, so the pick
    follows the link and the other page's changes without a second source of truth."""
    ab = ablation(ctx)
    other = ab.neurons if kind == "heads" else ab.heads
    key = _KEYS[kind]
    current = [f"{a}.{b}" for a, b in sorted(_picked(ab, kind))]
    options = sorted({*current, *options}, key=lambda s: parse_components([s])[0])
    st.session_state[key] = current
    st.session_state[f"{key}_mode"] = ab.mode
    c1, c2 = st.columns([3, 1])
    c1.multiselect(label, options, key=key, on_change=_apply, args=(kind, other))
    c2.radio(mode_label, ["zero", "mean"], key=f"{key}_mode", on_change=_apply, args=(kind, other), horizontal=True)
    return ab


def ablation_result(ctx: Context, ab: Ablation, key: str, k: int, note: str = "") -> Trace | None:
    """The before/after comparison of the last position's prediction: KL metric, what is off,
    and the top-``k`` next tokens side by side. ``None`` (and a hint) when nothing is off."""
    if not ab:
        st.info("Nothing is switched off: pick components above to compare the prediction before and after.")
        return None
    after = ablated_trace(ctx, ab)
    cmp = compare_next_token(ctx.trace.probs(), after.probs(), k=k)
    st.metric(
        "KL divergence, before ‖ after (last position)",
        f"{cmp['kl']:.4f} nats",
        help="0 means the prediction did not change",
    )
    st.caption(ab.describe() + note)
    fig = figure(next_token_bars_for, ctx.trace, after, ctx.tokenizer.token_str, k=k, projector=ctx.projector, key=key)
    chart(fig, key)
    return after
