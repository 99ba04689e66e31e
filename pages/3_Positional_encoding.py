"""Stage 3 — positional encoding: where each token is."""

import streamlit as st

from gptviz import figures, ui
from gptviz.analysis import position_similarity, positional_table

ctx = ui.page(
    "3 · Positional encoding",
    "Attention by itself does not know word order: *dog bites man* and *man bites dog* would look "
    "the same. So before the first layer, a **position vector** is added to every token's "
    "embedding. The seed (and the original Transformer) uses fixed **sine and cosine waves** of "
    "different frequencies; GPT-2 **learns** one vector per position instead.",
)
t, cfg = ctx.trace, ctx.cfg
kind = cfg.pos
st.markdown(
    f"This model's positions are **{kind}** ({'fixed sine/cosine' if kind == 'sinusoidal' else 'learned in training'})."
)
n = ui.slider("Positions shown", min(8, cfg.n_ctx), cfg.n_ctx, "pos_n", min(cfg.n_ctx, max(64, t.n_tokens)))
pos = positional_table(ctx.model, n)
ui.chart(figures.positional_heatmap(pos, kind, projector=ctx.projector), "pos_heatmap")

st.subheader("Dimensions as curves")
default_dims = [d for d in (0, 1, 4, 5, 16) if d < cfg.d_model]
placeholder = f"default: {', '.join(map(str, default_dims))}"
dims = sorted(ui.multiselect("Dimensions", range(cfg.d_model), "pos_dims", max_selections=8, placeholder=placeholder))
dims = [d for d in dims if d < cfg.d_model] or default_dims
ui.chart(
    figures.positional_curves(pos, dims, kind, projector=ctx.projector),
    "pos_curves",
    caption="Sinusoidal: low dimensions wiggle fast, high ones slowly, like the hands of a clock. "
    "Learned: whatever shapes training found useful, often smooth waves too.",
)

st.subheader("Which positions look alike?")
ui.chart(
    figures.position_similarity_heatmap(position_similarity(pos), projector=ctx.projector),
    "pos_sim",
    caption="Neighbouring positions have similar vectors (the dark red band along the diagonal: red is similar, "
    "blue opposite): the model can tell near from far.",
)

st.subheader("Token + position = the first residual stream")
p = ui.slider("Token position", 0, t.n_tokens - 1, "pos_token", min(1, t.n_tokens - 1))
ui.chart(figures.embedding_plus_position(t, p, projector=ctx.projector), "pos_sum")

ui.seed_note(
    "position_encodings = positional_encoding(seq_length, embed_dim)\nembeddings += position_encodings",
    "`gptviz.positional_encoding(seq_len, dim)` is exactly the seed's function. GPT-2 replaces it with a "
    "learned table `nn.Embedding(n_ctx, d_model)`, so its model cannot read past its context length (1,024).",
)
