"""What needs the model beyond one Trace: nearest tokens, projections, logit lens, head
statistics, ablation reruns, generation, attribution. Arrays in and out; no Streamlit, no
figures, so every function is testable against an independent computation."""

from gptviz.analysis.embeddings import (
    embedding_pca,
    nearest_tokens,
    position_similarity,
    positional_table,
    tokenize_view,
)

__all__ = ["embedding_pca", "nearest_tokens", "position_similarity", "positional_table", "tokenize_view"]
