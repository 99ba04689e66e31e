"""Stage 2 — token embeddings: ids → vectors."""

import streamlit as st

from gptviz import figures, ui
from gptviz.analysis import embedding_pca, nearest_tokens

ctx = ui.page(
    "2 · Embeddings",
    "Each token id picks one row of the **embedding matrix**: a lookup table with one learned "
    "vector per vocabulary entry. Tokens used in similar ways end up with similar vectors, so "
    "the numbers carry meaning the rest of the network can use.",
)
t = ctx.trace
ui.chart(
    figures.embedding_heatmap(t, projector=ctx.projector),
    "embed_heatmap",
    alt="Heatmap of the prompt's token embeddings",
    caption=f"Rows: the prompt's {t.n_tokens} tokens. Columns: the {ctx.cfg.d_model} dimensions. "
    "Red is positive, blue negative.",
)
ui.chart(figures.vector_norms(t, projector=ctx.projector), "norms")

st.subheader("Which tokens are closest?")
pos = ui.slider("Token position", 0, t.n_tokens - 1, "emb_pos", 0)
st.markdown(f"Token at position {pos}: `{t.tokens[pos]!r}` (id {int(t.ids[pos])})")
near = nearest_tokens(ctx.model, t["hook_embed"][pos], k=12, exclude=int(t.ids[pos]))
ui.chart(
    figures.nearest_tokens_bar(
        [(ctx.tokenizer.token_str(i), s) for i, s in near], t.tokens[pos], projector=ctx.projector
    ),
    "nearest",
)

st.subheader("The prompt's tokens among their neighbours")
pca = embedding_pca(ctx.model, t.ids.tolist()[:40], neighbours=4)
ui.chart(
    figures.embedding_scatter(
        pca["coords"],
        [ctx.tokenizer.token_str(int(i)) for i in pca["ids"]],
        pca["is_prompt"],
        pca["explained"],
        projector=ctx.projector,
    ),
    "pca",
    caption="A 2-D picture of vectors with many dimensions: nearby points are similar, but the axes keep only "
    "part of the story (the percentages say how much). Small points are vocabulary neighbours: hover for their text.",
)

ui.seed_note(
    "embedding_matrix = nn.Embedding(vocab_size, embed_dim)\n"
    "embeddings = embedding_matrix(torch.tensor(token_indices))",
    "The same in a real GPT. GPT-2 also reuses this matrix at the output (tied weights), so a "
    "token's embedding is also how the model scores it as the next token.",
)
