"""Exports and text alternatives: a figure's numbers as a table, CSV, standalone HTML, ``.npz``
bytes, and the link that reopens a view. Pure functions (no Streamlit), so a test can check
that what a page offers for download is exactly what it shows.

``figure_table(fig)`` is the text alternative of a chart: one row per bar or point, and for a
heatmap one row per y label with one column per x label (several heatmaps: one row per cell).
Token labels come from the axes' tick text; Plotly's HTML escaping is undone, because a table
shows plain text.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gptviz.trace import Trace

_TAG = re.compile(r"<[^>]+>")
MAX_TABLE_CELLS = 200_000  # a text alternative, not a dump: larger heatmaps are cut (noted in a column)


def plain(text: object) -> str:
    """Plotly label text as plain text: ``<br>`` → space, tags dropped, entities decoded."""
    s = str(text).replace("<br>", " ")
    return html.unescape(_TAG.sub("", s)).strip()


def figure_title(fig: go.Figure) -> str:
    title = fig.layout.title.text if fig.layout.title is not None else None
    return plain(title) if title else ""


def alt_text(fig: go.Figure) -> str:
    """A short accessible name for a chart: what kind of chart, and its title."""
    kinds = [t.type for t in fig.data]
    kind = "Heatmap" if "heatmap" in kinds else "Bar chart" if "bar" in kinds else "Chart"
    if "waterfall" in kinds:
        kind = "Waterfall chart"
    title = figure_title(fig)
    return f"{kind}: {title}" if title else kind


def _axis(fig: go.Figure, trace: go.BaseTraceType, letter: str) -> dict:
    ref = getattr(trace, f"{letter}axis", None) or letter
    name = f"{letter}axis{ref[1:]}"
    layout = fig.layout.to_plotly_json()
    return layout.get(name, {})


def _tick_names(axis: dict) -> dict[float, str]:
    vals, texts = axis.get("tickvals"), axis.get("ticktext")
    if vals is None or texts is None or axis.get("type") == "category":
        return {}
    return {float(v): plain(t) for v, t in zip(vals, texts, strict=False)}


_TOKEN_CATEGORY = re.compile(r"(\d+): (.*)", re.DOTALL)


def _coords(values: object, n: int, axis: dict) -> tuple[np.ndarray, list[str]]:
    """A heatmap axis's coordinates and their labels. Token axes are categories
    ``"position: token"`` (``figures._base.token_categories``): split back into both."""
    if values is None:
        xs = np.arange(n)
        return xs, _labels(xs, _tick_names(axis))
    xs = np.asarray(values)
    if xs.dtype.kind not in "OUS":
        return xs, _labels(xs, _tick_names(axis))
    parts = [_TOKEN_CATEGORY.fullmatch(str(v)) for v in xs]
    if all(parts):
        return np.array([int(m[1]) for m in parts]), [plain(m[2]) for m in parts]
    return np.array([plain(v) for v in xs], dtype=object), [plain(v) for v in xs]


def _axis_title(axis: dict, default: str) -> str:
    title = axis.get("title") or {}
    text = title.get("text") if isinstance(title, dict) else None
    return plain(text) if text else default


def _labels(values: np.ndarray, names: dict[float, str]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(names.get(float(v), ""))
        except (TypeError, ValueError):
            out.append(plain(v))
    return out


def _arr(x: object) -> np.ndarray | None:
    if x is None:
        return None
    return np.asarray(x)


def _heatmap_grid(fig: go.Figure, tr: go.Heatmap) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list, dict, dict]:
    """A heatmap's values, its x and y coordinates, their tick labels, and its two axes."""
    z = np.asarray(tr.z, dtype=np.float64)
    rows, cols = z.shape
    xa, ya = _axis(fig, tr, "x"), _axis(fig, tr, "y")
    (xs, xl), (ys, yl) = _coords(tr.x, cols, xa), _coords(tr.y, rows, ya)
    return z, xs, ys, xl, yl, xa, ya


def _named(v: object, name: str | None) -> str:
    """A coordinate with its tick label, e.g. "3: the" (just "3" when the label adds nothing)."""
    return f"{_fmt(v)}: {name}" if name and name != _fmt(v) else _fmt(v)


def _heatmap_wide(fig: go.Figure, tr: go.Heatmap) -> pd.DataFrame:
    z, xs, ys, xl, yl, _, ya = _heatmap_grid(fig, tr)
    df = pd.DataFrame(z, columns=_unique([_named(x, n) for x, n in zip(xs, xl, strict=True)]))
    df.insert(0, _axis_title(ya, "row"), [_named(y, n) for y, n in zip(ys, yl, strict=True)])
    return df


