"""Stage 3 for rotary models: what RoPE does instead of adding a position vector.

Four pictures, each from ``gptviz.analysis.rotary``: the angle of every dimension pair at every
position (a clock face per pair, fast and slow hands), a few pairs as waves, each pair's
wavelength (with Llama 3's scaling against the plain rule), one query's pair before and after
its rotation as arrows, and q·k of a fixed query and key as a function of their distance.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from gptviz.analysis.rotary import PairRotation, RelativeScores, RotaryAngles
from gptviz.figures._base import QUALITATIVE, esc, label, style

GREY = "#8c8c8c"
CYCLIC = "Twilight"  # a cyclic scale: angle 0 and 2π get the same colour


def _pair_ticks(n: int) -> dict:
    """Whole-number ticks on a pair axis (a few pairs would otherwise get ticks at 0.5)."""
    return {"dtick": 1} if n <= 16 else {}


def rotary_angle_heatmap(angles: RotaryAngles, *, projector: bool = False) -> go.Figure:
    """Positions down, dimension pairs across, colour = the pair's angle at that position
    (wrapped to 0..2π, a cyclic scale). Left columns change colour every row (fast pairs), right
    ones hardly at all (slow pairs)."""
    wrapped = np.mod(angles.angles, 2 * math.pi).astype(np.float32)
    waves = np.broadcast_to(angles.wavelengths, wrapped.shape)
    fig = go.Figure(
        go.Heatmap(
            z=wrapped,
            x=np.arange(angles.n_pairs),
            y=angles.positions,
            customdata=waves,
            zmin=0.0,
            zmax=2 * math.pi,
            colorscale=CYCLIC,
            colorbar={
                "title": {"text": "angle"},
                "tickvals": [0, math.pi / 2, math.pi, 3 * math.pi / 2, 2 * math.pi],
                "ticktext": ["0", "90°", "180°", "270°", "360°"],
            },
            hovertemplate="position %{y}<br>pair %{x}<br>angle %{z:.2f} rad (wrapped)"
            "<br>one turn every %{customdata:.1f} positions<extra></extra>",
        )
    )
    still = angles.d_head - angles.rot_dim
    note = f"<br><sup>the head's last {still} of {angles.d_head} dimensions never turn</sup>" if still else ""
    fig.update_layout(
        title={
            "text": f"Rotation angle of each dimension pair, by position ({angles.n_pairs} pairs){note}",
        },
        xaxis={"title": {"text": "dimension pair (left: fast, right: slow)"}, **_pair_ticks(angles.n_pairs)},
        yaxis={"title": {"text": "position"}, "autorange": "reversed"},
        height=460,
    )
    style(fig, projector=projector)
    return fig.update_traces(colorscale=CYCLIC)  # projector mode swaps sequential scales; an angle needs a cyclic one


def rotary_angle_curves(angles: RotaryAngles, pairs: list[int], *, projector: bool = False) -> go.Figure:
    """cos(angle) of a few pairs against position: a fast pair wiggles, a slow one barely moves.
    (The pair's two numbers are turned by this angle; cos is the part that stays in place.)"""
    fig = go.Figure()
    for n, p in enumerate(pairs):
        wave = angles.wavelengths[p]
        fig.add_trace(
            go.Scatter(
                x=angles.positions,
                y=np.cos(angles.angles[:, p]),
                mode="lines",
                name=f"pair {p} (turn every {wave:,.1f} positions)",
                line={"color": QUALITATIVE[n % len(QUALITATIVE)], "width": 2},
                hovertemplate=f"pair {p}<br>position %{{x}}<br>cos(angle) %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": "cos(angle) of a few pairs<br><sup>fast pairs spin, slow pairs hardly move</sup>"},
        xaxis_title="position",
        yaxis={"title": {"text": "cos(angle)"}, "range": [-1.05, 1.05]},
        legend={"orientation": "h", "y": -0.25},
        height=400,
    )
    return style(fig, projector=projector)


def rotary_wavelengths(angles: RotaryAngles, context: int, *, projector: bool = False) -> go.Figure:
    """Each pair's wavelength (positions per full turn), log scale; with Llama 3's scaling the
    unscaled rule is drawn too, so the stretched slow pairs stand out. A dashed line marks the
    context: pairs above it never complete one turn inside a prompt."""
    x = np.arange(angles.n_pairs)
    fig = go.Figure()
    if angles.base_freqs is not None:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=2 * math.pi / angles.base_freqs,
                mode="lines+markers",
                name="without scaling (θ^(2i/R) rule)",
                line={"color": QUALITATIVE[7], "dash": "dot"},
                hovertemplate="pair %{x}<br>wavelength %{y:,.1f} positions (unscaled)<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=angles.wavelengths,
            mode="lines+markers",
            name="this model" + (" (Llama 3 scaling)" if angles.base_freqs is not None else ""),
            line={"color": QUALITATIVE[0], "width": 2},
            hovertemplate="pair %{x}<br>wavelength %{y:,.1f} positions<extra></extra>",
        )
    )
    # the context as a line trace: a shape's y on a log axis would be read as log10(y)
    fig.add_trace(
        go.Scatter(
            x=[-0.5, angles.n_pairs - 0.5],
            y=[context, context],
            mode="lines",
            name=f"context: {context:,} positions",
            line={"dash": "dash", "color": QUALITATIVE[5]},
            hovertemplate=f"context: {context:,} positions<extra></extra>",
        )
    )
    fig.update_layout(
        title={"text": f"Positions per full turn of each pair<br><sup>θ = {angles.theta:,.0f}</sup>"},
        xaxis={"title": {"text": "dimension pair"}, **_pair_ticks(angles.n_pairs)},
        yaxis={"title": {"text": "wavelength (positions, log scale)"}, "type": "log"},
        legend={"orientation": "h", "y": -0.25},
        height=400,
    )
    return style(fig, projector=projector)


