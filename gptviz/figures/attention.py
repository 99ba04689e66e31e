"""Stage 4a — self-attention: one head's pattern, all heads at once, the computation step by step.

Patterns are drawn with the query (the token doing the looking) as the row and the key (the token
looked at) as the column. The causal mask is visible: the future (key after query) is a grey gap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go

from gptviz.analysis.ablation import compare_next_token
from gptviz.analysis.attention import causal_masked, max_pool
from gptviz.config import GPTConfig
from gptviz.figures._base import (
    QUALITATIVE,
    SEQUENTIAL,
    SEQUENTIAL_PROJECTOR,
    Bars,
    grouped_bars,
    heatmap,
    label,
    style,
    token_axis,
    token_categories,
    token_labels,
)
from gptviz.trace import Trace

MASK_GREY = "#d0d0d0"


def pattern_heatmap(
    pattern: np.ndarray, tokens: Sequence[str], title: str = "", *, projector: bool = False, height: int | None = None
) -> go.Figure:
    """A ``[T, T]`` attention pattern: queries down, keys across, the masked future grey."""
    z = causal_masked(pattern)
    T = z.shape[-1]
    cats = token_categories(tokens)  # hover names both tokens from the axes: O(T) strings, not O(T²)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=cats,
            y=cats,
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL,
            hoverongaps=False,
            colorbar={"title": {"text": "weight"}},
            hovertemplate="query %{y}<br>key %{x}<br>attention weight %{z:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(**token_axis(tokens, "key (looked at)", categories=cats))
    fig.update_yaxes(**token_axis(tokens, "query (looking)", reverse=True, categories=cats))
    fig.update_layout(title={"text": title}, plot_bgcolor=MASK_GREY, height=height or _square(T))
    fig.update_xaxes(showgrid=False, zeroline=False)  # a zero line would cross the grey mask at query 0
    fig.update_yaxes(showgrid=False, zeroline=False)
    style(fig, projector=projector)
    return fig.update_traces(colorbar_title_text="weight")  # style() resets the colour bar in projector mode


def _square(T: int) -> int:
    return int(min(680, max(360, 160 + 20 * T)))


def attention_pattern(
    trace: Trace, layer: int, head: int, *, projector: bool = False, title: str | None = None
) -> go.Figure:
    """Attention pattern of head ``head`` in layer ``layer``: who looks at whom, row = query."""
    _check(trace, layer, head)
    return pattern_heatmap(
        trace.pattern(layer, head),
        trace.tokens,
        title or f"Layer {layer}, head {head}: where each token looks",
        projector=projector,
    )


def _check(trace: Trace, layer: int, head: int) -> None:
    cfg = trace.config
    if not (0 <= layer < cfg.n_layer and 0 <= head < cfg.n_head):
        raise IndexError(f"head {layer}.{head} is outside this model ({cfg.n_layer} layers × {cfg.n_head} heads)")


def attention_grid(
    trace: Trace, selected: tuple[int, int] | None = None, size: int = 32, *, projector: bool = False
) -> go.Figure:
    """Every head at once (BertViz's model view): layers down, heads across, each pattern
    max-pooled to at most ``size × size``. Each cell has a small dot in its empty (masked)
    corner: clicking it selects the head (see ``grid_cell``)."""
    cfg = trace.config
    L, H, T = cfg.n_layer, cfg.n_head, trace.n_tokens
    hs, vs = 0.012, 0.02 if L < 8 else 0.01
    w, hh = (1 - hs * (H - 1)) / H, (1 - vs * (L - 1)) / L
    traces, axes = [], {}
    dot = {"size": 9, "color": QUALITATIVE[1], "line": {"width": 1, "color": "#333333"}}
    font = {"size": 16 if projector else 12}
    for layer in range(L):
        pooled, s = max_pool(trace["pattern", layer], size)
        centres = np.arange(pooled.shape[-1]) * s + (s - 1) / 2
        where = "query %{y:.0f}, key %{x:.0f}" if s == 1 else f"queries ≈ %{{y:.0f}}, keys ≈ %{{x:.0f}} (±{s // 2})"
        for h in range(H):
            n = layer * H + h + 1
            xa, ya = f"x{n if n > 1 else ''}", f"y{n if n > 1 else ''}"
            traces.append(
                {
                    "type": "heatmap",
                    "z": pooled[h],
                    "x": centres,
                    "y": centres,
                    "xaxis": xa,
                    "yaxis": ya,
                    "coloraxis": "coloraxis",
                    "hoverongaps": False,
                    "hovertemplate": f"layer {layer}, head {h}<br>{where}<br>{'max ' if s > 1 else ''}"
                    "weight %{z:.3f}<extra></extra>",
                }
            )
            traces.append(
                {
                    "type": "scatter",
                    "x": [0.78 * (T - 1)],
                    "y": [0.22 * (T - 1)],
                    "xaxis": xa,
                    "yaxis": ya,
                    "mode": "markers",
                    "marker": dot,
                    "customdata": [[layer, h]],
                    "hovertemplate": f"layer {layer}, head {h}: click to open<extra></extra>",
                    "showlegend": False,
                }
            )
            ax = {"showticklabels": False, "showgrid": False, "zeroline": False, "fixedrange": True}
            axes[f"xaxis{n}"] = {
                **ax,
                "domain": [max(0.0, h * (w + hs)), min(1.0, h * (w + hs) + w)],
                "anchor": ya,
                "range": [-0.5, T - 0.5],
                "constrain": "domain",
                "title": {"text": f"head {h}" if layer == L - 1 else "", "font": font, "standoff": 4},
            }
            top = 1 - layer * (hh + vs)
            axes[f"yaxis{n}"] = {
                **ax,
                "domain": [max(0.0, top - hh), min(1.0, top)],  # float error may reach -1e-17
                "anchor": xa,
                "range": [T - 0.5, -0.5],  # query 0 at the top
                "scaleanchor": xa,  # square cells, like the single pattern
                "constrain": "domain",
                "title": {"text": f"layer {layer}" if h == 0 else "", "font": font, "standoff": 4},
            }
    shapes = []
    if selected is not None and 0 <= selected[0] < L and 0 <= selected[1] < H:
        n = selected[0] * H + selected[1] + 1
        suffix = "" if n == 1 else str(n)
        shapes.append(
            {
                "type": "rect",
                "xref": f"x{suffix} domain",
                "yref": f"y{suffix} domain",
                "x0": -0.03,
                "x1": 1.03,
                "y0": -0.03,
                "y1": 1.03,
                "line": {"color": QUALITATIVE[5], "width": 3},
            }
        )
    # Plotly validates every property it is given, which at 144 subplots (GPT-2) costs more than
    # the drawing: style an empty figure, then build once from plain dicts without validation.
    layout = style(go.Figure(), projector=projector).layout.to_plotly_json()
    layout.update(
        axes,
        title={"text": f"All {L * H} heads ({L} layers × {H} heads): click a dot to open that head"},
        coloraxis={
            "colorscale": SEQUENTIAL_PROJECTOR if projector else SEQUENTIAL,
            "cmin": 0.0,
            "cmax": 1.0,
            "colorbar": {"title": {"text": "weight"}},
        },
        plot_bgcolor=MASK_GREY,
        shapes=shapes,
        height=int(100 + L * max(70, min(160, 1000 // H))),
        margin={"l": 70, "r": 20, "t": 60, "b": 40},
    )
    return go.Figure(data=traces, layout=layout, _validate=False)


def gqa_grid(cfg: GPTConfig, selected: int | None = None, *, projector: bool = False) -> go.Figure:
    """Grouped-query attention drawn: K/V heads down, query heads across, a filled cell where a
    query head reads that K/V head. Query head ``h`` reads K/V head ``h // G`` (``G`` = query
    heads per K/V head), so each row is one block of ``G`` neighbours; ``selected`` is outlined."""
    H, K = cfg.n_head, cfg.kv_heads
    G = H // K
    z = np.zeros((K, H), dtype=np.float32)
    for h in range(H):
        z[h // G, h] = 1.0
    text = [[f"q{h}" if z[k, h] else "" for h in range(H)] for k in range(K)]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=np.arange(H),
            y=np.arange(K),
            text=text,
            texttemplate="%{text}" if H <= 32 else "",
            textfont={"size": 14 if projector else 11, "color": "white"},
            colorscale=[[0.0, "#f2f2f2"], [1.0, QUALITATIVE[0]]],
            zmin=0.0,
            zmax=1.0,
            showscale=False,
            xgap=2,
            ygap=2,
            hovertemplate="query head %{x}<br>K/V head %{y}<br>%{z:.0f} = reads it<extra></extra>",
        )
    )
    if selected is not None and 0 <= selected < H:
        fig.add_shape(
            type="rect",
            x0=selected - 0.5,
            x1=selected + 0.5,
            y0=selected // G - 0.5,
            y1=selected // G + 0.5,
            line={"color": QUALITATIVE[5], "width": 3},
        )
    kind = (
        "multi-query attention: one K/V head for all"
        if K == 1
        else f"grouped-query attention, {G} query heads per K/V head"
    )
    fig.update_layout(
        title={
            "text": f"Which query heads share a key/value head<br><sup>{H} query heads, {K} K/V heads: {kind}</sup>"
        },
        xaxis={"title": {"text": "query head"}, "dtick": 1 if H <= 32 else None, "showgrid": False},
        yaxis={"title": {"text": "K/V head"}, "dtick": 1, "autorange": "reversed", "showgrid": False},
        plot_bgcolor="white",
        height=int(min(440, 170 + 48 * K)),
    )
    style(fig, projector=projector)
    return fig.update_traces(colorscale=[[0.0, "#f2f2f2"], [1.0, QUALITATIVE[0]]])  # kept in projector mode


def grid_cell(point: dict, n_head: int) -> tuple[int, int] | None:
    """The ``(layer, head)`` a click on ``attention_grid`` chose (a selection point), or None."""
    cd = point.get("customdata")
    if isinstance(cd, list | tuple) and len(cd) == 2:
        return int(cd[0]), int(cd[1])
    curve = point.get("curve_number")
    if curve is None:
        return None
    return divmod(int(curve) // 2, n_head)


def kv_head(trace: Trace, head: int) -> int:
    """The K/V head query head ``head`` reads: ``head // G`` with ``G = n_head / kv_heads``
    query heads per K/V head (grouped-query attention; ``head`` itself for multi-head)."""
    cfg = trace.config
    return head // (cfg.n_head // cfg.kv_heads)


def _head(trace: Trace, name: str, layer: int, head: int, n: int) -> np.ndarray:
    """``name``'s vectors of query head ``head`` for the first ``n`` tokens: for k and v that is
    the shared K/V head, for a rotary model's q and k the rotated vectors (the ones the scores use)."""
    short = name.removeprefix("rot_")
    if short in ("k", "v"):
        head = kv_head(trace, head)
    if short in ("q", "k") and trace.config.pos == "rotary":
        name = "rot_" + short
    return np.asarray(trace[name, layer][:n, head, :], dtype=np.float32)


