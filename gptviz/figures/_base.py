"""Shared pieces of every figure: safe token labels, token axes, one visual style.

Plotly renders a little HTML (``<b>``, ``<br>``, ``<i>``, ``<a href>``) and LaTeX between ``$``
in text, hover labels and tick labels, so every token string passes through ``esc`` before it
reaches a figure. Token axes run over positions with the token text as tick labels, because
Plotly merges repeated category labels ("the … the" would collapse into one row); heatmaps use
the unique categories ``"position: token"`` (``token_categories``) so that hover can name a
cell's tokens from the axes rather than from a string per cell.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

SEQUENTIAL = "Viridis"
SEQUENTIAL_PROJECTOR = "Cividis"
DIVERGING = "RdBu_r"  # ColorBrewer, colour-blind safe; red positive, blue negative
FONT = "Inter, Segoe UI, Helvetica, Arial, sans-serif"
QUALITATIVE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]  # Okabe-Ito


def visible(token: str) -> str:
    """Make whitespace visible: space ␣, newline ↵, tab ⇥, carriage return ␍."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍") or "∅"


def esc(text: str) -> str:
    """Escape for Plotly text: HTML entities for markup and ``$`` (no tags, no LaTeX)."""
    return html.escape(text, quote=True).replace("$", "&#36;")


def label(token: str) -> str:
    """A token as a figure shows it: whitespace visible, markup escaped."""
    return esc(visible(token))


def token_labels(tokens: Sequence[str], numbered: bool = False) -> list[str]:
    return [f"{i}:{label(t)}" if numbered else label(t) for i, t in enumerate(tokens)]


def token_categories(tokens: Sequence[str], first: int = 0) -> list[str]:
    """Category names for a token axis: ``"position: token"``, unique, so Plotly keeps repeated
    tokens apart, and the hover text can name each cell's tokens from the axes alone (per-cell
    label strings would cost O(rows × cols) to build and to encode as JSON). ``first``: the
    prompt position of ``tokens[0]`` when the axis shows a window of the prompt."""
    return [f"{i}: {label(t)}" for i, t in enumerate(tokens, start=first)]


def token_axis(
    tokens: Sequence[str],
    title: str = "token",
    numbered: bool = False,
    reverse: bool = False,
    categories: Sequence[str] | None = None,
) -> dict:
    """Axis settings: positions in order, token text as tick labels (``reverse``: top to bottom).

    ``categories``: the trace's coordinates, ``token_categories(tokens)``, rather than the
    numbers 0..n-1 (ranges count categories either way)."""
    n = len(tokens)
    step = max(1, int(np.ceil(n / 64)))  # at most ~64 labels; hover still names every token
    vals = list(range(0, n, step))
    texts = token_labels(tokens, numbered)
    axis = {
        "title": {"text": title},
        "tickmode": "array",
        "tickvals": vals,
        "ticktext": [texts[i] for i in vals],
        "range": [n - 0.5, -0.5] if reverse else [-0.5, n - 0.5],
    }
    if categories is not None:
        axis.update(type="category", tickvals=[categories[i] for i in vals])
    return axis


_AXIS = {  # plotly_white's axes
    "gridcolor": "#EBF0F8",
    "linecolor": "#EBF0F8",
    "zerolinecolor": "#EBF0F8",
    "zerolinewidth": 2,
    "ticks": "",
    "automargin": True,
}


def _template(*, projector: bool) -> go.layout.Template:
    """Our look as a Plotly template: plotly_white's backgrounds and axes, our type sizes.

    Why a template of our own: assigning plotly_white (colour scales for every trace type, 3D
    scenes, maps…) copies and validates ~7 KB of settings per figure, about half the cost of
    styling a chart; this one is small, and explicit settings of a figure still win over it."""
    base = 18 if projector else 13
    tick = {"size": base - (0 if projector else 1)}
    axis = {**_AXIS, "tickfont": tick, "title": {"standoff": 15, "font": {"size": base + 1}}}
    colorbar = {"outlinewidth": 0, "ticks": "", "tickfont": {"size": base}}
    return go.layout.Template(
        layout={
            "autotypenumbers": "strict",
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "colorway": QUALITATIVE,
            "font": {"family": FONT, "size": base, "color": "#111111"},
            "title": {"font": {"size": base + 4}, "x": 0.05},
            "hovermode": "closest",
            "hoverlabel": {"align": "left", "font": {"size": max(14, base)}},
            "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
            "legend": {"font": {"size": base}},
            "xaxis": axis,
            "yaxis": axis,
            "coloraxis": {"colorbar": colorbar},
        },
        data={"heatmap": [{"colorbar": colorbar}], "bar": [{"marker": {"line": {"color": "white", "width": 0.5}}}]},
    )


