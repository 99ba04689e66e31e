"""Figures of the research tools: patching maps, the information-flow graph, input attribution.

Pure functions (arrays or analysis results in, a Plotly figure out). Every cell or edge carries
its coordinates in ``customdata``, so a page can open the head or layer a click chose
(``clicked_cell``, ``clicked_edge``), and its raw number in the hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from gptviz.figures._base import QUALITATIVE, heatmap, label, style, token_axis, token_categories

if TYPE_CHECKING:
    import pandas as pd

    from gptviz.analysis.attribution import Attribution
    from gptviz.analysis.patching import PatchingResult

MAX_EDGES = 4000  # the flow graph draws at most this many edges (the strongest)
PATH_COLOR = "#D55E00"
MLP_BEND = 0.3  # feed-forward edges bend this far right of the residual edge they run beside
EDGE_COLORS = {"head": QUALITATIVE[0], "resid": "#9AA0A6", "mlp": QUALITATIVE[2]}
_DIRECTION = {
    "denoise": "clean → corrupted (denoising): 1 = restores the clean answer",
    "noise": "corrupted → clean (noising): 1 = moves to the corrupted answer",
}


def patching_heatmap(
    result: PatchingResult, tokens: Sequence[str], *, layer: int | None = None, projector: bool = False
) -> go.Figure:
    """The patching map: rows are layers (``head``: layer × head; ``head_pos``: one row per
    head, of ``layer`` only if given), columns the prompt's tokens (or heads), the colour the
    normalised effect (diverging: negative effects are blue). Hover: the cell, the normalised
    value and the raw metric after the patch; ``customdata`` = (layer, head or -1, position or -1)."""
    values, raw = np.asarray(result.values, dtype=np.float64), np.asarray(result.raw, dtype=np.float64)
    L = values.shape[0]
    method = (
        "Gradient estimate (attribution patching)" if result.method == "attribution" else "Exact (activation patching)"
    )
    title = f"{method}<br><sub>{_kind_title(result.kind)}; {_DIRECTION[result.direction]}</sub>"
    hover_tail = "normalised %{z:.3f}<br>metric after patch %{customdata[3]:.4f}<extra></extra>"
    if result.kind == "head":
        H = values.shape[1]
        cd = np.stack([*np.indices((L, H)), -np.ones((L, H)), raw], axis=-1)
        fig = heatmap(
            values, x_title="head", y_title="layer", title=title, diverging=True, projector=projector,
            hovertemplate="layer %{y}, head %{x}<br>" + hover_tail,
        )  # fmt: skip
        fig.data[0].update(x=list(range(H)), y=list(range(L)), customdata=cd)
        fig.update_xaxes(tickmode="linear", dtick=1)
        fig.update_yaxes(tickmode="linear", dtick=1)
        return _colorbar(fig)
    if result.kind == "head_pos":
        H, T = values.shape[1], values.shape[2]
        layers = range(L) if layer is None else [layer]
        rows = [(lay, h) for lay in layers for h in range(H)]
        z = np.stack([values[lay, h] for lay, h in rows])
        r = np.stack([raw[lay, h] for lay, h in rows])
        cd = np.zeros((len(rows), T, 4))
        cd[..., 0] = np.asarray([lay for lay, _ in rows])[:, None]
        cd[..., 1] = np.asarray([h for _, h in rows])[:, None]
        cd[..., 2] = np.arange(T)[None]
        cd[..., 3] = r
        names = [f"{lay}.{h}" for lay, h in rows]
        fig = heatmap(
            z, x_tokens=tokens, x_title="position patched", y_title="head (layer.head)", title=title, diverging=True,
            projector=projector, hovertemplate="head %{y}<br>%{x}<br>" + hover_tail,
        )  # fmt: skip
        fig.data[0].update(y=names, customdata=cd)
        fig.update_yaxes(type="category", autorange="reversed")
        return _colorbar(fig)
    T = values.shape[1]
    cd = np.stack([*np.indices((L, T))[:1], -np.ones((L, T)), np.indices((L, T))[1], raw], axis=-1)
    fig = heatmap(
        values, x_tokens=tokens, x_title="position patched", y_title="layer", title=title, diverging=True,
        projector=projector, hovertemplate="layer %{y}<br>%{x}<br>" + hover_tail,
    )  # fmt: skip
    fig.data[0].update(y=list(range(L)), customdata=cd)
    fig.update_yaxes(tickmode="linear", dtick=1)
    return _colorbar(fig)


def _colorbar(fig: go.Figure) -> go.Figure:
    fig.data[0].colorbar = {"title": {"text": "effect"}}
    return fig


def _kind_title(kind: str) -> str:
    return {
        "resid_pre": "the residual stream entering each layer",
        "attn_out": "each layer's attention output",
        "mlp_out": "each layer's feed-forward output",
        "head": "each head's output (all positions)",
        "head_pos": "each head's output at each position",
    }[kind]


def clicked_cell(point: dict) -> tuple[int, int | None, int | None] | None:
    """``(layer, head, position)`` of a clicked patching cell (``None`` parts: not that kind)."""
    cd = point.get("customdata")
    if not isinstance(cd, list | tuple) or len(cd) < 3:
        return None
    layer, head, pos = (int(v) for v in cd[:3])
    return layer, (head if head >= 0 else None), (pos if pos >= 0 else None)


def patching_agreement(
    exact: PatchingResult, approx: PatchingResult, agree: dict, *, projector: bool = False
) -> go.Figure:
    """Attribution patching against the exact result, one dot per patch, with the diagonal
    (perfect agreement) and the correlation in the title."""
    a, b = np.asarray(exact.values).ravel(), np.asarray(approx.values).ravel()
    idx = np.indices(np.asarray(exact.values).shape).reshape(np.ndim(exact.values), -1).T
    names = [".".join(str(int(v)) for v in row) for row in idx]
    ok = np.isfinite(a) & np.isfinite(b)
    lo = float(min(a[ok].min(initial=0.0), b[ok].min(initial=0.0)))
    hi = float(max(a[ok].max(initial=1.0), b[ok].max(initial=1.0)))
    axes = " × ".join(exact.axes)
    fig = go.Figure(
        [
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "#9AA0A6", "dash": "dot"},
                       hoverinfo="skip", name="equal"),
            go.Scatter(x=a, y=b, mode="markers", marker={"color": QUALITATIVE[0], "size": 7, "opacity": 0.7},
                       customdata=names, name="patches",
                       hovertemplate=f"{axes} %{{customdata}}<br>exact %{{x:.3f}}<br>estimate %{{y:.3f}}<extra></extra>"),
        ]
    )  # fmt: skip
    r = agree.get("pearson", float("nan"))
    fig.update_layout(
        title={"text": f"Gradient estimate against the exact patch (r = {r:.3f})"},
        xaxis_title="exact (activation patching)",
        yaxis_title="estimate (attribution patching)",
        showlegend=False,
    )
    return style(fig, projector=projector)


def _level(stage: str, layer: int) -> float:
    return 2 * layer + (1 if stage == "mid" else 0)


def flow_graph(
    edges: pd.DataFrame,
    tokens: Sequence[str],
    n_layer: int,
    path: pd.DataFrame | None = None,
    *,
    title: str = "",
    projector: bool = False,
) -> go.Figure:
    """The information-flow graph: positions across (the prompt's tokens), the residual stream
    going up (each layer's input, then its middle, between attention and feed-forward), one
    line per edge, its width its weight; heads blue, feed-forward green, residual grey, the
    strongest path in orange-red on top. The dot in the middle of each edge carries its hover
    and, in ``customdata``, ``[kind, layer, head, source position, target position, weight]``
    for a click. At most ``MAX_EDGES`` edges are drawn (the strongest)."""
    edges = edges.nlargest(MAX_EDGES, "weight") if len(edges) > MAX_EDGES else edges
    traces: list[go.BaseTraceType] = []
    xs0 = edges.src_pos.to_numpy(dtype=float)
    xs1 = edges.dst_pos.to_numpy(dtype=float)
    ys0 = np.array([_level(s, lay) for s, lay in zip(edges.src_stage, edges.src_layer, strict=True)], dtype=float)
    ys1 = np.array([_level(s, lay) for s, lay in zip(edges.dst_stage, edges.dst_layer, strict=True)], dtype=float)
    w = edges.weight.to_numpy(dtype=float)
    kinds = edges.kind.to_numpy()
    bins = np.minimum((w * 5).astype(int), 4)  # five widths: one trace per (kind, width)
    for kind in ("resid", "mlp", "head"):
        for b in range(5):
            sel = (kinds == kind) & (bins == b)
            if not sel.any():
                continue
            gap = np.full(sel.sum(), np.nan)
            if kind == "mlp":  # bent to the right of the residual edge it runs beside
                bend_x, bend_y = xs0[sel] + MLP_BEND, (ys0[sel] + ys1[sel]) / 2
                x = np.column_stack([xs0[sel], bend_x, xs1[sel], gap]).ravel()
                y = np.column_stack([ys0[sel], bend_y, ys1[sel], gap]).ravel()
            else:
                x = np.column_stack([xs0[sel], xs1[sel], gap]).ravel()
                y = np.column_stack([ys0[sel], ys1[sel], gap]).ravel()
            traces.append(
                go.Scatter(x=x, y=y, mode="lines", hoverinfo="skip", showlegend=False,
                           line={"color": EDGE_COLORS[kind], "width": 0.6 + 1.6 * b}, opacity=0.35 + 0.13 * b)
            )  # fmt: skip
    if path is not None and len(path):
        px, py = [], []
        for k, s0, l0, p0, s1, l1, p1 in zip(path.kind, path.src_stage, path.src_layer, path.src_pos, path.dst_stage,
                                             path.dst_layer, path.dst_pos, strict=True):  # fmt: skip
            y0, y1 = _level(s0, l0), _level(s1, l1)
            if k == "mlp":
                px += [p0, p0 + MLP_BEND, p1, None]
                py += [y0, (y0 + y1) / 2, y1, None]
            else:
                px += [p0, p1, None]
                py += [y0, y1, None]
        traces.append(
            go.Scatter(x=px, y=py, mode="lines", hoverinfo="skip", name="strongest path",
                       line={"color": PATH_COLOR, "width": 5})
        )  # fmt: skip
    tok_text = [label(t) for t in tokens]
    hover = []
    for k, lay, h, s, d, wt in zip(kinds, edges.layer, edges["head"], edges.src_pos, edges.dst_pos, w, strict=True):
        what = {"head": f"head {lay}.{h}", "mlp": f"feed-forward {lay}", "resid": f"residual, layer {lay}"}[k]
        hover.append(f"{what}<br>{s}: {tok_text[s]} → {d}: {tok_text[d]}<br>weight {wt:.3f}")
    cd = (
        np.column_stack([kinds, edges.layer, edges["head"], edges.src_pos, edges.dst_pos, w]).tolist()
        if len(edges)
        else []
    )
    mid_x = (xs0 + xs1) / 2 + np.where(kinds == "mlp", MLP_BEND, 0.0)  # on the bend of a feed-forward edge
    traces.append(
        go.Scatter(x=mid_x, y=(ys0 + ys1) / 2, mode="markers", hovertext=hover, hoverinfo="text",
                   customdata=cd, showlegend=False,
                   marker={"size": 7, "color": [EDGE_COLORS[k] for k in kinds], "opacity": 0.5})
    )  # fmt: skip
    L = n_layer
    nx, ny = np.meshgrid(np.arange(len(tokens)), np.arange(2 * L + 1))
    traces.append(
        go.Scatter(x=nx.ravel(), y=ny.ravel(), mode="markers", hoverinfo="skip", showlegend=False,
                   marker={"size": 5, "color": "#555555"})
    )  # fmt: skip
    fig = go.Figure(traces)
    levels = [f"layer {lay} in" if i % 2 == 0 else f"layer {lay} mid" for lay in range(L) for i in (0, 1)] + ["output"]
    fig.update_xaxes(**token_axis(tokens, "token"))
    fig.update_yaxes(tickmode="array", tickvals=list(range(2 * L + 1)), ticktext=levels, title={"text": ""},
                     range=[-0.5, 2 * L + 0.5])  # fmt: skip
    fig.update_layout(title={"text": title or "Information flow to the prediction"}, legend={"orientation": "h"})
    return style(fig, projector=projector, height=max(420, 60 * L + 180))


def clicked_edge(point: dict) -> dict | None:
    """The edge a click on ``flow_graph`` chose: ``kind``, ``layer``, ``head``, ``src``, ``dst``."""
    cd = point.get("customdata")
    if not isinstance(cd, list | tuple) or len(cd) < 6:
        return None
    return {"kind": str(cd[0]), "layer": int(cd[1]), "head": int(cd[2]), "src": int(cd[3]), "dst": int(cd[4])}


def attribution_tokens(
    attr: Attribution, tokens: Sequence[str], *, title: str = "", per_row: int = 16, projector: bool = False
) -> go.Figure:
    """The prompt as coloured tokens, wrapped ``per_row`` to a row: red raises the chosen
    logit, blue lowers it (one diverging scale, centred on 0). Hover: the token and its raw
    attribution."""
    scores = np.asarray(attr.scores, dtype=np.float64)
    T = len(scores)
    rows = max(1, -(-T // per_row))
    z = np.full((rows, per_row), np.nan)
    text = np.full((rows, per_row), "", dtype=object)
    cd = np.full((rows, per_row), -1)
    cats = token_categories(tokens)
    hover = np.full((rows, per_row), "", dtype=object)
    for p in range(T):
        r, c = divmod(p, per_row)
        z[r, c], text[r, c], cd[r, c] = scores[p], label(tokens[p]), p
        hover[r, c] = f"{cats[p]}<br>attribution {scores[p]:.4f}"
    lim = float(np.nanmax(np.abs(scores))) if T and np.isfinite(scores).any() and np.abs(scores).max() > 0 else 1.0
    fig = go.Figure(
        go.Heatmap(z=z, text=text, texttemplate="%{text}", hovertext=hover, hoverinfo="text", customdata=cd,
                   colorscale="RdBu_r", zmid=0.0, zmin=-lim, zmax=lim, xgap=2, ygap=2,
                   textfont={"size": 16 if projector else 12}, colorbar={"title": {"text": "attribution"}})
    )  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(title={"text": title or _attr_title(attr)})
    return style(fig, projector=projector, height=140 + 44 * rows)


def attribution_bars(
    attr: Attribution, tokens: Sequence[str], *, title: str = "", projector: bool = False
) -> go.Figure:
    """One bar per prompt token, its attribution (red up: raises the chosen logit)."""
    scores = np.asarray(attr.scores, dtype=np.float64)
    cats = token_categories(tokens)
    fig = go.Figure(
        go.Bar(x=list(range(len(scores))), y=scores, customdata=cats,
               marker_color=[PATH_COLOR if s >= 0 else QUALITATIVE[0] for s in scores],
               hovertemplate="%{customdata}<br>attribution %{y:.4f}<extra></extra>")
    )  # fmt: skip
    fig.update_xaxes(**token_axis(tokens, "token"))
    fig.update_layout(title={"text": title or _attr_title(attr)}, yaxis_title="attribution (logit units)")
    return style(fig, projector=projector)


def _attr_title(attr: Attribution) -> str:
    method = "Integrated gradients" if attr.method == "integrated_gradients" else "Gradient × input"
    gap = attr.f_input - attr.f_baseline
    return f"{method}: sum {attr.scores.sum():.3f} · f(input) − f(baseline) = {gap:.3f}"
