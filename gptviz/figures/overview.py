"""The whole GPT at a glance: tokens as columns, stages as rows, top to bottom.

One chart for one query token (see ``analysis.overview``): its token and id, the embedding row,
one row per layer with the attention links that bring information from earlier columns into the
query's column (from one head per layer, its width the weight), the residual stream's size at
every token (the dots' area), what attention and the feed-forward network add there (the right
column), the final norm, and the likeliest next tokens. On the left, every head of every layer
as a square coloured by how strongly it links the query to one earlier token: the one drawn is
outlined. Every number is on hover, and every point names a stage in its ``customdata`` so a
click can open that stage's page (``target``).

Why rows for stages and columns for tokens: the columns are what a student knows (their own
words), each row reads as "one step later", and a layer's attention is then a set of lines
falling into one column, which is what "the token reads earlier tokens" means.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from gptviz.analysis.overview import Overview, window
from gptviz.figures._base import QUALITATIVE, SEQUENTIAL, SEQUENTIAL_PROJECTOR, label, style

LINK = "#0072B2"
QUERY = QUALITATIVE[1]  # orange: the selected token's column
QUERY_TEXT = "#B35C00"  # the selected token's label: a darker orange, readable on white
NEW = "rgba(230, 159, 0, 0.16)"  # the column a cached generation step computes
GREY = "#555555"
# Link widths by weight class: more classes cost a trace each; four read as "weak … strong".
CLASSES = ((0.02, 1.5, 0.35), (0.1, 3.0, 0.5), (0.25, 5.5, 0.7), (0.5, 9.0, 0.9))  # (from weight, px, alpha)


def _short(token: str, n: int) -> str:
    """A token as a column label, at most ``n`` characters (hover shows it whole)."""
    shown = label(token) if len(token) <= n else label(token[: n - 1]) + "…"
    return shown


def _curve(x0: float, y0: float, x1: float, y1: float, n: int = 9) -> tuple[list[float], list[float]]:
    """A cubic Bézier from (x0, y0) down to (x1, y1), leaving and arriving vertically."""
    t = np.linspace(0.0, 1.0, n)
    dy = y1 - y0
    xs = (1 - t) ** 3 * x0 + 3 * (1 - t) ** 2 * t * x0 + 3 * (1 - t) * t**2 * x1 + t**3 * x1
    ys = (1 - t) ** 3 * y0 + 3 * (1 - t) ** 2 * t * (y0 + 0.6 * dy) + 3 * (1 - t) * t**2 * (y1 - 0.6 * dy) + t**3 * y1
    return xs.round(3).tolist(), ys.round(3).tolist()


def _percent(p: float) -> str:
    """12.3%, or 0.002% for the tiny odds of a random model (never a misleading 0.0%)."""
    return f"{p:.1%}" if p >= 0.001 or p == 0 else f"{p * 100:.1g}%"


def columns(*, projector: bool = False) -> int:
    """How many token columns the overview shows (labels stay readable at 1280 px wide)."""
    return 6 if projector else 8


def target(point: dict) -> tuple[str, dict[str, int]] | None:
    """The stage a click on the overview chose: ``("attention", {"layer": 2, "head": 1})``,
    ``("tokens", {"pos": 3})``… (from the point's ``customdata``), or None."""
    cd = point.get("customdata")
    if not isinstance(cd, list | tuple) or not cd or not isinstance(cd[0], str):
        return None
    stage, *rest = cd
    keys = {"attention": ("layer", "head"), "layer": ("layer", "pos"), "tokens": ("pos",), "embedding": ("pos",)}
    names = keys.get(stage, ("pos",))
    return str(stage), {k: int(v) for k, v in zip(names, rest, strict=False) if v is not None}


def overview_figure(
    ov: Overview,
    *,
    projector: bool = False,
    width: int | None = None,
    new_tokens: int = 0,
    title: str | None = None,
) -> go.Figure:
    """The overview chart of ``ov`` (a pure function: use it in a notebook as on the page).

    ``width``: token columns shown (default ``columns()``); ``new_tokens``: how many of the last
    tokens were generated: the newest column is shaded (a cached step computes only it) and the
    earlier columns' dots are hollow (their keys and values are read from the KV cache)."""
    L, H, q, T = len(ov.layers), ov.n_head, ov.query, ov.n_tokens
    cols = window(T, q, width or columns(projector=projector))
    start, stop, W = cols.start, cols.stop, width or columns(projector=projector)
    fs = 18 if projector else 14
    nchar = 5 if projector else 6  # characters per column label (hover shows the whole token)
    font = {"size": fs}
    # Rows, top to bottom (y grows downwards: the axis is reversed)
    names = ["token", "id", "embedding + position" if ov.pos_norm is not None else "embedding (rotary)"]
    names += [f"layer {lv.layer}" for lv in ov.layers]
    if ov.final_norm:
        names.append(f"final {ov.final_norm}")
    names += ["next token", "probability"]
    Y = {n: i for i, n in enumerate(names)}
    y_emb, y_final = 2, (3 + L if ov.final_norm else None)
    y_next, y_prob = len(names) - 2, len(names) - 1
    xs = list(cols)
    tokens = ov.tokens
    traces: list[dict] = []
    xt = {"xaxis": "x", "yaxis": "y"}

    def text_row(y: float, texts: list[str], x: list[float], hover: list[str], custom: list, color: object = "#111111"):
        traces.append(
            {
                "type": "scatter", **xt, "x": x, "y": [y] * len(x), "mode": "text", "text": texts,
                "textfont": {**font, "color": color}, "hovertext": hover, "hovertemplate": "%{hovertext}<extra></extra>",
                "customdata": custom, "showlegend": False, "cliponaxis": False,
            }
        )  # fmt: skip

    # --- tokens and ids ------------------------------------------------------------------------
    tok_hover = [f"token {i}: “{label(tokens[i])}” (id {int(ov.ids[i])})" for i in xs]
    text_row(
        Y["token"],
        [_short(tokens[i], nchar) for i in xs],
        xs,
        tok_hover,
        [["tokens", i] for i in xs],
        [QUERY_TEXT if i == q else "#111111" for i in xs],
    )
    text_row(Y["id"], [str(int(ov.ids[i])) for i in xs], xs, tok_hover, [["tokens", i] for i in xs], GREY)
    if start > 0:
        text_row(
            Y["token"],
            ["…"],
            [start - 0.75],
            [f"tokens 0–{start - 1} are left of the window; their attention is summed in the “…” link"],
            [["tokens", 0]],
            GREY,
        )

    # --- embedding row -------------------------------------------------------------------------
    emb_hover = []
    for i in xs:
        pos = (
            f"<br>+ position vector |p| = {ov.pos_norm[i]:.3g}"
            if ov.pos_norm is not None
            else "<br>no position vector: positions rotate q and k inside every attention layer (rotary)"
        )
        emb_hover.append(f"token {i} “{label(tokens[i])}”<br>embedding |e| = {ov.embed_norm[i]:.3g}{pos}")
    traces.append(
        {
            "type": "scatter", **xt, "x": xs, "y": [y_emb] * len(xs), "mode": "markers",
            "marker": {"size": 14, "symbol": "square", "color": [QUERY if i == q else "#999999" for i in xs]},
            "hovertext": emb_hover, "hovertemplate": "%{hovertext}<extra></extra>",
            "customdata": [["embedding", i] for i in xs], "showlegend": False,
        }
    )  # fmt: skip

    # --- attention links into the query column, one head per layer -----------------------------
    seg = {c: ([], []) for c in range(len(CLASSES))}
    link_x, link_y, link_cd, link_hover = [], [], [], []
    for lv in ov.layers:
        y1 = Y[f"layer {lv.layer}"]
        y0 = y1 - 1  # the previous stage (layer 0 reads the embedding row)
        keys = [(k, float(lv.weights[k])) for k in xs if k <= q]
        if start > 0:
            keys.append((-1, float(lv.weights[:start].sum())))
        for k, w in keys:
            x0 = start - 0.75 if k < 0 else k
            cls = max((c for c, (lo, _, _) in enumerate(CLASSES) if w >= lo), default=None)
            if cls is not None:
                cx, cy = _curve(x0, y0, q, y1)
                seg[cls][0].extend([*cx, None])
                seg[cls][1].extend([*cy, None])
            mx, my = (x0 + q) / 2, y0 + 0.5
            link_x.append(mx)
            link_y.append(my)
            link_cd.append(["attention", lv.layer, lv.head, k, round(w, 6)])
            who = f"tokens 0–{start - 1}" if k < 0 else f"token {k} “{label(tokens[k])}”"
            how = "chosen" if lv.chosen else "strongest"
            link_hover.append(
                f"layer {lv.layer}, head {lv.head} ({how})<br>token {q} “{label(tokens[q])}” reads {who}"
                f"<br>attention weight {w:.4f}<br>click: open this head"
            )
    for c, (lo, px, alpha) in enumerate(CLASSES):
        if seg[c][0]:
            traces.append(
                {
                    "type": "scatter", **xt, "x": seg[c][0], "y": seg[c][1], "mode": "lines",
                    "line": {"width": px, "color": f"rgba(0, 114, 178, {alpha})", "shape": "linear"},
                    "hoverinfo": "skip", "showlegend": False, "name": f"links ≥ {lo}",
                }
            )  # fmt: skip
    traces.append(
        {
            "type": "scatter", **xt, "x": link_x, "y": link_y, "mode": "markers", "name": "links",
            "marker": {"size": 10, "color": "rgba(0, 114, 178, 0.01)"}, "customdata": link_cd,
            "hovertext": link_hover, "hovertemplate": "%{hovertext}<extra></extra>", "showlegend": False,
        }
    )  # fmt: skip

    # --- the residual stream: one dot per token per layer, its area the stream's size ----------
    big = max(float(max(lv.resid_post[xs].max() for lv in ov.layers)), 1e-9)
    rx, ry, rsize, rcolor, rline, rcd, rhover = [], [], [], [], [], [], []
    newest = T - 1 if new_tokens > 0 else None
    for lv in ov.layers:
        for i in xs:
            rx.append(i)
            ry.append(Y[f"layer {lv.layer}"])
            rsize.append(round(7 + 19 * float(np.sqrt(lv.resid_post[i] / big)), 2))
            cached = newest is not None and i != newest
            colour = QUERY if i == q else "#7F7F7F"
            rcolor.append("white" if cached else colour)
            rline.append(colour)
            rcd.append(["layer", lv.layer, i])
            note = "<br>its keys and values are read from the KV cache" if cached else ""
            rhover.append(
                f"layer {lv.layer}, token {i} “{label(tokens[i])}”<br>residual stream |x| in {lv.resid_pre[i]:.3g}"
                f"<br>+ attention adds |a| = {lv.attn_add[i]:.3g}<br>+ feed-forward adds |f| = {lv.ffn_add[i]:.3g}"
                f"<br>residual stream |x| out {lv.resid_post[i]:.3g} (of {ov.d_model} numbers){note}"
            )
    traces.append(
        {
            "type": "scatter", **xt, "x": rx, "y": ry, "mode": "markers", "name": "residual",
            "marker": {"size": rsize, "color": rcolor, "line": {"color": rline, "width": 2}},
            "customdata": rcd, "hovertext": rhover, "hovertemplate": "%{hovertext}<extra></extra>", "showlegend": False,
        }
    )  # fmt: skip

    # --- final norm, then the next-token probabilities ------------------------------------------
    if y_final is not None:
        traces.append(
            {
                "type": "scatter", **xt, "x": xs, "y": [y_final] * len(xs), "mode": "markers",
                "marker": {"size": 12, "symbol": "diamond", "color": [QUERY if i == q else "#999999" for i in xs]},
                "hovertext": [
                    f"token {i}: the final {ov.final_norm} divides by {ov.final_scale[i]:.3g}"
                    if ov.final_scale is not None else f"token {i}: final {ov.final_norm}"
                    for i in xs
                ],
                "hovertemplate": "%{hovertext}<extra></extra>", "customdata": [["output", i] for i in xs],
                "showlegend": False,
            }
        )  # fmt: skip
    k = len(ov.top_ids)
    nx = np.linspace(start - 1.1, start + W - 0.5, 2 * k + 1)[1::2] if k else np.array([])  # k equal slots
    nx = nx.round(3).tolist()
    y_from = y_final if y_final is not None else y_next - 1
    for x1, p in zip(nx, ov.top_probs, strict=True):
        cx, cy = _curve(q, y_from, x1, y_next - 0.45)
        traces.append(
            {
                "type": "scatter", **xt, "x": cx, "y": cy, "mode": "lines", "hoverinfo": "skip", "showlegend": False,
                "line": {"width": round(1 + 8 * float(p), 2), "color": "rgba(230, 159, 0, 0.7)"},
            }
        )  # fmt: skip
    next_hover = [
        f"after token {q}: next token “{label(t)}” (id {int(i)}) with probability {float(p):.4f}"
        for t, i, p in zip(ov.top_tokens, ov.top_ids, ov.top_probs, strict=True)
    ]
    text_row(y_next, [_short(t, nchar) for t in ov.top_tokens], nx, next_hover, [["output", q]] * k)
    text_row(y_prob, [_percent(float(p)) for p in ov.top_probs], nx, next_hover, [["output", q]] * k, GREY)
    traces.append(  # the exact probabilities, for a reader of the figure's data (and the tests)
        {
            "type": "scatter", **xt, "x": nx, "y": [y_next - 0.45] * k, "mode": "markers", "name": "next",
            "marker": {"size": [round(6 + 14 * float(np.sqrt(p)), 2) for p in ov.top_probs], "color": QUERY},
            "customdata": [["output", q, int(i), float(p)] for i, p in zip(ov.top_ids, ov.top_probs, strict=True)],
            "hovertext": next_hover, "hovertemplate": "%{hovertext}<extra></extra>", "showlegend": False,
        }
    )  # fmt: skip

    # --- heads (left): every head, coloured by its strongest link; the one drawn outlined --------
    hx, hy, hc, hline, hcd, hhover = [], [], [], [], [], []
    for lv in ov.layers:
        for h in range(H):
            hx.append(h)
            hy.append(Y[f"layer {lv.layer}"])
            hc.append(round(float(lv.strength[h]), 4))
            hline.append(3 if h == lv.head else 0)
            hcd.append(["attention", lv.layer, h])
            drawn = " (drawn)" if h == lv.head else ""
            hhover.append(
                f"layer {lv.layer}, head {h}{drawn}<br>heaviest link from token {q}: {lv.strength[h]:.3f}"
                "<br>click: open this head"
            )
    side = max(5, min(16, int(100 / (H + 0.4))))  # squares ~80% of their slot in a ~120 px column
    traces.append(
        {
            "type": "scatter", "xaxis": "x2", "yaxis": "y", "x": hx, "y": hy, "mode": "markers", "name": "heads",
            "marker": {
                "symbol": "square", "size": side, "color": hc, "cmin": 0, "cmax": 1,
                "colorscale": SEQUENTIAL_PROJECTOR if projector else SEQUENTIAL,
                "line": {"width": hline, "color": QUALITATIVE[5]},
            },
            "customdata": hcd, "hovertext": hhover, "hovertemplate": "%{hovertext}<extra></extra>", "showlegend": False,
        }
    )  # fmt: skip
    traces.append(
        {
            "type": "scatter", "xaxis": "x2", "yaxis": "y", "x": [(H - 1) / 2], "y": [Y["id"]], "mode": "text",
            "text": ["heads"], "textfont": {**font, "color": GREY}, "hoverinfo": "skip", "showlegend": False,
        }
    )  # fmt: skip

    # --- what attention and the feed-forward add at the query (right) ---------------------------
    def fmt(v: float) -> str:
        """At most 4 characters: +12, +3.1, +.59 (the exact value is on hover)."""
        if v >= 9.95:
            return f"+{v:.0f}"
        return f"+{v:.1f}" if v >= 0.995 else "+" + f"{v:.2f}".removeprefix("0")

    ay = [Y[f"layer {lv.layer}"] for lv in ov.layers]
    add_hover = [
        f"layer {lv.layer}, token {q}: attention adds a vector of length {lv.attn_add[q]:.4g}, the feed-forward "
        f"network one of {lv.ffn_add[q]:.4g}; the residual stream is then {lv.resid_post[q]:.4g} long"
        for lv in ov.layers
    ]
    for x, head, vals in (
        (0, "attn", [lv.attn_add[q] for lv in ov.layers]),
        (1, "FFN", [lv.ffn_add[q] for lv in ov.layers]),
    ):
        traces.append(
            {
                "type": "scatter", "xaxis": "x3", "yaxis": "y", "x": [x] * (L + 1), "y": [Y["id"], *ay],
                "mode": "text", "text": [head, *(fmt(float(v)) for v in vals)],
                "textfont": {**font, "color": [GREY] + ["#111111"] * L},
                "hovertext": ["what each layer adds to the residual stream at the selected token", *add_hover],
                "hovertemplate": "%{hovertext}<extra></extra>",
                "customdata": [["layer", 0, q]] + [["layer", lv.layer, q] for lv in ov.layers], "showlegend": False,
            }
        )  # fmt: skip

    # --- layout --------------------------------------------------------------------------------
    pitch = 48 if projector else 34
    shapes = []
    if newest is not None and start <= newest < stop:
        shapes.append(
            {
                "type": "rect", "xref": "x", "yref": "y", "x0": newest - 0.45, "x1": newest + 0.45,
                "y0": -0.5, "y1": (y_final if y_final is not None else y_next - 1) + 0.5,
                "fillcolor": NEW, "line": {"width": 0}, "layer": "below",
            }
        )  # fmt: skip
    if title is None:
        where = (
            "positions: a vector added to each embedding"
            if ov.pos_norm is not None
            else "positions: q and k rotated inside attention (rotary)"
        )
        if newest is not None:
            where = "shaded: computed now; hollow: K, V from the cache"
        title = f"Token {q} “{_short(tokens[q], 10)}” through the whole GPT"
    else:
        where = ""
    axis = {"showgrid": False, "zeroline": False, "showticklabels": False, "fixedrange": True, "showline": False}
    layout = style(go.Figure(), projector=projector).layout.to_plotly_json()
    layout.update(
        title={
            "text": title, "font": {"size": fs + 4}, "x": 0.01, "xanchor": "left",
            "subtitle": {"text": where, "font": {"size": fs, "color": GREY}},
        },
        xaxis={**axis, "domain": [0.19, 0.8], "range": [start - 1.1, start + W - 0.5]},
        xaxis2={**axis, "domain": [0.0, 0.16], "range": [-1.1, H - 0.3], "anchor": "y"},  # a gap after the labels
        xaxis3={**axis, "domain": [0.82, 1.0], "range": [-0.6, 1.6], "anchor": "y"},
        yaxis={
            **axis, "showticklabels": True, "tickmode": "array", "anchor": "x2", "tickvals": list(range(len(names))),
            "ticktext": names, "range": [len(names) - 0.4, -0.6], "tickfont": {"size": fs}, "automargin": True,
        },
        shapes=shapes,
        hovermode="closest",
        height=int(100 + pitch * len(names)),
        margin={"l": 10, "r": 10, "t": 80 if projector else 64, "b": 10},
        showlegend=False,
    )  # fmt: skip
    return go.Figure(data=traces, layout=layout, _validate=False)


def generation_attention(
    weights: np.ndarray,
    tokens: list[str] | tuple[str, ...],
    n_generated: int,
    layer: int,
    head: int | None,
    *,
    projector: bool = False,
) -> go.Figure:
    """The attention of each generated token over everything before it, as a timeline: one row
    per generated token (top: the first), one column per token of prompt + continuation, ``weights``
    ``[n_generated, T]`` from ``analysis.overview.generated_attention``. Prompt and continuation are
    split by a line; hover names both tokens."""
    from gptviz.figures._base import heatmap

    T = len(tokens)
    n = int(n_generated)
    rows = list(tokens[T - n :])
    which = f"head {head}" if head is not None else "mean of the heads"
    z = np.asarray(weights, dtype=np.float32).copy()
    for r in range(n):  # a token cannot read what comes after it: leave those cells empty
        z[r, T - n + r + 1 :] = np.nan
    fig = heatmap(
        z,
        x_tokens=list(tokens),
        y_tokens=rows,
        x_title="read (prompt, then continuation)",
        y_title="generated token",
        title=f"What each generated token read · layer {layer}, {which}",
        hover="attention weight",
        zmin=0.0,
        zmax=float(np.nanmax(z)) if np.isfinite(z).any() else 1.0,
        projector=projector,
        height=int(180 + (34 if projector else 26) * max(n, 3)),
    )
    cats = [f"{T - n + r}: {label(t)}" for r, t in enumerate(rows)]  # true positions, not 0..n-1
    fig.data[0].y = cats
    fig.update_yaxes(tickvals=cats, ticktext=cats)
    x_split = T - n - 0.5
    fig.add_shape(type="line", x0=x_split, x1=x_split, y0=-0.5, y1=n - 0.5, line={"color": QUERY, "width": 3})
    fig.update_yaxes(title={"text": ""})
    return fig
