"""Stage 5 — output: next-token probabilities, sampling settings, generation, repeated draws.

Token bars run top to bottom, most likely first; the y axis is the rank with the (escaped)
token text as tick label, so two tokens that print alike never merge into one bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go

from gptviz.figures._base import QUALITATIVE, SEQUENTIAL, Bars, grouped_bars, label, style
from gptviz.trace import Trace

FADED = "rgba(0, 114, 178, 0.28)"  # QUALITATIVE[0], faded: the model's own distribution
CUT = QUALITATIVE[5]  # vermillion


def _rank_axis(tokens: Sequence[str], title: str = "token") -> dict:
    n = len(tokens)
    return {
        "title": {"text": title},
        "tickmode": "array",
        "tickvals": list(range(n)),
        "ticktext": [label(t) for t in tokens],
        "range": [n - 0.5, -0.5],
    }


def _height(n: int) -> int:
    return max(320, 24 * n + 140)


def next_token_distribution(
    tokens: Sequence[str],
    probs: np.ndarray,
    logits: np.ndarray,
    ids: Sequence[int],
    context: str = "",
    *,
    projector: bool = False,
) -> go.Figure:
    """The most likely next tokens as bars of probability; hover shows the id and the logit.

    ``tokens``/``probs``/``logits``/``ids`` describe the shown tokens only, most likely first;
    ``context`` is the token the prediction follows (for the title).
    """
    probs = np.asarray(probs, dtype=np.float64)
    names = [label(t) for t in tokens]
    custom = [[n, int(i), float(z)] for n, i, z in zip(names, ids, logits, strict=True)]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=list(range(len(tokens))),
            orientation="h",
            marker_color=QUALITATIVE[0],
            text=[f"{p:.1%}" for p in probs],
            textposition="outside",
            cliponaxis=False,  # a label past the axis end (p near 1) is drawn in the right margin
            customdata=custom,
            hovertemplate="%{customdata[0]} (id %{customdata[1]})<br>probability %{x:.4f}"
            "<br>logit %{customdata[2]:.3f}<extra></extra>",
            name="probability",
        )
    )
    after = f" after {label(context)}" if context else ""
    fig.update_layout(
        title={"text": f"Top {len(tokens)} next tokens{after} ({probs.sum():.0%} of the probability)"},
        xaxis={"title": {"text": "probability"}, "range": [0, min(1.0, float(probs.max(initial=0)) * 1.2 + 0.02)]},
        yaxis=_rank_axis(tokens),
        height=_height(len(tokens)),
        showlegend=False,
    )
    return style(fig, projector=projector).update_layout(margin_r=90 if projector else 70)  # room for "97.3%"


def reshaped_distribution(
    tokens: Sequence[str],
    original: np.ndarray,
    reshaped: np.ndarray,
    kept: np.ndarray,
    settings: str = "",
    *,
    projector: bool = False,
) -> go.Figure:
    """The model's probabilities (faded) and the ones sampling uses (solid); cut tokens marked ✕."""
    original = np.asarray(original, dtype=np.float64)
    reshaped = np.asarray(reshaped, dtype=np.float64)
    kept = np.asarray(kept, dtype=bool)
    names = [label(t) for t in tokens]
    fig = grouped_bars(
        [
            Bars("model (temperature 1, nothing cut)", original, FADED, "model probability %{x:.4f}"),
            Bars("used for sampling", reshaped, QUALITATIVE[0], "sampling probability %{x:.4f}"),
        ],
        names,
        horizontal=True,
    )
    cut = np.flatnonzero(~kept)
    if len(cut):
        fig.add_trace(
            go.Scatter(
                x=np.zeros(len(cut)),
                y=cut,
                mode="markers",
                name="cut (probability 0)",
                marker={"symbol": "x", "size": 11, "color": CUT},
                customdata=[names[i] for i in cut],
                hovertemplate="%{customdata}<br>cut by top-k / top-p<extra></extra>",
            )
        )
    top = float(max(original.max(initial=0), reshaped.max(initial=0)))
    fig.update_layout(
        title={"text": f"Reshaped distribution{': ' + settings if settings else ''}"},
        barmode="group",
        bargap=0.25,
        xaxis={"title": {"text": "probability"}, "range": [-0.02, min(1.05, top * 1.1 + 0.02)]},
        yaxis=_rank_axis(tokens),
        height=_height(len(tokens)) + 60,
        legend={"orientation": "h", "y": -0.15},
    )
    return style(fig, projector=projector)


