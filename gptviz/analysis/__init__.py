"""What needs the model beyond one Trace: nearest tokens, projections, logit lens, head
statistics, ablation reruns, generation, attribution. Arrays in and out; no Streamlit, no
figures, so every function is testable against an independent computation."""

from gptviz.analysis.ablation import Ablation, kl_divergence
from gptviz.analysis.attention import (
    first_token_score,
    head_stats,
    induction_score,
    induction_scores,
    pattern_entropy,
    previous_token_score,
)
from gptviz.analysis.embeddings import (
    embedding_pca,
    nearest_tokens,
    position_similarity,
    positional_table,
    tokenize_view,
)
from gptviz.analysis.generation import generate, generate_step, sampling_distribution
from gptviz.analysis.lens import direct_logit_attribution, layernorm_view, logit_lens

__all__ = [
    "direct_logit_attribution",
    "layernorm_view",
    "logit_lens",
    "Ablation",
    "embedding_pca",
    "first_token_score",
    "generate",
    "generate_step",
    "head_stats",
    "induction_score",
    "induction_scores",
    "kl_divergence",
    "nearest_tokens",
    "pattern_entropy",
    "position_similarity",
    "positional_table",
    "previous_token_score",
    "sampling_distribution",
    "tokenize_view",
]
