"""gptviz home: what a GPT does, the pipeline at a glance, the current model's card."""

import streamlit as st

from gptviz import ui

st.set_page_config(page_title="gptviz · see inside a GPT", page_icon="🔎", layout="wide")
ctx = ui.sidebar()
st.title("gptviz — see inside a GPT")
st.markdown(
    "A GPT reads text as a sequence of **tokens**, turns each into a vector, lets every token "
    "**look back** at the ones before it through layers of self-attention and feed-forward "
    "networks, and finally scores every word in its vocabulary as the **next token**. gptviz runs "
    "a real GPT on *your* prompt, records every intermediate number in one forward pass, and "
    "shows each stage on its own page. Change the prompt or the model in the sidebar: every page follows."
)
st.info(
    "**Start here (classroom):** type a sentence in the sidebar, then walk the five stages "
    "left to right below. Every view has its own link: copy the URL to share exactly what you see."
)

st.subheader("The pipeline")
stages = [
    ("pages/1_Tokenization.py", "1 · Tokenization", "text → token ids (BPE)"),
    ("pages/2_Embeddings.py", "2 · Embeddings", "ids → vectors"),
    ("pages/3_Positional_encoding.py", "3 · Positional encoding", "vectors → vectors that know their position"),
    ("pages/4_Attention.py", "4a · Self-attention", "each token looks back at earlier ones"),
    ("pages/5_Feed-forward_and_residual.py", "4b · Feed-forward & residual", "each token is processed on its own"),
    ("pages/6_Output.py", "5 · Output", "scores → the next token"),
]
for row in (stages[:3], stages[3:]):  # two rows of three: each label fits on one line
    for col, (path, label, what) in zip(st.columns(3), row, strict=True):
        with col:
            st.page_link(path, label=f"**{label}**", width="stretch")
            st.caption(what)

st.subheader("For the classroom")
c = st.columns(3)
c[0].page_link("pages/7_Lesson.py", label="**Guided lesson**: predict, then reveal", width="stretch")
c[1].page_link("pages/8_Side_by_side.py", label="**Side by side**: two models, one prompt", width="stretch")
c[2].page_link("pages/9_Training_timeline.py", label="**Training timeline**: from random to trained", width="stretch")

if ctx is not None:
    cfg, card = ctx.cfg, getattr(ctx.model, "card", {}) or {}
    st.subheader(f"The model: {ctx.spec}")
    c = st.columns(6)
    c[0].metric("parameters", f"{ctx.model.num_params():,}")
    c[1].metric("layers", cfg.n_layer)
    c[2].metric("heads per layer", cfg.n_head)
    c[3].metric("vector width", cfg.d_model)
    c[4].metric("context (tokens)", cfg.n_ctx)
    c[5].metric("vocabulary", f"{cfg.vocab_size:,}")
    st.markdown(
        f"Positions: **{cfg.pos}** · LayerNorm: **{cfg.norm}-LN** · activation: **{cfg.act}** · "
        f"output weights {'tied to the embeddings' if cfg.tie_weights else 'separate'} · tokenizer: **{cfg.tokenizer}**"
    )
    if card:
        st.markdown(
            f"Trained by `python -m gptviz train {card['name']}` on Tiny Shakespeare: "
            f"**{card['test_bits_per_byte']} bits per byte** on the held-out test split, "
            f"validation loss {card['best_val_loss_nats']} nats/token after {card['tokens_seen']:,} tokens "
            f"({card['wall_time_s'] / 60:.0f} min on a 2-core CPU)."
        )
        with st.expander("A sample from this model (200 tokens after “ROMEO:”)"):
            st.text(card["sample"])