def _heatmap_long(fig: go.Figure, tr: go.Heatmap) -> pd.DataFrame:
    z, xs, ys, xl, yl, _, _ = _heatmap_grid(fig, tr)
    rows, cols = z.shape
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return pd.DataFrame(
        {
            "y": [_fmt(ys[i]) for i in r.ravel()],
            "y label": [yl[i] for i in r.ravel()],
            "x": [_fmt(xs[j]) for j in c.ravel()],
            "x label": [xl[j] for j in c.ravel()],
            "value": z.ravel(),
        }
    )


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return plain(v)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n} ({k + 1})")
    return out


def _xy_table(fig: go.Figure, tr: go.BaseTraceType) -> pd.DataFrame | None:
    x, y = _arr(getattr(tr, "x", None)), _arr(getattr(tr, "y", None))
    if x is None and y is None:
        return None
    n = len(x) if x is not None else len(y)
    x = x if x is not None else np.arange(n)
    y = y if y is not None else np.arange(n)
    xa, ya = _axis(fig, tr, "x"), _axis(fig, tr, "y")
    out: dict[str, list] = {}
    for letter, vals, axis in (("x", x, xa), ("y", y, ya)):
        title = _axis_title(axis, letter)
        names = _tick_names(axis)
        if names and any(_labels(vals, names)):
            out[f"{title} (position)"] = [_fmt(v) for v in vals]
            out[title] = _labels(vals, names)
        else:
            out[title] = [v if isinstance(v, int | float | np.number) else plain(v) for v in vals.tolist()]
    text = getattr(tr, "text", None)
    if text is not None and not isinstance(text, str) and len(text) == n:
        out["text"] = [plain(t) for t in text]
    if len(set(out)) < len(out):  # two columns with the same title
        return pd.DataFrame(dict(zip(_unique(list(out)), out.values(), strict=True)))
    return pd.DataFrame(out)


def _label_layer(tr: go.BaseTraceType) -> bool:
    """Text drawn over another trace (a heatmap's cell labels) or boxes drawn under one (token
    chips): silent on hover, they add no numbers."""
    return tr.hoverinfo == "skip" and (tr.type == "bar" or (tr.type == "scatter" and tr.mode == "text"))


def figure_table(fig: go.Figure) -> pd.DataFrame:
    """The numbers a figure draws, as one table (the text alternative of the chart)."""
    data = [t for t in fig.data if not _label_layer(t)]
    heatmaps = [t for t in data if t.type == "heatmap" and t.z is not None]
    frames = []
    for i, tr in enumerate(data):
        if tr.type == "heatmap" and tr.z is not None:
            df = _heatmap_wide(fig, tr) if len(heatmaps) == 1 else _heatmap_long(fig, tr)
        else:
            df = _xy_table(fig, tr)
        if df is None or df.empty:
            continue
        if len(data) > 1:
            df.insert(0, "series", plain(tr.name) if tr.name else f"{tr.type} {i}")
        frames.append(df)
    if not frames:
        return pd.DataFrame()
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if table.size > MAX_TABLE_CELLS:
        keep = max(1, MAX_TABLE_CELLS // max(1, table.shape[1]))
        table = table.iloc[:keep].copy()
        table.attrs["truncated"] = True
    return table


def csv_bytes(table: pd.DataFrame) -> bytes:
    """The table as UTF-8 CSV, index left out (what the page's CSV button downloads)."""
    return table.to_csv(index=False).encode("utf-8")


def read_csv(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""])


def html_bytes(fig: go.Figure) -> bytes:
    """A standalone HTML file of the interactive chart (plotly.js inlined: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False}).encode("utf-8")


def npz_bytes(trace: Trace) -> bytes:
    """The whole trace as ``.npz`` bytes, readable by ``gptviz.load_trace``."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = trace.save(Path(tmp) / "trace.npz")
        return path.read_bytes()


def view_link(params: Mapping[str, object], base: str | None = None) -> str:
    """The link that reopens a view: ``base`` (the page's address) plus the query string."""
    query = urlencode({k: str(v) for k, v in params.items()})
    base = base or ""
    return f"{base}?{query}" if query else (base or "?")


def trace_filename(trace: Trace) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", trace.model_name or "model").strip("_") or "model"
    return f"gptviz-trace-{name}-{trace.n_tokens}tok.npz"