def generation_timeline(
    steps: Sequence[Sequence[tuple[str, float, bool, int]]], *, projector: bool = False, max_steps: int = 30
) -> go.Figure:
    """One column per generated token: its top candidates by probability (rank 1 at the top),
    coloured by the model's probability, the chosen token boxed. Only the last ``max_steps``.

    ``steps[s]`` is ``[(token, probability, is_chosen, rank), ...]``, most likely first; a
    chosen token outside the top candidates comes last (a "lower" row, its true rank on hover).
    """
    first = max(0, len(steps) - max_steps) + 1  # steps are numbered from 1
    steps = steps[first - 1 :]
    n_steps = len(steps)
    xs = list(range(first, first + n_steps))
    rows = max((len(s) for s in steps), default=1)
    z = np.full((rows, n_steps), np.nan)
    text = np.full((rows, n_steps), "", dtype=object)
    ranks = np.full((rows, n_steps), "", dtype=object)
    exact = [True] * rows  # row r holds rank r + 1 in every step (else: "lower")
    chosen_x, chosen_y, chosen_names = [], [], []
    for s, cands in enumerate(steps):
        for r, (tok, p, is_chosen, rank) in enumerate(cands):
            z[r, s], text[r, s], ranks[r, s] = p, label(tok), f"{rank:,}"
            exact[r] = exact[r] and rank == r + 1
            if is_chosen:
                chosen_x.append(first + s)
                chosen_y.append(r)
                chosen_names.append(label(tok))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=list(range(rows)),
            text=text,
            texttemplate="%{text}",
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "probability"}},
            xgap=2,
            ygap=2,
            customdata=ranks,
            hovertemplate="step %{x}, rank %{customdata}<br>%{text}<br>probability %{z:.4f}<extra></extra>",
            hoverongaps=False,
        )
    )
    shown = f"; the last {n_steps} of {first - 1 + n_steps}" if first > 1 else ""
    fig.add_trace(
        go.Scatter(
            x=chosen_x,
            y=chosen_y,
            mode="markers",
            name="chosen",
            marker={"symbol": "square-open", "size": 34, "color": QUALITATIVE[1], "line": {"width": 3}},
            customdata=chosen_names,
            hovertemplate="step %{x}: chose %{customdata}<extra></extra>",
            showlegend=False,
        )
    )
    fig.update_layout(
        title={"text": f"Generation, step by step (chosen token boxed in orange){shown}"},
        xaxis={
            "title": {"text": "step: chosen token"},
            "tickmode": "array",
            "tickvals": xs,
            "ticktext": [f"{x}: {n}" for x, n in zip(xs, chosen_names, strict=True)],
            "range": [first - 0.5, first + n_steps - 0.5],
        },
        yaxis={
            "title": {"text": "candidate rank"},
            "tickmode": "array",
            "tickvals": list(range(rows)),
            "ticktext": [str(r + 1) if exact[r] else "lower" for r in range(rows)],
            "range": [rows - 0.5, -0.5],
        },
        height=max(300, 48 * rows + 160),
    )
    return style(fig, projector=projector)


def sampling_histogram(
    tokens: Sequence[str],
    probs: np.ndarray,
    counts: np.ndarray,
    other_prob: float = 0.0,
    other_count: int = 0,
    *,
    projector: bool = False,
) -> go.Figure:
    """Share of ``n`` draws that came up as each token, beside its sampling probability."""
    probs = np.asarray(probs, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    names = [label(t) for t in tokens]
    n = int(counts.sum()) + int(other_count)
    if other_prob > 1e-9 or other_count > 0:
        names.append("(all other tokens)")
        probs = np.append(probs, other_prob)
        counts = np.append(counts, other_count)
    freq = counts / max(n, 1)
    y = list(range(len(names)))
    drawn = np.stack([np.asarray(names, dtype=object), counts.astype(object)], axis=-1)
    fig = grouped_bars(
        [
            Bars("probability", probs, FADED, "probability %{x:.4f}"),
            Bars(
                f"share of {n:,} draws",
                freq,
                QUALITATIVE[2],
                "%{customdata[0]}<br>drawn %{customdata[1]} times (%{x:.1%})",
                customdata=drawn,
            ),
        ],
        names,
        horizontal=True,
    )
    fig.update_layout(
        title={"text": f"{n:,} draws of the next token"},
        barmode="group",
        bargap=0.25,
        xaxis={"title": {"text": "probability / share of draws"}},
        yaxis={
            "title": {"text": "token"},
            "tickmode": "array",
            "tickvals": y,
            "ticktext": names,
            "range": [len(names) - 0.5, -0.5],
        },
        height=_height(len(names)) + 60,
        legend={"orientation": "h", "y": -0.15},
    )
    return style(fig, projector=projector)


def next_token_chart(
    trace: Trace, token_str: Callable[[int], str], *, k: int = 10, pos: int = -1, projector: bool = False
) -> go.Figure:
    """``next_token_distribution`` for a trace: the ``k`` most likely tokens after position
    ``pos`` (``token_str``: the tokenizer's), the one place that reads them off the trace."""
    probs, logits = trace.probs(pos), trace.logits(pos)
    top = np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")[:k]  # as analysis.generation.top_ids
    names = [token_str(int(i)) for i in top]
    return next_token_distribution(names, probs[top], logits[top], top, trace.tokens[pos], projector=projector)
