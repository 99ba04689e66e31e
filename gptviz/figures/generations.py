"""Charts of the "Three generations of GPT" lesson: one series (or bar) per model, same colour
for a model in every chart. Pure functions of ``gptviz.analysis.generations``' numbers, keyed
by model name in the order the lesson shows the models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gptviz.analysis.generations import KVSize, NeuronSigns
from gptviz.figures._base import QUALITATIVE, Bars, esc, grouped_bars, style


def _colour(i: int) -> str:
    return QUALITATIVE[i % len(QUALITATIVE)]


def _short(name: str) -> str:
    return esc(name.removeprefix("bundled:"))


def design_table(table: pd.DataFrame, *, projector: bool = False) -> go.Figure:
    """The design choices of each model, as a table figure (what a question's guess can use)."""
    header = ["choice", *[_short(c) for c in table.columns[1:]]]
    cells = [[esc(str(v)) for v in table[c]] for c in table.columns]
    size = 16 if projector else 13
    fig = go.Figure(
        go.Table(
            header={"values": [f"<b>{h}</b>" for h in header], "align": "left", "font": {"size": size}},
            cells={"values": cells, "align": "left", "font": {"size": size}, "height": 28 if projector else 24},
            columnwidth=[1.1] + [2] * (len(header) - 1),
        )
    )
    fig.update_layout(title={"text": "The three designs, choice by choice"}, margin={"t": 50, "b": 10})
    return style(fig, projector=projector, height=60 + 30 * (len(table) + 1))


_DASHES = ("solid", "dash", "dot")
_SYMBOLS = ("circle", "square", "diamond")


def _lines(
    series: Mapping[str, np.ndarray], x: Sequence, title: str, x_title: str, y_title: str, fmt: str, projector: bool
) -> go.Figure:
    fig = go.Figure()
    for i, (name, y) in enumerate(series.items()):
        # dash and marker differ too: two models on the same values (pre-norm's 0) stay visible
        fig.add_scatter(
            x=list(x)[: len(y)],
            y=np.asarray(y, dtype=np.float64),
            mode="lines+markers",
            name=_short(name),
            line={"color": _colour(i), "width": 3 if i == 0 else 2.5, "dash": _DASHES[i % len(_DASHES)]},
            marker={"symbol": _SYMBOLS[i % len(_SYMBOLS)], "size": 10 - 2 * (i % 3)},
            hovertemplate=f"{_short(name)}<br>{x_title} %{{x}}<br>{y_title}: %{{y:{fmt}}}<extra></extra>",
        )
    fig.update_layout(title={"text": title}, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(title={"text": x_title})
    fig.update_yaxes(title={"text": y_title}, rangemode="tozero")
    return style(fig, projector=projector, height=420)


def position_shares(series: Mapping[str, np.ndarray], *, projector: bool = False) -> go.Figure:
    """Position vector length over token vector length, at each position of the prompt."""
    n = max(len(v) for v in series.values())
    return _lines(
        series,
        range(n),
        "How big is the position vector added to each token? (0: nothing is added)",
        "position in the prompt",
        "position vector / token vector",
        ".2f",
        projector,
    )


def highway_gaps(series: Mapping[str, np.ndarray], *, projector: bool = False) -> go.Figure:
    """Per layer: distance of the stream from "input + everything written so far"."""
    n = max(len(v) for v in series.values())
    fig = _lines(
        series,
        range(n),
        "Is the stream still 'input + every sub-layer's output'? (0: yes, untouched)",
        "after layer",
        "relative distance",
        ".2%",
        projector,
    )
    top = max(float(np.max(v)) for v in series.values()) or 1.0
    # a little room below 0, so lines at 0 (pre-norm) are drawn above the axis, not on it
    return fig.update_yaxes(tickformat=".0%", range=[-0.06 * top, 1.1 * top]).update_xaxes(dtick=1)


def mean_shares(series: Mapping[str, np.ndarray], *, projector: bool = False) -> go.Figure:
    """Per norm (ln1, ln2 of each layer): |mean| / RMS of the vectors it receives."""
    n = max(len(v) for v in series.values())
    names = [f"{i // 2}.{'attn' if i % 2 == 0 else 'ffn'}" for i in range(n)]
    fig = _lines(
        series,
        names,
        "What LayerNorm subtracts: the mean of each vector, as a share of its size",
        "norm (layer . before attention / feed-forward)",
        "|mean| / RMS",
        ".1%",
        projector,
    )
    return fig.update_yaxes(tickformat=".0%")


def neuron_sign_bars(signs: Mapping[str, NeuronSigns], *, projector: bool = False) -> go.Figure:
    """Share of the feed-forward's hidden values that are exactly 0, below 0, above 0."""
    names = [_short(n) for n in signs]
    kinds = (("exactly 0", "zero", 2), ("below 0", "negative", 5), ("above 0", "positive", 0))
    series = [
        Bars(label, [getattr(s, attr) for s in signs.values()], QUALITATIVE[c], f"{label}: %{{y:.1%}}")
        for label, attr, c in kinds
    ]
    fig = grouped_bars(series, names)
    fig.update_xaxes(tickvals=list(range(len(names))), ticktext=names, title={"text": "model"})
    fig.update_yaxes(title={"text": "share of the hidden values"}, tickformat=".0%", range=[0, 1])
    fig.update_layout(
        title={"text": "The feed-forward's hidden values on this prompt (all layers, all tokens)"}, barmode="group"
    )
    return style(fig, projector=projector, height=420)


def kv_cache_bars(sizes: Mapping[str, KVSize], *, projector: bool = False) -> go.Figure:
    """K/V cache of a full context: as the model keeps it, and with one K/V head per query head."""
    names = [_short(n) for n in sizes]
    real = [s.per_token * s.context for s in sizes.values()]
    full = [s.per_token_full * s.context for s in sizes.values()]
    series = [
        Bars("kept (its own K/V heads)", real, QUALITATIVE[0], "kept: %{y:,} numbers"),
        Bars("with one K/V head per query head", full, QUALITATIVE[1], "full: %{y:,} numbers"),
    ]
    fig = grouped_bars(series, names)
    fig.update_xaxes(tickvals=list(range(len(names))), ticktext=names, title={"text": "model"})
    fig.update_yaxes(title={"text": "numbers in the K/V cache (full context)"}, tickformat=",")
    fig.update_layout(title={"text": "K/V cache for a full context, all layers"}, barmode="group")
    return style(fig, projector=projector, height=420)


_PART_COLOURS = {  # Okabe-Ito, one colour per part
    "token embeddings": "#0072B2",
    "position embeddings": "#E69F00",
    "attention: queries": "#009E73",
    "attention: keys and values": "#56B4E9",
    "attention: output": "#CC79A7",
    "norms": "#D55E00",
    "feed-forward": "#F0E442",
    "output layer": "#000000",
}


def parameter_bars(table: pd.DataFrame, *, projector: bool = False) -> go.Figure:
    """Stacked bars: each model's parameters by part (``analysis.generations.parameter_table``)."""
    parts = table[table["part"] != "total"]
    totals = table[table["part"] == "total"].iloc[0]
    models = list(table.columns[1:])
    fig = go.Figure()
    for _, row in parts.iterrows():
        fig.add_bar(
            y=[_short(m) for m in models],
            x=[int(row[m]) for m in models],
            name=esc(row["part"]),
            orientation="h",
            marker_color=_PART_COLOURS.get(row["part"], "#999999"),
            hovertemplate=f"%{{y}}<br>{esc(row['part'])}: %{{x:,}}<extra></extra>",
        )
    for m in models:  # the total at the end of each bar
        fig.add_annotation(
            x=int(totals[m]), y=_short(m), text=f"{int(totals[m]):,}", showarrow=False, xanchor="left", xshift=6
        )
    fig.update_layout(
        barmode="stack",
        title={"text": "Where the parameters are"},
        legend={"orientation": "h", "y": -0.3, "traceorder": "normal"},
    )
    top = max(int(totals[m]) for m in models)
    fig.update_xaxes(title={"text": "parameters"}, tickformat=",", range=[0, 1.2 * top])
    fig.update_yaxes(autorange="reversed")
    return style(fig, projector=projector, height=440)
