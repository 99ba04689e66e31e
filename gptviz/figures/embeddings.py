"""Stages 2 and 3 — token embeddings and positional encodings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gptviz.figures._base import QUALITATIVE, Bars, esc, grouped_bars, heatmap, label, style, token_axis
from gptviz.trace import Trace


def embedding_heatmap(trace: Trace, *, projector: bool = False) -> go.Figure:
    """Token × dimension heatmap of the token embeddings (``hook_embed``)."""
    return heatmap(
        trace["hook_embed"],
        y_tokens=trace.tokens,
        x_title="embedding dimension",
        y_title="token",
        title=f"Token embeddings: {trace.n_tokens} tokens × {trace.config.d_model} dimensions",
        diverging=True,
        projector=projector,
        hovertemplate="token %{y}<br>dimension %{x}<br>value %{z:.4f}<extra></extra>",
    )


def vector_norms(trace: Trace, *, projector: bool = False) -> go.Figure:
    """Length of each token's embedding and of its positional vector, side by side (a rotary
    model adds no positional vector: its bars are the embeddings alone, and the title says why)."""
    emb = np.linalg.norm(trace["hook_embed"], axis=-1)
    names = [label(t) for t in trace.tokens]
    bars = [Bars("token embedding", emb, QUALITATIVE[0], "‖embedding‖ %{y:.3f}")]
    title = "Vector lengths (L2 norm)"
    if "hook_pos_embed" in trace:
        pos = np.linalg.norm(trace["hook_pos_embed"], axis=-1)
        bars.append(Bars("positional encoding", pos, QUALITATIVE[1], "‖position‖ %{y:.3f}"))
    else:
        title += " (rotary positions: no position vector is added, q and k are rotated inside attention)"
    fig = grouped_bars(bars, names)
    fig.update_layout(title={"text": title}, barmode="group", yaxis_title="norm")
    fig.update_xaxes(**token_axis(trace.tokens, "token (position)"))
    return style(fig, projector=projector)


def nearest_tokens_bar(neighbours: Sequence[tuple[str, float]], token: str, *, projector: bool = False) -> go.Figure:
    """Cosine similarity of the nearest vocabulary tokens to one token's embedding."""
    names = [label(t) for t, _ in neighbours][::-1]
    sims = [s for _, s in neighbours][::-1]
    fig = go.Figure(
        go.Bar(
            x=sims,
            y=list(range(len(sims))),
            orientation="h",
            marker_color=QUALITATIVE[2],
            customdata=names,
            hovertemplate="%{customdata}<br>cosine %{x:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(sims))), ticktext=names, title="vocabulary token")
    fig.update_layout(
        title={"text": f"Nearest tokens to {label(token)}"},
        xaxis_title="cosine similarity",
        height=max(300, 28 * len(sims) + 120),
    )
    return style(fig, projector=projector)


def embedding_scatter(
    coords: np.ndarray, tokens: Sequence[str], is_prompt: np.ndarray, explained: np.ndarray, *, projector: bool = False
) -> go.Figure:
    """2-D PCA of the prompt's tokens (large, labelled) among their nearest neighbours (small;
    their text on hover only, so the labels do not pile up)."""
    fig = go.Figure()
    for flag, name, size in ((False, "neighbour", 8), (True, "prompt token", 14)):
        idx = np.flatnonzero(np.asarray(is_prompt) == flag)
        names = [label(tokens[i]) for i in idx]
        fig.add_trace(
            go.Scatter(
                x=coords[idx, 0],
                y=coords[idx, 1],
                mode="markers+text" if flag else "markers",
                name=name,
                text=names if flag else None,
                customdata=names,
                textposition="top center",
                marker={"size": size, "color": QUALITATIVE[3 if flag else 4]},
                hovertemplate="%{customdata}<br>(%{x:.2f}, %{y:.2f})<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        title={"text": f"Embeddings projected to 2-D (PCA keeps {explained.sum():.0%} of the variance)"},
        xaxis_title=f"PC1 ({explained[0]:.0%})",
        yaxis_title=f"PC2 ({explained[1]:.0%})",
        height=600,
    )
    return style(fig, projector=projector)


def positional_heatmap(pos: np.ndarray, kind: str, *, projector: bool = False) -> go.Figure:
    """Position × dimension heatmap of the positional encodings."""
    return heatmap(
        pos,
        x_title="dimension",
        y_title="position",
        diverging=True,
        projector=projector,
        title=f"{'Sinusoidal' if kind == 'sinusoidal' else 'Learned'} positional encodings ({pos.shape[0]} positions)",
        hovertemplate="position %{y}<br>dimension %{x}<br>value %{z:.4f}<extra></extra>",
    )


def positional_curves(pos: np.ndarray, dims: Sequence[int], kind: str, *, projector: bool = False) -> go.Figure:
    """Chosen dimensions of the positional vectors as curves over position."""
    fig = go.Figure()
    for j, d in enumerate(dims):
        wave = ("sin" if d % 2 == 0 else "cos") if kind == "sinusoidal" else "learned"
        fig.add_trace(
            go.Scatter(
                x=np.arange(pos.shape[0]),
                y=pos[:, d],
                mode="lines",
                name=f"dim {d} ({wave})",
                line={"color": QUALITATIVE[j % len(QUALITATIVE)], "width": 2},
                hovertemplate=f"dim {d}<br>position %{{x}}<br>value %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": "Positional encoding, chosen dimensions across positions"},
        xaxis_title="position",
        yaxis_title="value",
    )
    return style(fig, projector=projector)


def position_similarity_heatmap(sim: np.ndarray, *, projector: bool = False) -> go.Figure:
    """Cosine similarity between the positional vectors of every two positions."""
    return heatmap(
        sim,
        x_title="position",
        y_title="position",
        diverging=True,
        projector=projector,
        title="How alike are two positions? (cosine similarity of their encodings)",
        hovertemplate="positions %{y} and %{x}<br>cosine %{z:.3f}<extra></extra>",
    )


def embedding_plus_position(trace: Trace, pos: int, *, projector: bool = False) -> go.Figure:
    """For one token: its embedding, its positional vector, and their sum (the first residual)."""
    rows = np.stack([trace["hook_embed"][pos], trace["hook_pos_embed"][pos], trace["resid_pre", 0][pos]])
    names = ["token embedding", "+ positional encoding", "= residual stream (layer 0 input)"]
    fig = make_subplots(rows=1, cols=1)
    lim = float(np.abs(rows).max()) or 1.0
    fig.add_trace(
        go.Heatmap(
            z=rows,
            y=names,
            colorscale="RdBu_r",
            zmid=0,
            zmin=-lim,
            zmax=lim,
            hovertemplate="%{y}<br>dimension %{x}<br>value %{z:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title={"text": f"Before and after adding position {pos} to {esc(repr(trace.tokens[pos]))}"},
        xaxis_title="dimension",
        height=300,
    )
    fig.update_yaxes(autorange="reversed")
    return style(fig, projector=projector)
