"""Stage 1 — tokenization: token chips, the token table, BPE merges replayed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from gptviz.figures._base import QUALITATIVE, esc, label, style

MAX_CHIPS = 1024  # token_chips draws at most this many tokens; the title says so
MAX_MERGE_ROWS = 64  # bpe_merges draws at most this many steps, the last ones up to ``upto``
MAX_ROW_PIECES = 64  # ... and at most this many pieces per step, then one "+N bytes" chip
CHIP_FONT = "DejaVu Sans Mono, Menlo, monospace"
TEXT_PX, TEXT_PX_PROJECTOR = 15, 22  # chip and merge-box text
ROW_PX = 62  # token_chips: pixels per row of chips (times 22/15 in projector mode)


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
    *,
    projector: bool = False,
    max_tokens: int = MAX_CHIPS,
    height: int | None = None,
) -> go.Figure:
    """The prompt as coloured chips, one per token, each labelled with its text and id.

    Hover: position, id, the raw bytes and the string. Colours cycle so neighbours differ.
    Only the first ``max_tokens`` tokens are drawn (the title says how many of how many), so
    a pasted book stays a figure a browser can show. ``height`` (pixels): make the chart at least
    this tall, chips keeping their size at the top (two charts side by side line up). Projector
    mode: larger text, so about 2/3 as many characters per row (``row_width``) and taller rows.
    """
    n_all = len(tokens)
    if n_all > max_tokens:
        tokens, ids = list(tokens)[:max_tokens], list(ids)[:max_tokens]
        token_bytes = None if token_bytes is None else list(token_bytes)[:max_tokens]
        title = f"{title} (the first {max_tokens:,} of {n_all:,} tokens)".strip()
    scale = TEXT_PX_PROJECTOR / TEXT_PX if projector else 1.0
    row_width = max(8, round(row_width / scale))
    texts = [label(t) for t in tokens]
    widths = [max(2, len(t) + 1, len(str(i)) + 1) for t, i in zip(texts_raw(tokens), ids, strict=True)]
    spots = _chip_layout(widths, row_width)
    xs, ys, hover = [], [], []
    for pos, ((x, row), w) in enumerate(zip(spots, widths, strict=True)):
        xs.append(x + w / 2)
        ys.append(-row * 2.2 + 0.85)
        raw = token_bytes[pos] if token_bytes is not None else tokens[pos].encode("utf-8", "backslashreplace")
        hover.append(
            f"position {pos}<br>id {ids[pos]}<br>bytes {esc(' '.join(f'{b:02x}' for b in raw))}"
            f"<br>string {esc(repr(tokens[pos]))}"
        )
    colours = [QUALITATIVE[pos % 5] for pos in range(len(spots))]
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=ys,
            mode="text",
            text=[f"{t}<br><sub>{i}</sub>" for t, i in zip(texts, ids, strict=True)],
            textfont={"size": TEXT_PX_PROJECTOR if projector else TEXT_PX, "family": CHIP_FONT},
            hovertext=hover,
            hoverinfo="text",
            showlegend=False,
        )
    )
    # The chips: one horizontal bar each (Plotly draws bars under text whatever the trace order).
    # One trace of arrays instead of a layout shape per token: ~3x cheaper to build at T=220.
    fig.add_trace(
        go.Bar(
            x=widths,
            base=[x for x, _ in spots],
            y=ys,
            width=1.7,
            orientation="h",
            marker={"color": [_tint(c) for c in colours], "line": {"color": colours, "width": 2}},
            hoverinfo="skip",
            showlegend=False,
        )
    )
    rows = (spots[-1][1] + 1) if spots else 1
    row_px = ROW_PX * scale
    natural = round(90 + row_px * rows)
    shown_rows = max(rows, (height - 90) / row_px) if height and height > natural else rows
    fig.update_layout(
        title={"text": title},
        xaxis={"visible": False, "range": [-0.5, row_width + 1]},
        yaxis={"visible": False, "range": [-(shown_rows - 1) * 2.2 - 0.3, 2.0]},
        height=max(natural, height or 0),
    )
    return style(fig, projector=projector)


def _tint(colour: str, alpha: float = 0.25) -> str:
    """``#RRGGBB`` as a translucent ``rgba()`` fill (the chip's outline keeps the full colour)."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


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


