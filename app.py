"""gptviz home: what a GPT does, the pipeline at a glance, the current model's card."""

import streamlit as st

from gptviz import site, ui
from gptviz.ui.overview import overview_section

st.set_page_config(page_title="gptviz · see inside a GPT", page_icon="🔎", layout="wide")
ctx = ui.sidebar()
st.title("gptviz — see inside a GPT")
if ctx is not None:  # the first screen: the whole model on the user's prompt
    st.caption(
        "Your prompt flowing through the whole GPT, top to bottom. Click any head, layer or stage to open its page; "
        "press **Next token** to watch it write."
    )
    overview_section(ctx)
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

st.subheader(site.PIPELINE)
stages = [p for p in site.section(site.PIPELINE) if p is not site.OVERVIEW]
for row in (stages[:3], stages[3:]):  # two rows of three: each label fits on one line
    for col, p in zip(st.columns(3), row, strict=True):
        with col:
            st.page_link(p.path, label=f"**{p.title}**", icon=p.icon, width="stretch")
            st.caption(p.blurb)

st.subheader("For the classroom")
for col, p in zip(st.columns(3), site.section(site.CLASSROOM), strict=True):
    col.page_link(p.path, label=f"**{p.title}**: {p.blurb}", icon=p.icon, width="stretch")

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
    st.markdown(ui.architecture(cfg) + f" · tokenizer: **{cfg.tokenizer}**")
    if card:
        st.markdown(
            f"Trained by `python -m gptviz train {card['name']}` on Tiny Shakespeare: "
            f"**{card['test_bits_per_byte']} bits per byte** on the held-out test split, "
            f"validation loss {card['best_val_loss_nats']} nats/token after {card['tokens_seen']:,} tokens "
            f"({card['wall_time_s'] / 60:.0f} min on a 2-core CPU)."
        )
        with st.expander("A sample from this model (200 tokens after “ROMEO:”)"):
            st.text(card["sample"])
