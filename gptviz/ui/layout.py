"""Page scaffolding: the page frame, charts with their numbers and downloads, tables, seed notes."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from gptviz import export
from gptviz.config import GPTConfig
from gptviz.ui.caching import Context
from gptviz.ui.sidebar import sidebar


def page(title: str, intro: str) -> Context:
    """Start a page: config, sidebar, title, intro. Stops the page if there is no prompt."""
    st.set_page_config(page_title=f"{title} · gptviz", page_icon="🔎", layout="wide")
    ctx = sidebar()
    st.title(title)
    st.markdown(intro)
    if ctx is None:
        st.info("The prompt is empty: type some text in the sidebar to see the model at work.")
        st.stop()
    return ctx


def chart(
    fig: go.Figure,
    key: str,
    alt: str | None = None,
    table: pd.DataFrame | None = None,
    details: bool = True,
    caption: str | None = None,
    lazy: bool = True,
    **kw: Any,
) -> Any:
    """Show a figure as built (our styling, not Streamlit's theme), PNG export in the toolbar.

    ``caption`` is drawn right under the chart. Every chart gets an accessible name (``alt``,
    else its kind and title) and, below it, a collapsed "numbers and downloads" section: the
    numbers as a table (``table``, else read off the figure), that table as CSV, and the chart
    as a standalone HTML file. The section is lazy: nothing in it is computed or sent until it
    is opened, and the 4 MB HTML file only when its button is pressed. ``lazy=False`` sends the
    table on every run, so it is there without a click (the tokenization page's token table).
    ``details=False`` leaves the section out (Streamlit cannot nest it in another expander)."""
    config = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": key, "scale": 2}}
    alt = alt or export.alt_text(fig)
    result = st.plotly_chart(fig, key=key, theme=None, config=config, width="stretch", alt=alt, **kw)
    if caption:
        st.caption(caption)
    if not details:
        return result
    title, icon = "Numbers and downloads", ":material/table:"
    if not lazy:
        with st.expander(title, icon=icon):
            _details_body(fig, key, alt, table)
        return result
    with st.expander(title, key=f"x_{key}", on_change="rerun", icon=icon) as box:
        if box.open:
            _details_body(fig, key, alt, table)
    return result


def _details_body(fig: go.Figure, key: str, alt: str, table: pd.DataFrame | None) -> None:
    df = table if table is not None else export.figure_table(fig)
    st.caption(f"{alt}. PNG: the camera button in the chart's toolbar.")
    c1, c2 = st.columns(2)
    with c2:
        _download("Chart as HTML (interactive, works offline)", lambda: export.html_bytes(fig), key, "html")
    _table_body(df, key, where=c1)


def _download(label: str, data: Any, key: str, ext: str) -> None:
    """A download button for ``<key>.<ext>`` whose bytes are made only when it is pressed."""
    mime = {"html": "text/html", "csv": "text/csv"}[ext]
    st.download_button(
        label, data=data, file_name=f"{key}.{ext}", mime=mime, key=f"{ext}_{key}", on_click="ignore",
        icon=":material/download:",
    )  # fmt: skip


def table(df: pd.DataFrame, key: str, **kw: Any) -> None:
    """A table with a CSV download button (the same rows and columns as shown)."""
    _table_body(df, key, **kw)


def _table_body(df: pd.DataFrame, key: str, where: Any = None, **kw: Any) -> None:
    with where if where is not None else st.container():
        _download("Table as CSV", lambda: export.csv_bytes(df), key, "csv")
    if df.attrs.get("truncated"):
        st.caption(f"The first {len(df):,} rows (the chart has more numbers than a table can show).")
    st.dataframe(df, hide_index=True, width="stretch", key=f"df_{key}", **kw)


def architecture(cfg: GPTConfig) -> str:
    """One Markdown line naming the model's design choices (positions, norm, feed-forward, K/V
    heads, q/k norm, parallel blocks, output weights): what the pages adapt to."""
    norm = "RMSNorm" if cfg.norm_kind == "rmsnorm" else "LayerNorm"
    if cfg.pos == "rotary":
        part = f", {cfg.rot_dim} of {cfg.d_head} dims" if cfg.rot_dim < cfg.d_head else ""
        pos = f"**rotary** (θ = {cfg.rope_theta:,.0f}{part})"
    else:
        pos = f"**{cfg.pos}**"
    parts = [
        f"Positions: {pos}",
        f"{norm}: **{cfg.norm}-norm**",
        f"feed-forward: **{'gated ' if cfg.ffn == 'gated' else ''}{cfg.act}**",
    ]
    if cfg.kv_heads < cfg.n_head:
        parts.append(f"{cfg.n_head} query heads share {cfg.kv_heads} key/value head{'s' * (cfg.kv_heads > 1)}")
    if cfg.qk_norm:
        parts.append("q/k norm")
    if cfg.parallel:
        parts.append("parallel blocks")
    parts.append(f"output weights {'tied to the embeddings' if cfg.tie_weights else 'separate'}")
    return " · ".join(parts)


def seed_note(code: str, note: str) -> None:
    """The seed's code for this step, and where a real GPT differs from it."""
    with st.expander("The seed's code for this step, and how a real GPT differs", expanded=False):
        st.code(code, language="python")
        st.markdown(note)