pio.templates["gptviz"] = _template(projector=False)
pio.templates["gptviz_projector"] = _template(projector=True)


def style(fig: go.Figure, *, projector: bool = False, height: int | None = None) -> go.Figure:
    """One look for every chart (the ``gptviz`` template); projector mode: large type, high-contrast scales."""
    fig.update_layout(template="gptviz_projector" if projector else "gptviz")
    if projector:
        for trace in fig.data:
            if trace.type == "heatmap" and trace.colorscale and _is_sequential(trace):
                trace.colorscale = SEQUENTIAL_PROJECTOR
            if getattr(trace, "textfont", None) is not None and trace.type in ("scatter", "bar", "heatmap"):
                trace.textfont.size = max(trace.textfont.size or 0, 16)
        if fig.layout.coloraxis.colorscale is not None and fig.layout.coloraxis.cmid is None:
            fig.update_coloraxes(colorscale=SEQUENTIAL_PROJECTOR)
    if height:
        fig.update_layout(height=height)
    return fig


def _is_sequential(trace: go.Heatmap) -> bool:
    return trace.zmid is None


def heatmap(
    z: np.ndarray,
    *,
    x_tokens: Sequence[str] | None = None,
    y_tokens: Sequence[str] | None = None,
    x_title: str = "",
    y_title: str = "",
    title: str = "",
    diverging: bool = False,
    hover: str = "value",
    zmin: float | None = None,
    zmax: float | None = None,
    projector: bool = False,
    height: int | None = None,
    hovertemplate: str | None = None,
    x_first: int = 0,
) -> go.Figure:
    """A heatmap whose token axes (if given) are positions labelled with escaped token text
    (``x_first``: the prompt position of the first column, for a window of the prompt)."""
    z = np.asarray(z, dtype=np.float32)
    kw: dict = {}
    if diverging:
        lim = float(np.nanmax(np.abs(z[np.isfinite(z)]))) if np.isfinite(z).any() else 1.0
        kw.update(colorscale=DIVERGING, zmid=0.0, zmin=-lim, zmax=lim)
    else:
        kw.update(colorscale=SEQUENTIAL)
        if zmin is not None:
            kw["zmin"] = zmin
        if zmax is not None:
            kw["zmax"] = zmax
    hovertemplate = hovertemplate or (
        f"{y_title or 'row'} %{{y}}<br>{x_title or 'column'} %{{x}}<br>{hover}: %{{z:.4f}}<extra></extra>"
    )
    # token axes are categories "position: token": the hover names both tokens of a cell
    x = token_categories(x_tokens, x_first) if x_tokens is not None else None
    y = token_categories(y_tokens) if y_tokens is not None else None
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, hovertemplate=hovertemplate, **kw))
    fig.update_layout(title={"text": title})
    fig.update_xaxes(zeroline=False)  # a white zero line shows through gaps (NaN cells)
    fig.update_yaxes(zeroline=False)
    if x_tokens is not None:
        fig.update_xaxes(**token_axis(x_tokens, x_title or "token", categories=x))
    else:
        fig.update_xaxes(title={"text": x_title})
    if y_tokens is not None:
        fig.update_yaxes(**token_axis(y_tokens, y_title or "token", reverse=True, categories=y))
    else:
        fig.update_yaxes(title={"text": y_title}, autorange="reversed")
    return style(fig, projector=projector, height=height)


@dataclass(frozen=True)
class Bars:
    """One series of a grouped bar chart: its legend name, values, colour and hover line."""

    name: str
    values: Any
    color: str
    hover: str  # what the hover says after the bar's name, e.g. "before %{y:.2%}"
    customdata: Any = None  # default: the bar names; with it, ``hover`` is the whole template


def grouped_bars(series: Sequence[Bars], names: Sequence[str], *, horizontal: bool = False) -> go.Figure:
    """Bars of several series side by side at positions 0..n-1 (the callers label the axis):
    before/after an ablation, model/sampling probabilities, embedding/position norms."""
    at = list(range(len(names)))
    bars = []
    for b in series:
        custom = names if b.customdata is None else b.customdata
        hover = ("%{customdata}<br>" + b.hover if b.customdata is None else b.hover) + "<extra></extra>"
        where = {"x": b.values, "y": at, "orientation": "h"} if horizontal else {"x": at, "y": b.values}
        bars.append(go.Bar(**where, name=b.name, marker_color=b.color, customdata=custom, hovertemplate=hover))
    return go.Figure(bars)
