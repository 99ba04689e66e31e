"""Stage 4b — the feed-forward network, the residual stream, LayerNorm, logit lens and DLA.

Pure functions: arrays or a Trace (and results of ``gptviz.analysis.lens``) in, a Plotly
figure out. Token axes are positions labelled with escaped token text (``_base``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gptviz.analysis.lens import Attribution, LayerNormView, LogitLens, residual_stack, stage_labels
from gptviz.figures._base import QUALITATIVE, Bars, esc, grouped_bars, heatmap, label, style, visible
from gptviz.hooks import hook_name
from gptviz.trace import Trace

MAX_CELL_TEXT_TOKENS = 40  # logit lens: write the top token in the cells up to this many positions
CELL_TEXT_CHARS = 6  # ... at most this many characters of it (fewer when cells are narrow; hover: the whole token)
CELL_TEXT_WIDTH_PX = 740  # logit lens: the plot width the cell text is sized for (a wide page column)
ONE_SIDED_MIN = -0.2  # activations never below this (ReLU: 0, GELU: about -0.17) get a one-sided scale


def top_neurons(acts: np.ndarray, n: int) -> np.ndarray:
    """Ids of the ``n`` neurons with the largest max |activation| over tokens, in id order."""
    score = np.abs(np.asarray(acts, dtype=np.float32)).max(axis=0)
    n = max(1, min(n, score.size))
    return np.sort(np.argsort(-score, kind="stable")[:n])


def mlp_activation_heatmap(
    acts: np.ndarray, tokens: Sequence[str], layer: int, top_n: int = 64, *, projector: bool = False
) -> go.Figure:
    """Neurons × tokens heatmap of one layer's MLP activations (after the non-linearity).

    Only the ``top_n`` most active neurons (largest max |activation| over the prompt) are drawn,
    so GPT-2's 3,072 neurons × 1,024 tokens stays a small figure; the title says how many.
    Activations after ReLU/GELU are (almost) never negative, so they get a sequential scale from
    their own minimum to their maximum; signed values (anything below ``ONE_SIDED_MIN``) get the
    diverging scale, symmetric around 0.
    """
    acts = np.asarray(acts, dtype=np.float32)  # [T, M]
    ids = top_neurons(acts, top_n)
    z = acts[:, ids].T  # [n, T]
    shown = "all" if len(ids) == acts.shape[1] else f"the {len(ids)} most active of"
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    signed = lo < ONE_SIDED_MIN
    fig = heatmap(
        z,
        x_tokens=tokens,
        x_title="token",
        y_title="neuron",
        diverging=signed,
        zmin=None if signed else min(lo, 0.0),
        zmax=None if signed else max(hi, 1e-6),
        projector=projector,
        title=f"Layer {layer} feed-forward activations: {shown} {acts.shape[1]} neurons",
        hovertemplate="neuron %{y}<br>position %{x}<br>activation %{z:.3f}<extra></extra>",
    )
    names = [str(i) for i in ids]
    fig.data[0].y = names
    step = max(1, int(np.ceil(len(ids) / 40)))
    fig.update_yaxes(type="category", tickmode="array", tickvals=names[::step], ticktext=names[::step])
    fig.update_layout(height=max(360, min(900, 14 * len(ids) + 160)))
    fig.data[0].colorbar = {"title": {"text": "activation"}}
    return fig


def top_neurons_bar(
    acts: np.ndarray, pos: int, tokens: Sequence[str], layer: int, k: int = 15, *, projector: bool = False
) -> go.Figure:
    """The ``k`` neurons of one layer that fire most strongly on the token at ``pos``."""
    row = np.asarray(acts, dtype=np.float32)[pos]
    ids = np.argsort(-row, kind="stable")[: min(k, row.size)][::-1]
    names = [f"L{layer} n{i}" for i in ids]  # not "0.77": that reads as a number
    fig = go.Figure(
        go.Bar(
            x=row[ids],
            y=names,
            orientation="h",
            marker_color=QUALITATIVE[0],
            customdata=[f"layer {layer}, neuron {i}" for i in ids],
            hovertemplate="%{customdata}<br>activation %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title={"text": f"Most active layer-{layer} neurons on token {pos} ({label(tokens[pos])})"},
        xaxis_title="activation",
        yaxis_title="neuron",
        height=max(300, 24 * len(ids) + 120),
    )
    fig.update_yaxes(type="category")
    return style(fig, projector=projector)


def _act(name: str, x: np.ndarray) -> np.ndarray:
    """The model's non-linearity in numpy (``gptviz.model.activation``'s formulas)."""
    x = np.asarray(x, dtype=np.float64)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "gelu_new":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    import math

    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))  # exact GELU


def gated_neurons_bar(
    gate: np.ndarray,
    up: np.ndarray,
    post: np.ndarray,
    pos: int,
    tokens: Sequence[str],
    layer: int,
    act: str = "silu",
    k: int = 12,
    *,
    projector: bool = False,
) -> go.Figure:
    """A gated feed-forward network (SwiGLU) at one token, neuron by neuron: the gate after its
    non-linearity, the linear "up" value, and their product (``hook_post``, what "down" reads),
    for the ``k`` neurons whose product is largest in size. A gate near 0 shuts its neuron
    whatever "up" says; a negative "up" with an open gate gives a negative product."""
    g = _act(act, np.asarray(gate, dtype=np.float32)[pos])
    u = np.asarray(up, dtype=np.float64)[pos]
    p = np.asarray(post, dtype=np.float64)[pos]
    ids = np.argsort(-np.abs(p), kind="stable")[: min(k, p.size)]
    names = [f"n{i}" for i in ids]
    act_name = {"silu": "SiLU", "relu": "ReLU"}.get(act, "GELU")
    fig = grouped_bars(
        [
            Bars(f"gate: {act_name}(gate·x)", g[ids], QUALITATIVE[1], f"{act_name}(gate) %{{y:.3f}}"),
            Bars("up·x", u[ids], QUALITATIVE[0], "up %{y:.3f}"),
            Bars("product (to down)", p[ids], QUALITATIVE[5], "product %{y:.3f}"),
        ],
        names,
    )
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(names))), ticktext=names, title={"text": "neuron"})
    fig.update_layout(
        title={
            "text": f"Layer {layer}, token {pos} ({label(tokens[pos])}): gate × up for its {len(ids)} strongest neurons"
        },
        barmode="group",
        yaxis_title="value",
        legend={"orientation": "h", "y": -0.2},
    )
    return style(fig, projector=projector)


def _stage_heatmap(z: np.ndarray, rows: Sequence[str], tokens: Sequence[str], value: str, **kw) -> go.Figure:
    """A heatmap with one row per residual stage (named) and one column per token; both axes are
    categories, so the hover names the stage and the token without per-cell strings."""
    fig = heatmap(
        z,
        x_tokens=tokens,
        x_title="token",
        hovertemplate="%{y}<br>position %{x}<br>" + value + "<extra></extra>",
        **kw,
    )
    names = [esc(r) for r in rows]
    fig.data[0].y = names
    fig.update_yaxes(type="category", tickmode="array", tickvals=names, ticktext=names, title="")
    fig.update_layout(height=max(300, 34 * len(rows) + 160))
    return fig


def residual_norms(trace: Trace) -> np.ndarray:
    """‖residual‖ at every stage and position, ``[n_layer + 1, T]``."""
    return np.linalg.norm(residual_stack(trace), axis=-1)


def residual_norm_heatmap(trace: Trace, *, projector: bool = False) -> go.Figure:
    """Length of the residual stream vector at every stage (rows) and token (columns)."""
    return _stage_heatmap(
        residual_norms(trace),
        stage_labels(trace.config.n_layer),
        trace.tokens,
        "‖residual‖ %{z:.2f}",
        title="Residual stream length (L2 norm) through the layers",
        projector=projector,
    )


def sublayer_norms(trace: Trace, pos: int | None = None, *, projector: bool = False) -> go.Figure:
    """Length of what attention and the feed-forward network add at each layer, next to the
    length of the stream they add it to (averaged over tokens, or at token ``pos``)."""
    L = trace.config.n_layer

    def norm(name: str) -> np.ndarray:
        n = np.linalg.norm(trace[name], axis=-1)
        return n if pos is None else n[[pos]]

    series = [
        ("residual stream entering the layer", "resid_pre", QUALITATIVE[7]),
        ("attention adds", "attn_out", QUALITATIVE[0]),
        ("feed-forward adds", "mlp_out", QUALITATIVE[1]),
    ]
    x = [f"layer {i}" for i in range(L)]
    fig = go.Figure()
    for name, hook, colour in series:
        vals = [norm(hook_name(hook, i)) for i in range(L)]
        fig.add_trace(
            go.Bar(
                x=x,
                y=[v.mean() for v in vals],
                error_y={"type": "data", "array": [v.std() for v in vals], "visible": pos is None},
                name=name,
                marker_color=colour,
                hovertemplate=f"%{{x}}<br>{name}: %{{y:.2f}}<extra></extra>",
            )
        )
    where = "averaged over all tokens (bars: ± one standard deviation)" if pos is None else f"token {pos}"
    fig.update_layout(title={"text": f"What each sub-layer adds, {where}"}, barmode="group", yaxis_title="L2 norm")
    return style(fig, projector=projector)


def layernorm_figure(view: LayerNormView, token: str, *, projector: bool = False) -> go.Figure:
    """One LayerNorm at one token: input, normalized, learned scale and shift, output (by dimension).

    An RMSNorm (``view.kind == "rmsnorm"``) has no mean subtracted and no shift: its panels say
    so (divided by the root mean square, scale only) instead of drawing a zero line for β."""
    dims = np.arange(view.x.size)
    if view.kind == "rmsnorm":
        rms = float(np.sqrt((view.x**2).mean()))
        panels = [
            (
                f"input x (mean {view.x.mean():.3f}: not subtracted; root mean square {rms:.3f})",
                [("x", view.x, QUALITATIVE[7])],
            ),
            ("normalized: x / rms (same direction as x, rms 1)", [("x / rms", view.normalized, QUALITATIVE[2])]),
            ("learned scale (weight γ); RMSNorm has no shift", [("scale γ", view.weight, QUALITATIVE[0])]),
            ("output = normalized × γ", [("output", view.output, QUALITATIVE[5])]),
        ]
    else:
        panels = [
            (f"input x (mean {view.mean:.3f}, std {view.std:.3f})", [("x", view.x, QUALITATIVE[7])]),
            ("normalized: (x − mean) / std", [("(x − mean) / std", view.normalized, QUALITATIVE[2])]),
            (
                "learned scale (weight γ) and shift (bias β)",
                [("scale γ", view.weight, QUALITATIVE[0]), ("shift β", view.bias, QUALITATIVE[1])],
            ),
            ("output = normalized × γ + β", [("output", view.output, QUALITATIVE[5])]),
        ]
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06, subplot_titles=[p[0] for p in panels]
    )
    for r, (_, lines) in enumerate(panels, start=1):
        for name, y, colour in lines:
            fig.add_trace(
                go.Scatter(
                    x=dims,
                    y=y,
                    mode="lines" if y.size > 64 else "lines+markers",
                    name=name,
                    line={"color": colour, "width": 1.5},
                    hovertemplate=f"dimension %{{x}}<br>{name}: %{{y:.4f}}<extra></extra>",
                ),
                row=r,
                col=1,
            )
    fig.update_xaxes(title_text="dimension", row=len(panels), col=1)
    fig.update_layout(
        title={"text": f"{view.label} {esc(view.name)} on token {view.pos} ({label(token)})"},
        height=760,
        legend={"orientation": "h", "y": -0.08},
    )
    return style(fig, projector=projector)


def logit_lens_heatmap(lens: LogitLens, tokens: Sequence[str], *, projector: bool = False) -> go.Figure:
    """Probability of the top next-token guess at every stage and position, the guess as text.

    The guesses are written in the cells (up to ``MAX_CELL_TEXT_TOKENS`` positions) as a text
    layer on top, cut to what fits a cell (at most ``CELL_TEXT_CHARS`` characters), dark on light
    cells and white on dark ones; hover shows the whole token. ``tokens``: the whole prompt's;
    a lens of a window of positions (``lens.first``...) draws those columns, numbered as in the
    prompt."""
    rows, T = lens.top_probs.shape
    fig = _stage_heatmap(
        lens.top_probs,
        lens.labels,
        list(tokens)[lens.first : lens.first + T],
        "top guess %{text}: p = %{z:.3f}",
        zmin=0.0,
        zmax=1.0,
        title="Logit lens: the most likely next token if the model stopped after each layer",
        projector=projector,
        x_first=lens.first,
    )
    fig.data[0].text = np.asarray([[label(s) for s in row] for row in lens.top_tokens], dtype=object)
    fig.data[0].colorbar = {"title": {"text": "p"}}
    if T <= MAX_CELL_TEXT_TOKENS:
        size = 16 if projector else 11
        chars = int(np.clip(CELL_TEXT_WIDTH_PX / T / (0.62 * size), 2, CELL_TEXT_CHARS))  # ~0.62 em per character
        r, c = np.meshgrid(np.arange(rows), np.arange(T), indexing="ij")
        probs = np.asarray(lens.top_probs, dtype=np.float64).ravel()
        fig.add_trace(
            go.Scatter(
                x=np.asarray(fig.data[0].x, dtype=object)[c.ravel()],  # the heatmap's categories
                y=np.asarray(fig.data[0].y, dtype=object)[r.ravel()],
                mode="text",
                text=[_cell_text(s, chars) for row in lens.top_tokens for s in row],
                textfont={
                    "size": size,
                    "color": ["#111111" if p >= 0.55 else "#ffffff" for p in probs],  # Viridis/Cividis: light at top
                },
                hoverinfo="skip",  # the heatmap below names the whole token
                showlegend=False,
            )
        )
    return fig


def _cell_text(token: str, chars: int = CELL_TEXT_CHARS) -> str:
    """A token cut to ``chars`` characters (the last one "…" when cut), whitespace visible, escaped."""
    shown = visible(token)
    return esc(shown[: chars - 1] + "…" if len(shown) > chars else shown)


def logit_attribution(attr: Attribution, token: str, *, projector: bool = False) -> go.Figure:
    """Waterfall: each component's push on the target token's logit, then the bias, = the logit."""
    names = [*attr.labels, attr.bias_label, "= logit"]
    values = [*attr.values.tolist(), attr.bias, attr.total]
    fig = go.Figure(
        go.Waterfall(
            x=names,
            y=values,
            measure=["relative"] * (len(names) - 1) + ["total"],
            increasing={"marker": {"color": "#B2182B"}},
            decreasing={"marker": {"color": "#2166AC"}},
            totals={"marker": {"color": QUALITATIVE[7]}},
            connector={"line": {"color": "#999999", "width": 1}},
            hovertemplate="%{x}<br>contribution %{y:+.3f}<extra></extra>",
        )
    )
    kind = "exact" if attr.exact else "approximate"
    fig.update_layout(
        title={"text": f"Direct logit attribution ({kind}) for {label(token)} after token {attr.pos}"},
        yaxis_title="logit contribution",
        xaxis_title="component",
        showlegend=False,
    )
    fig.update_xaxes(type="category")
    return style(fig, projector=projector)
