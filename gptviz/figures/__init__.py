"""Pure figure functions: a Trace (or arrays) in, a Plotly Figure out. No Streamlit, no model.

Every chart the app shows is made here, so a notebook gets the same figure as the page:
``gptviz.figures.attention_pattern(trace, layer=0, head=1).show()``.
"""

from gptviz.figures._base import esc, label, style, visible
from gptviz.figures.embeddings import (
    embedding_heatmap,
    embedding_plus_position,
    embedding_scatter,
    nearest_tokens_bar,
    position_similarity_heatmap,
    positional_curves,
    positional_heatmap,
    vector_norms,
)
from gptviz.figures.tokens import bpe_merges, token_chips, token_table

__all__ = [
    "bpe_merges",
    "embedding_heatmap",
    "embedding_plus_position",
    "embedding_scatter",
    "esc",
    "label",
    "nearest_tokens_bar",
    "position_similarity_heatmap",
    "positional_curves",
    "positional_heatmap",
    "style",
    "token_chips",
    "token_table",
    "vector_norms",
    "visible",
]
