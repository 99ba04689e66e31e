"""Pure figure functions: a Trace (or arrays) in, a Plotly Figure out. No Streamlit, no model.

Every chart the app shows is made here, so a notebook gets the same figure as the page:
``gptviz.figures.attention_pattern(trace, layer=0, head=1).show()``. Every function takes
``projector=True`` for large type and high-contrast scales.
"""

from gptviz.figures._base import Bars, esc, grouped_bars, heatmap, label, style, visible
from gptviz.figures.attention import (
    attention_from_token,
    attention_grid,
    attention_pattern,
    attention_steps,
    gqa_grid,
    next_token_bars,
    next_token_bars_for,
    pattern_heatmap,
)
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
from gptviz.figures.generations import (
    design_table,
    highway_gaps,
    kv_cache_bars,
    mean_shares,
    neuron_sign_bars,
    parameter_bars,
    position_shares,
)
from gptviz.figures.output import (
    generation_timeline,
    next_token_chart,
    next_token_distribution,
    reshaped_distribution,
    sampling_histogram,
)
from gptviz.figures.overview import generation_attention, overview_figure
from gptviz.figures.research import (
    attribution_bars,
    attribution_tokens,
    clicked_cell,
    clicked_edge,
    flow_graph,
    patching_agreement,
    patching_heatmap,
)
from gptviz.figures.residual import (
    gated_neurons_bar,
    layernorm_figure,
    logit_attribution,
    logit_lens_heatmap,
    mlp_activation_heatmap,
    residual_norm_heatmap,
    sublayer_norms,
    top_neurons_bar,
)
from gptviz.figures.rotary import (
    relative_position_curves,
    rotary_angle_curves,
    rotary_angle_heatmap,
    rotary_pair_arrows,
    rotary_wavelengths,
)
from gptviz.figures.tokens import bpe_merges, token_chips, token_table, trace_chips

__all__ = [
    "attribution_bars",
    "attribution_tokens",
    "clicked_cell",
    "clicked_edge",
    "flow_graph",
    "patching_agreement",
    "patching_heatmap",
    "gated_neurons_bar",
    "layernorm_figure",
    "logit_attribution",
    "logit_lens_heatmap",
    "mlp_activation_heatmap",
    "residual_norm_heatmap",
    "sublayer_norms",
    "top_neurons_bar",
    "attention_from_token",
    "attention_grid",
    "attention_pattern",
    "attention_steps",
    "gqa_grid",
    "relative_position_curves",
    "rotary_angle_curves",
    "rotary_angle_heatmap",
    "rotary_pair_arrows",
    "rotary_wavelengths",
    "bpe_merges",
    "design_table",
    "highway_gaps",
    "kv_cache_bars",
    "mean_shares",
    "neuron_sign_bars",
    "parameter_bars",
    "position_shares",
    "embedding_heatmap",
    "embedding_plus_position",
    "embedding_scatter",
    "esc",
    "generation_attention",
    "generation_timeline",
    "heatmap",
    "label",
    "nearest_tokens_bar",
    "Bars",
    "grouped_bars",
    "next_token_bars",
    "next_token_bars_for",
    "next_token_chart",
    "next_token_distribution",
    "overview_figure",
    "pattern_heatmap",
    "position_similarity_heatmap",
    "positional_curves",
    "positional_heatmap",
    "reshaped_distribution",
    "sampling_histogram",
    "style",
    "token_chips",
    "token_table",
    "trace_chips",
    "vector_norms",
    "visible",
]