def bpe_merges(steps: Sequence[Sequence[bytes]], upto: int | None = None, *, projector: bool = False) -> go.Figure:
    """BPE replayed for one word: each row is the word after one more merge, bytes at the top.

    Every byte has one column, as wide as the widest byte label; a piece covers the columns of
    the bytes it is made of, so a merged piece sits right under the bytes it joined."""
    from gptviz.tokenizer import show_bytes

    upto = len(steps) - 1 if upto is None else max(0, min(upto, len(steps) - 1))
    first = max(0, upto + 1 - MAX_MERGE_ROWS)  # a long word: only the last steps up to ``upto``
    n_bytes = sum(len(p) for p in steps[0]) if steps else 0
    shown_bytes = [b for p in list(steps[0])[:MAX_ROW_PIECES] for b in p] if steps else []
    unit = max([2.0, *(len(label(show_bytes(bytes([b])))) * 0.9 + 1 for b in shown_bytes)])
    gap = 0.3
    fig = go.Figure()
    shapes, xs, ys, texts, hovers = [], [], [], [], []
    for row in range(first, upto + 1):
        offset, parts = 0, list(steps[row])
        for part in parts:
            if offset >= MAX_ROW_PIECES:  # pieces past the first MAX_ROW_PIECES bytes: one chip below
                break
            shown = show_bytes(part)
            x0, x1 = offset * unit, (offset + len(part)) * unit - gap
            shapes.append(
                {
                    "type": "rect",
                    "x0": x0,
                    "x1": x1,
                    "y0": -row - 0.4,
                    "y1": -row + 0.4,
                    "fillcolor": QUALITATIVE[min(len(part), 8) - 1],
                    "opacity": 0.3,
                    "line": {"width": 1, "color": "#333"},
                }
            )
            xs.append((x0 + x1) / 2)
            ys.append(-row)
            texts.append(label(shown))
            hovers.append(
                f"step {row}: bytes {offset}–{offset + len(part) - 1}, {len(part)} byte(s) {esc(part.hex(' '))}"
            )
            offset += len(part)
        if offset < n_bytes:  # one chip stands for the bytes not drawn
            n_rest = n_bytes - offset
            xs.append(offset * unit + 3)
            ys.append(-row)
            texts.append(f"+{n_rest} bytes")
            hovers.append(f"step {row}: {n_rest} more byte(s), not drawn")
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="text",
            text=texts,
            hovertext=hovers,
            hoverinfo="text",
            textfont={"size": TEXT_PX_PROJECTOR if projector else TEXT_PX, "family": CHIP_FONT},
            showlegend=False,
        )
    )
    fig.update_layout(
        shapes=shapes,
        xaxis={"visible": False},
        yaxis={
            "tickmode": "array",
            "tickvals": [-r for r in range(first, upto + 1)],
            "ticktext": ["bytes" if r == 0 else f"merge {r}" for r in range(first, upto + 1)],
            "range": [-upto - 0.7, -first + 0.7],
            "zeroline": False,
            "showgrid": False,
        },
        title={"text": f"BPE merges: {upto} of {len(steps) - 1}" + (f" (from merge {first})" if first else "")},
        height=120 + (54 if projector else 42) * (upto + 1 - first),
    )
    return style(fig, projector=projector)


def trace_chips(view: Any, *, title: str = "", projector: bool = False, **kw: Any) -> go.Figure:
    """``token_chips`` for anything with ``tokens``, ``ids`` and ``token_bytes`` (a ``Trace``, a
    tokenizer view): the one place that unpacks them. ``kw``: ``row_width``, ``height``…"""
    ids = view.ids.tolist() if hasattr(view.ids, "tolist") else list(view.ids)
    return token_chips(view.tokens, ids, view.token_bytes, title=title, projector=projector, **kw)
