"""Stage 4a — self-attention: every token looks back at the tokens before it."""

import numpy as np
import streamlit as st

from gptviz import ui
from gptviz.analysis.attention import STAT_HELP, head_stats, induction_scores
from gptviz.figures import attention as fa

ctx = ui.page(
    "4a · Self-attention",
    "Self-attention is how tokens share information. Each token asks a **query** (what am I looking "
    "for?), every token offers a **key** (what do I contain?) and a **value** (what do I pass on?). "
    "The query–key match decides *how much* each token looks at each earlier one; it then receives "
    "that mix of values. A layer has several **heads** doing this side by side, each free to look "
    "for something different: the previous word, the start of the sentence, an earlier copy…",
)
t, cfg, pj = ctx.trace, ctx.cfg, ctx.projector


@st.cache_data(show_spinner="Measuring induction on repeated random tokens…", max_entries=8)
def induction(spec: str, seed: int = 0) -> np.ndarray:
    return induction_scores(ui.load_model(spec), seed=seed)


def open_clicked_head() -> None:
    points = (st.session_state.get("attn_grid") or {}).get("selection", {}).get("points", [])
    cell = fa.grid_cell(points[0], cfg.n_head) if points else None
    if cell:
        for key, value in zip(("attn_layer", "attn_head"), cell, strict=True):
            ui.set_choice(key, value)


c1, c2 = st.columns(2)
layer = ui.slider("Layer", 0, cfg.n_layer - 1, "attn_layer", 0, where=c1)
head = ui.slider("Head", 0, cfg.n_head - 1, "attn_head", 0, where=c2)
ui.quiz_section("attention", ctx, layer, head)
ui.chart(
    ui.figure(fa.attention_pattern, t, layer, head, projector=pj, key="attn_pattern"),
    "attn_pattern",
    alt="Attention pattern of one head",
    caption="Row = the token doing the looking (query), column = the token looked at (key); bright = high weight, "
    "each row sums to 1. The grey triangle is the **causal mask**: a GPT may not peek at later tokens.",
)

if cfg.kv_heads < cfg.n_head:
    G = cfg.n_head // cfg.kv_heads
    st.subheader("Grouped-query attention: query heads share keys and values")
    ui.chart(
        fa.gqa_grid(cfg, head, projector=pj),
        "attn_gqa",
        caption=f"This model has {cfg.n_head} query heads but only {cfg.kv_heads} key/value "
        f"head{'s' * (cfg.kv_heads > 1)}: each block of {G} neighbouring query heads reads the same keys and values "
        f"(query head h uses K/V head h // {G}). Each query head still asks its own question, so its pattern is its "
        "own; sharing only saves the memory of the keys and values kept for generation. "
        f"Head {head} (outlined) reads K/V head {fa.kv_head(t, head)}.",
    )

st.subheader("All heads at once")
ui.chart(
    ui.figure(fa.attention_grid, t, (layer, head), projector=pj, key="attn_grid"),
    "attn_grid",
    caption="Each small square is one head's pattern (long prompts are shrunk, keeping the brightest cell of each "
    "block). Stripes just below the diagonal look one token back; a bright first column parks attention on the "
    "first token.",
    on_select=open_clicked_head,
    selection_mode="points",
)

n = min(t.n_tokens, 20)
st.subheader(f"Step by step: layer {layer}, head {head} on the first {n} tokens")
notes = []
if cfg.pos == "rotary":
    notes.append(
        "Q and K are shown **after their rotation by position** (rotary embedding, see the Positional encoding "
        "page): those are the vectors the scores are made of."
    )
if cfg.qk_norm:
    notes.append("Before rotating, each query and key head is RMS-normalized on its own (q/k norm, as in Qwen3).")
if cfg.kv_heads < cfg.n_head:
    notes.append(
        f"K and V are those of **K/V head {fa.kv_head(t, head)}**, which query head {head} shares with "
        f"{cfg.n_head // cfg.kv_heads - 1} other query head(s)."
    )
if notes:
    st.markdown(" ".join(notes))
steps = fa.attention_steps(t, layer, head, n, projector=pj)
slots = [st.container(), *st.columns(2), *st.columns(2)]
for i, (slot, fig, note) in enumerate(zip(slots, steps, fa.STEP_NOTES, strict=True)):
    with slot:
        ui.chart(fig, f"attn_step{i + 1}", caption=note)

st.subheader("Attention from one token")
q = ui.slider("Query position", 0, t.n_tokens - 1, "attn_query", t.n_tokens - 1)
ui.chart(
    fa.attention_from_token(t, layer, q, projector=pj),
    "attn_from_token",
    caption=f"How much the token at position {q} looks at each earlier token, in each head of layer {layer}.",
)

st.subheader("What does each head do? Head statistics")
stats = head_stats(t, induction(ctx.spec))
st.dataframe(
    stats.drop(columns=["layer", "head index"]),
    column_config={c: st.column_config.NumberColumn(c, format="%.3f", help=STAT_HELP[c]) for c in STAT_HELP},
    width="stretch",
    height="content" if len(stats) <= 32 else 720,  # every head without scrolling, up to 32 (GPT-2: 144)
)
st.markdown("\n".join(f"- **{k}**: {v}" for k, v in STAT_HELP.items()))
st.caption("Click a column header to sort. Induction is measured on random tokens, the others on your prompt.")

st.subheader("Ablation: switch heads off")
st.markdown(
    "Switch heads off and see what the model predicts without them: **zero** replaces a head's output by 0, "
    "**mean** by its average over the prompt (keeps the average, drops what depends on the token)."
    + (
        " Heads here are **query heads**: ablating one removes its output only; the K/V head it shares keeps "
        "serving the other query heads of its group."
        if cfg.kv_heads < cfg.n_head
        else ""
    )
)
heads = [f"{a}.{b}" for a in range(cfg.n_layer) for b in range(cfg.n_head)]
ab = ui.ablation_picker(ctx, "heads", heads, "Heads to ablate (layer.head)", "Replace each head's output by")
after = ui.ablation_result(
    ctx, ab, "attn_ablation_next", k=8, note=" (neurons come from the feed-forward page)" * bool(ab.neurons)
)
if after is not None:
    title = f"Layer {layer}, head {head} after the ablation ({ab.describe()})"
    ui.chart(
        ui.figure(fa.attention_pattern, after, layer, head, projector=pj, title=title, key="attn_pattern_ablated"),
        "attn_pattern_ablated",
        caption="A head's pattern only changes if an ablated head sits in an *earlier* layer.",
    )

ui.seed_note(
    "attention_output, _ = nn.MultiheadAttention(embed_dim, num_heads)(embeddings, embeddings, embeddings)",
    "The seed's call has **no causal mask**, so every token also sees the future; a GPT masks it "
    "(pass `attn_mask=nn.Transformer.generate_square_subsequent_mask(T)`). It also expects **sequence-first** input "
    "(`batch_first=False`: `[T, B, D]`), while our model uses `[B, T, D]`.",
)
