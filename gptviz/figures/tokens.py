"""Stage 1 — tokenization: token chips, the token table, BPE merges replayed."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from gptviz.figures._base import QUALITATIVE, esc, label, style


def _chip_layout(widths: Sequence[int], row_width: int) -> list[tuple[float, int]]:
    """Left edge and row of each chip, wrapping like text."""
    x, row, out = 0.0, 0, []
    for w in widths:
        if x > 0 and x + w > row_width:
            x, row = 0.0, row + 1
        out.append((x, row))
        x += w + 0.6
    return out


def token_chips(
    tokens: Sequence[str],
    ids: Sequence[int],
    token_bytes: Sequence[bytes] | None = None,
    title: str = "",
    row_width: int = 48,
    projector: bool = False,
) -> go.Figure:
    """The prompt as coloured chips, one per token, each labelled with its text and id.

    Hover: position, id, the raw bytes and the string. Colours cycle so neighbours differ.
    """
    texts = [label(t) for t in tokens]
    widths = [max(2, len(t) + 1, len(str(i)) + 1) for t, i in zip(texts_raw(tokens), ids, strict=True)]
    spots = _chip_layout(widths, row_width)
    fig = go.Figure()
    shapes = []
    xs, ys, hover = [], [], []
    for pos, ((x, row), w) in enumerate(zip(spots, widths, strict=True)):
        colour = QUALITATIVE[pos % 5]
        shapes.append(
            {
                "type": "rect",
                "x0": x,
                "x1": x + w,
                "y0": -row * 2.2,
                "y1": -row * 2.2 + 1.7,
                "fillcolor": colour,
                "opacity": 0.25,
                "line": {"color": colour, "width": 2},
            }
        )
        xs.append(x + w / 2)
        ys.append(-row * 2.2 + 0.85)
        raw = token_bytes[pos] if token_bytes is not None else tokens[pos].encode("utf-8", "backslashreplace")
        hover.append(
            f"position {pos}<br>id {ids[pos]}<br>bytes {esc(' '.join(f'{b:02x}' for b in raw))}"
            f"<br>string {esc(repr(tokens[pos]))}"
        )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="text",
            text=[f"{t}<br><sub>{i}</sub>" for t, i in zip(texts, ids, strict=True)],
            textfont={"size": 15, "family": "DejaVu Sans Mono, Menlo, monospace"},
            hovertext=hover,
            hoverinfo="text",
            showlegend=False,
        )
    )
    rows = (spots[-1][1] + 1) if spots else 1
    fig.update_layout(
        shapes=shapes,
        title={"text": title},
        xaxis={"visible": False, "range": [-0.5, row_width + 1]},
        yaxis={"visible": False, "range": [-(rows - 1) * 2.2 - 0.3, 2.0]},
        height=90 + 62 * rows,
    )
    return style(fig, projector)


def texts_raw(tokens: Sequence[str]) -> list[str]:
    """Token text as shown on a chip, before escaping (whitespace made visible)."""
    from gptviz.figures._base import visible

    return [visible(t) for t in tokens]


def token_table(tokens: Sequence[str], ids: Sequence[int], token_bytes: Sequence[bytes]) -> pd.DataFrame:
    """Position, token (whitespace visible), id, bytes (hex) and byte count; a plain table."""
    return pd.DataFrame(
        {
            "position": range(len(ids)),
            "token": texts_raw(tokens),
            "id": list(ids),
            "bytes": [" ".join(f"{b:02x}" for b in raw) for raw in token_bytes],
            "n_bytes": [len(raw) for raw in token_bytes],
        }
    )


def bpe_merges(steps: Sequence[Sequence[bytes]], upto: int | None = None, projector: bool = False) -> go.Figure:
    """BPE replayed for one word: each row is the word after one more merge, bytes at the top."""
    from gptviz.tokenizer import show_bytes

    upto = len(steps) - 1 if upto is None else max(0, min(upto, len(steps) - 1))
    fig = go.Figure()
    shapes, xs, ys, texts, hovers = [], [], [], [], []
    for row, parts in enumerate(steps[: upto + 1]):
        x = 0.0
        for part in parts:
            shown = show_bytes(part)
            w = max(2.0, len(label(shown)) * 0.9 + 1)
            shapes.append(
                {
                    "type": "rect",
                    "x0": x,
                    "x1": x + w,
                    "y0": -row - 0.4,
                    "y1": -row + 0.4,
                    "fillcolor": QUALITATIVE[min(len(part), 8) - 1],
                    "opacity": 0.3,
                    "line": {"width": 1, "color": "#333"},
                }
            )
            xs.append(x + w / 2)
            ys.append(-row)
            texts.append(label(shown))
            hovers.append(f"step {row}: {len(part)} byte(s) {esc(part.hex(' '))}")
            x += w + 0.3
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="text",
            text=texts,
            hovertext=hovers,
            hoverinfo="text",
            textfont={"size": 15, "family": "DejaVu Sans Mono, Menlo, monospace"},
            showlegend=False,
        )
    )
    fig.update_layout(
        shapes=shapes,
        xaxis={"visible": False},
        yaxis={
            "tickmode": "array",
            "tickvals": [-r for r in range(upto + 1)],
            "ticktext": ["bytes" if r == 0 else f"merge {r}" for r in range(upto + 1)],
            "range": [-upto - 0.7, 0.7],
        },
        title={"text": f"BPE merges: {upto} of {len(steps) - 1}"},
        height=120 + 42 * (upto + 1),
    )
    return style(fig, projector)