def _quoted(token: str) -> str:
    """A token for a title: visible whitespace, escaped, in quotes (a bare "." reads as punctuation)."""
    return f"“{esc(label(token))}”"


def _arrow(fig: go.Figure, xy: np.ndarray, colour: str, name: str) -> None:
    fig.add_trace(
        go.Scatter(
            x=[0.0, float(xy[0])],
            y=[0.0, float(xy[1])],
            mode="lines+markers",
            name=name,
            line={"color": colour, "width": 3},
            marker={"size": [0, 12], "symbol": "arrow", "angleref": "previous", "color": colour},
            hovertemplate=f"{name}<br>(%{{x:.3f}}, %{{y:.3f}})<extra></extra>",
        )
    )


def rotary_pair_arrows(rot: PairRotation, token: str, *, projector: bool = False) -> go.Figure:
    """The query's pair as an arrow in the plane before (grey) and after (blue) the rotation,
    with an arc for the angle: same length, only the direction changes."""
    fig = go.Figure()
    r = float(np.hypot(*rot.before)) or 1.0
    a0 = math.atan2(rot.before[1], rot.before[0])
    turn = math.fmod(rot.angle, 2 * math.pi)
    arc = np.linspace(a0, a0 + turn, 60)
    fig.add_trace(
        go.Scatter(
            x=0.35 * r * np.cos(arc),
            y=0.35 * r * np.sin(arc),
            mode="lines",
            name=f"turned by {math.degrees(turn):.0f}°",
            line={"color": QUALITATIVE[1], "width": 2, "dash": "dot"},
            hoverinfo="skip",
        )
    )
    circle = np.linspace(0, 2 * math.pi, 120)
    fig.add_trace(
        go.Scatter(
            x=r * np.cos(circle),
            y=r * np.sin(circle),
            mode="lines",
            line={"color": "#cccccc", "width": 1},
            showlegend=False,
            hoverinfo="skip",
        )
    )
    i, j = rot.dims
    _arrow(fig, rot.before, GREY, "before rotation (hook_q)")
    _arrow(fig, rot.after, QUALITATIVE[0], "after rotation (hook_rot_q)")
    lim = 1.15 * r
    fig.update_layout(
        title={
            "text": f"Query of {_quoted(token)} (position {rot.pos}), pair {rot.pair}<br>"
            f"<sup>layer {rot.layer}, head {rot.head}: turned by {rot.pos} × {2 * math.pi / rot.wavelength:.4f} rad "
            f"= {math.degrees(rot.angle):.0f}°</sup>"
        },
        xaxis={"title": {"text": f"dimension {i}"}, "range": [-lim, lim], "zeroline": True},
        yaxis={"title": {"text": f"dimension {j}"}, "range": [-lim, lim], "scaleanchor": "x", "zeroline": True},
        legend={"orientation": "h", "y": -0.2},
        height=480,
    )
    return style(fig, projector=projector)


def relative_position_curves(rel: RelativeScores, q_token: str, k_token: str, *, projector: bool = False) -> go.Figure:
    """Score of the same query and key placed ``offset`` apart, once per starting position: the
    curves lie on top of each other (only the distance matters). The star is the score the model
    computed for the real pair in the prompt; the dotted line is the score with no rotation."""
    fig = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot"]
    for n, (s, row) in enumerate(zip(rel.starts, rel.scores, strict=True)):
        fig.add_trace(
            go.Scatter(
                x=rel.offsets,
                y=row,
                mode="lines",
                name=f"key at position {s}, query at {s} + offset",
                line={"color": QUALITATIVE[n % len(QUALITATIVE)], "width": 4 - 1.5 * min(n, 1), "dash": dashes[n % 4]},
                hovertemplate=f"key at {s}, query at {s}+%{{x}}<br>score %{{y:.4f}}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[0, int(rel.offsets[-1])],
            y=[rel.unrotated, rel.unrotated],
            mode="lines",
            name="no rotation at all (q·k/√d)",
            line={"dash": "dot", "color": GREY},
            hovertemplate="without rotation: %{y:.4f}<extra></extra>",
        )
    )
    if 0 <= rel.actual_offset <= int(rel.offsets[-1]):
        fig.add_trace(
            go.Scatter(
                x=[rel.actual_offset],
                y=[rel.actual_score],
                mode="markers",
                name=f"in the prompt: positions {rel.q_pos} and {rel.k_pos}",
                marker={"symbol": "star", "size": 16, "color": QUALITATIVE[5], "line": {"width": 1, "color": "#333"}},
                hovertemplate="the model's own score<br>offset %{x}<br>score %{y:.4f}<extra></extra>",
            )
        )
    fig.update_layout(
        title={
            "text": f"Score of q of {_quoted(q_token)} with k of {_quoted(k_token)}, moved to every distance<br>"
            f"<sup>layer {rel.layer}, head {rel.head}: the same two vectors at different places</sup>"
        },
        xaxis_title="offset: query position − key position",
        yaxis_title="attention score",
        legend={"orientation": "h", "y": -0.25},
        height=440,
    )
    return style(fig, projector=projector)