def qkv_heatmaps(trace: Trace, layer: int, head: int, n: int = 24, *, projector: bool = False) -> go.Figure:
    """Step 1: the head's query, key and value vectors for the first ``n`` tokens (rotary: q and
    k after their rotation by position; grouped-query: the K/V head this query head shares)."""
    _check(trace, layer, head)
    n = min(n, trace.n_tokens)
    tokens = trace.tokens[:n]
    mats = [_head(trace, x, layer, head, n) for x in "qkv"]
    lim = float(max(np.abs(m).max() for m in mats)) or 1.0
    cfg = trace.config
    rot = " (rotated by position)" if cfg.pos == "rotary" else ""
    kh = kv_head(trace, head)
    shared = f", K/V head {kh}" if cfg.kv_heads != cfg.n_head else ""
    names = [f"Q{rot}: what am I looking for?", f"K{rot}{shared}: what do I contain?", f"V{shared}: what do I pass on?"]
    two = bool(rot or shared)
    if two:  # three half-width titles: the long forms overlap, say them in two lines
        names = [
            f"Q{rot}<br>what am I looking for?",
            f"K{rot}{shared}<br>what do I contain?",
            f"V{shared}<br>what do I pass on?",
        ]
    cats = token_categories(tokens)
    # three side-by-side panels laid out by hand: make_subplots costs more than the drawing
    width, gap = 0.3, 0.05
    traces, layout, titles = [], {}, []
    for i, m in enumerate(mats):
        suffix = str(i + 1) if i else ""
        left = i * (width + gap)
        traces.append(
            go.Heatmap(
                z=m,
                y=cats,
                xaxis=f"x{suffix}",
                yaxis=f"y{suffix}",
                coloraxis="coloraxis",
                hovertemplate=f"{'QKV'[i]} of token %{{y}}<br>dimension %{{x}}<br>value %{{z:.4f}}<extra></extra>",
            )
        )
        layout[f"xaxis{suffix}"] = {
            "domain": [left, left + width],
            "anchor": f"y{suffix}",
            "title": {"text": "dimension"},
        }
        axis = token_axis(tokens, "token" if i == 0 else "", reverse=True, categories=cats)
        layout[f"yaxis{suffix}"] = {**axis, "anchor": f"x{suffix}", "showticklabels": i == 0}
        titles.append(
            {"text": names[i], "x": left + width / 2, "y": 1.0, "xref": "paper", "yref": "paper"}
            | {"xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 13 if two else 16}}
        )
    fig = go.Figure(
        data=traces,
        layout={
            **layout,
            "annotations": titles,
            "title": {
                "text": f"Step 1 · layer {layer}, head {head}: each token's query, key and value "
                f"({m.shape[1]} numbers each)"
            },
            "coloraxis": {"colorscale": "RdBu_r", "cmid": 0.0, "cmin": -lim, "cmax": lim},
            "height": _step_height(n) + 30 * two,
        },
    )
    fig = style(fig, projector=projector)
    return fig.update_layout(margin_t=120 if projector else 105) if two else fig


def _step_height(n: int) -> int:
    return int(min(700, max(320, 140 + 20 * n)))


def _two_line_title(fig: go.Figure, *, projector: bool) -> go.Figure:
    """Room for a title of two lines (steps 2–5 are drawn in half-width columns)."""
    return fig.update_layout(margin_t=110 if projector else 90)


def scores_heatmap(
    trace: Trace, layer: int, head: int, n: int = 24, masked: bool = False, *, projector: bool = False
) -> go.Figure:
    """Step 2 (``masked=False``): Q·Kᵀ/√d for every pair; step 3 (``masked=True``): the same with
    the future blanked out (it becomes −∞ before the softmax, so its weight is exactly 0)."""
    _check(trace, layer, head)
    n = min(n, trace.n_tokens)
    s = np.asarray(trace["scores", layer][head, :n, :n], dtype=np.float32)
    d = trace.config.d_head
    if masked:
        s = causal_masked(s)
        title = "Step 3 · the causal mask<br>no looking at later tokens (grey = −∞)"
    else:
        title = f"Step 2 · scores = Q·Kᵀ / √{d}<br>how well each query matches each key"
    fig = heatmap(
        s,
        x_tokens=trace.tokens[:n],
        y_tokens=trace.tokens[:n],
        x_title="key",
        y_title="query",
        title=title,
        diverging=True,
        hover="score",
        projector=projector,
        height=_step_height(n),
    )
    fig.update_traces(hoverongaps=False)
    fig.update_layout(plot_bgcolor=MASK_GREY)
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_yaxes(showgrid=False, zeroline=False)
    return _two_line_title(fig, projector=projector)


def softmax_heatmap(trace: Trace, layer: int, head: int, n: int = 24, *, projector: bool = False) -> go.Figure:
    """Step 4: softmax of each row of the masked scores: the weights, each row sums to 1."""
    _check(trace, layer, head)
    n = min(n, trace.n_tokens)
    fig = pattern_heatmap(
        trace.pattern(layer, head)[:n, :n],
        trace.tokens[:n],
        "Step 4 · softmax of each row<br>attention weights (each row sums to 1)",
        projector=projector,
        height=_step_height(n),
    )
    return _two_line_title(fig, projector=projector)


def weighted_sum_heatmap(trace: Trace, layer: int, head: int, n: int = 24, *, projector: bool = False) -> go.Figure:
    """Step 5: the head's output z = weights @ V, one vector per token (``hook_z``)."""
    _check(trace, layer, head)
    n = min(n, trace.n_tokens)
    z = _head(trace, "z", layer, head, n)
    fig = heatmap(
        z,
        y_tokens=trace.tokens[:n],
        x_title="dimension",
        y_title="token",
        title="Step 5 · output = weights × V<br>a weighted average of the value vectors",
        diverging=True,
        projector=projector,
        height=_step_height(n),
        hovertemplate="output of token %{y}<br>dimension %{x}<br>value %{z:.4f}<extra></extra>",
    )
    return _two_line_title(fig, projector=projector)


STEP_NOTES = (
    "Three learned matrices turn each token's vector into a query, a key and a value.",
    "The dot product of every query with every key, divided by √d so the numbers stay moderate.",
    "Scores for later tokens are replaced by −∞, so after the softmax they get weight exactly 0.",
    "Softmax turns each row into positive weights that sum to 1: the attention pattern.",
    "Each token's output is the weighted average of the value vectors it attends to.",
)


def attention_steps(trace: Trace, layer: int, head: int, n: int = 24, *, projector: bool = False) -> list[go.Figure]:
    """The five steps of one head, in order (Q/K/V, scores, mask, softmax, weighted sum)."""
    return [
        qkv_heatmaps(trace, layer, head, n, projector=projector),
        scores_heatmap(trace, layer, head, n, False, projector=projector),
        scores_heatmap(trace, layer, head, n, True, projector=projector),
        softmax_heatmap(trace, layer, head, n, projector=projector),
        weighted_sum_heatmap(trace, layer, head, n, projector=projector),
    ]


def attention_from_token(trace: Trace, layer: int, query: int, *, projector: bool = False) -> go.Figure:
    """For the token at ``query``: its attention weights over the keys 0..query, one bar per head."""
    H = trace.config.n_head
    if not (0 <= layer < trace.config.n_layer and 0 <= query < trace.n_tokens):
        raise IndexError(f"layer {layer} / position {query} is outside this trace")
    w = trace.pattern_row(layer, query)  # [H, q+1]
    keys = list(range(query + 1))
    names = token_labels(trace.tokens[: query + 1])
    fig = go.Figure()
    for h in range(H):
        fig.add_trace(
            go.Bar(
                x=keys,
                y=w[h],
                name=f"head {h}",
                marker_color=QUALITATIVE[h % len(QUALITATIVE)],
                customdata=names,
                hovertemplate=f"layer {layer}, head {h}<br>key %{{x}}: %{{customdata}}<br>weight %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": f"Where {label(trace.tokens[query])} (position {query}) looks, in every head of layer {layer}"},
        barmode="group",
        yaxis={"title": {"text": "attention weight"}, "range": [0, 1.02]},
        legend={"title": {"text": "head"}},
    )
    fig.update_xaxes(**token_axis(trace.tokens[: query + 1], "key (earlier token)"))
    return style(fig, projector=projector)


def next_token_bars(
    tokens: Sequence[str],
    before: np.ndarray,
    after: np.ndarray,
    kl: float,
    what: str = "after ablation",
    *,
    projector: bool = False,
    ids: Sequence[int] | None = None,
) -> go.Figure:
    """Next-token probabilities of some tokens before and after an intervention, side by side
    (used by the head and the neuron ablations). With ``ids``, labels read "token (id)", so two
    tokens that look alike stay apart."""
    names = token_labels(tokens)
    if ids is not None:
        names = [f"{n} ({int(i)})" for n, i in zip(names, ids, strict=True)]
    x = list(range(len(names)))
    fig = grouped_bars(
        [
            Bars("before", np.asarray(before, dtype=np.float32), QUALITATIVE[0], "before %{y:.2%}"),
            Bars(what, np.asarray(after, dtype=np.float32), QUALITATIVE[5], what + " %{y:.2%}"),
        ],
        names,
    )
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=names, title={"text": "next token"})
    fig.update_layout(
        title={"text": f"Next-token probabilities, before and {what} (KL = {kl:.4f} nats)"},
        barmode="group",
        yaxis={"title": {"text": "probability"}, "tickformat": ".0%"},
    )
    return style(fig, projector=projector)


def next_token_bars_for(
    before: Trace,
    after: Trace,
    token_str: Callable[[int], str],
    *,
    k: int = 10,
    what: str = "after ablation",
    projector: bool = False,
) -> go.Figure:
    """``next_token_bars`` for two traces of the same prompt (plain and intervened): the last
    position's top-``k`` tokens of either, labelled "token (id)" (``token_str``: the tokenizer's)."""
    cmp = compare_next_token(before.probs(), after.probs(), k=k)
    words = [token_str(int(i)) for i in cmp["ids"]]
    return next_token_bars(words, cmp["before"], cmp["after"], cmp["kl"], what, projector=projector, ids=cmp["ids"])
