"""The training timeline: the loss curve with the shown snapshot marked, and how the prediction
after the prompt changes from random weights to the trained model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from gptviz.figures._base import QUALITATIVE, label, style


def loss_curve(
    history: Sequence[Mapping[str, float]],
    step: int | None = None,
    step_loss: float | None = None,
    prompt: tuple[Sequence[int], Sequence[float]] | None = None,
    random_loss: float | None = None,
    *,
    projector: bool = False,
) -> go.Figure:
    """Train and validation loss (nats per token) against the training step, from the model
    card's ``history``; a dashed line at ``step`` and, if given, a marker at ``step_loss`` (the
    shown snapshot's loss on the prompt).
    ``prompt``: (snapshot steps, loss on the prompt) as a third curve; ``random_loss``: the loss
    of a uniform guess, ln(vocabulary), as a dotted line, and a point at step 0 (random weights
    guess about uniformly) joined to the first logged training loss: where every model starts."""
    steps = [int(h["step"]) for h in history]
    fig = go.Figure()
    if random_loss is not None:
        fig.add_hline(y=random_loss, line={"color": "#555555", "dash": "dot", "width": 2})
        fig.add_annotation(
            x=1,
            xref="paper",
            y=random_loss,
            text="random guessing: ln(vocabulary)",
            showarrow=False,
            xanchor="right",
            yanchor="bottom",
        )
        first = next((h for h in history if h.get("train_loss") is not None), None)
        to_first = first is not None and int(first["step"]) > 0  # the log starts later: join it to step 0
        fig.add_trace(
            go.Scatter(
                x=[0, int(first["step"])] if to_first else [0],
                y=[random_loss, first["train_loss"]] if to_first else [random_loss],
                mode="lines+markers",
                name="step 0: random weights ≈ random guessing",
                line={"color": "#555555", "dash": "dot", "width": 2},
                marker={"color": "#555555", "size": [12, 0] if to_first else [12], "symbol": "circle-open"},
                hovertemplate="step %{x}<br>loss %{y:.3f} nats<extra></extra>",
            )
        )
    if prompt is not None and len(prompt[0]):
        fig.add_trace(
            go.Scatter(
                x=list(prompt[0]),
                y=list(prompt[1]),
                mode="lines+markers",
                name="loss on your prompt (snapshots)",
                line={"color": QUALITATIVE[2], "width": 3, "dash": "dash"},
                marker={"size": 10},
                hovertemplate="step %{x}<br>loss on the prompt %{y:.3f} nats<extra></extra>",
            )
        )
    for key, name, colour in (
        ("train_loss", "training loss", QUALITATIVE[0]),
        ("val_loss", "validation loss", QUALITATIVE[1]),
    ):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=values,
                    mode="lines+markers",
                    name=name,
                    line={"color": colour, "width": 3},
                    hovertemplate=f"step %{{x}}<br>{name} %{{y:.3f}} nats<extra></extra>",
                )
            )
    if step is not None:
        fig.add_vline(x=step, line={"color": QUALITATIVE[7], "dash": "dash", "width": 2})
        fig.add_annotation(
            x=step, y=1, yref="paper", text=f"snapshot: step {step}", showarrow=False, yanchor="bottom", xanchor="left"
        )
        if step_loss is not None and np.isfinite(step_loss):
            fig.add_trace(
                go.Scatter(
                    x=[step],
                    y=[step_loss],
                    mode="markers",
                    name=f"step {step} on your prompt",
                    marker={
                        "color": QUALITATIVE[5],
                        "size": 16,
                        "symbol": "diamond",
                        "line": {"width": 2, "color": "#111"},
                    },
                    hovertemplate="step %{x}<br>loss on the prompt %{y:.3f} nats<extra></extra>",
                )
            )
    last = max([*steps, *(prompt[0] if prompt is not None else []), step or 0, 1])
    fig.update_layout(
        title={"text": "Loss during training (lower is better)"},
        # a little room left of step 0, so its marker line does not sit on the y axis's labels
        xaxis={"title": {"text": "training step"}, "range": [-0.04 * last, 1.03 * last]},
        yaxis={"title": {"text": "loss (nats per token)"}},
        legend={"orientation": "h", "y": -0.3 if projector else -0.22},
        height=500 if projector else 440,
    )
    return style(fig, projector=projector)


def prediction_timeline(
    steps: Sequence[int],
    tokens: Sequence[str],
    probs: np.ndarray,
    current: int | None = None,
    *,
    projector: bool = False,
) -> go.Figure:
    """Probability of a few next tokens (columns of ``probs``) at each snapshot (rows)."""
    probs = np.asarray(probs, dtype=np.float64)
    fig = go.Figure()
    for j, tok in enumerate(tokens):
        fig.add_trace(
            go.Scatter(
                x=list(steps),
                y=probs[:, j],
                mode="lines+markers",
                name=label(tok),
                line={"color": QUALITATIVE[j % len(QUALITATIVE)], "width": 3},
                marker={"size": 9},
                hovertemplate=f"step %{{x}}<br>{label(tok)}: p = %{{y:.4f}}<extra></extra>",
            )
        )
    if current is not None:
        fig.add_vline(x=current, line={"color": QUALITATIVE[7], "dash": "dash", "width": 2})
    fig.update_layout(
        title={"text": "The trained model's favourite next tokens, at every snapshot"},
        xaxis={"title": {"text": "training step"}},
        yaxis={"title": {"text": "probability"}, "rangemode": "tozero"},
        legend={"title": {"text": "next token"}},
        height=420,
    )
    return style(fig, projector=projector)
