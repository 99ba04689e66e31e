"""Stage 4b — feed-forward network, residual stream, LayerNorm; logit lens, attribution, ablation."""

import numpy as np
import streamlit as st

from gptviz import ui
from gptviz.analysis.lens import (
    direct_logit_attribution,
    layernorm_names,
    layernorm_view,
    lens_window,
    logit_lens,
    norm_label,
)
from gptviz.figures import residual as fig
from gptviz.hooks import block_name

ctx = ui.page(
    "4b · Feed-forward & residual stream",
    "After attention has mixed information *between* tokens, each token's vector goes through a small "
    "**feed-forward network** on its own: widen it (×4), apply a non-linearity, project it back. Its hidden "
    "units are called **neurons**. Every sub-layer *adds* its result to a running vector per token, the "
    "**residual stream**, and **LayerNorm** keeps that vector's scale in check. Below: which neurons fire, how "
    "the stream grows, what LayerNorm does, what the stream already predicts after each layer, and what "
    "happens when you switch neurons off.",
)
t, cfg, P = ctx.trace, ctx.cfg, ctx.projector
tok_str, act = ctx.tokenizer.token_str, {"relu": "ReLU", "silu": "SiLU"}.get(cfg.act, "GELU")
gated, NORM = cfg.ffn == "gated", norm_label(cfg)
ffn_kind = f"gated ({act} gate × linear up, SwiGLU)" if gated else f"activation **{act}**"
parallel = "; **parallel** blocks (attention and feed-forward both read the layer's input)" if cfg.parallel else ""
st.caption(
    f"This model: **{cfg.norm}-norm {NORM}**, feed-forward {ffn_kind}, {cfg.d_mlp:,} neurons per layer{parallel}."
)

st.subheader("Which neurons fire?")
layer = ui.slider("Layer", 0, cfg.n_layer - 1, "ff_layer", 0)
acts = t["post", layer]
top_n = ui.slider("Neurons shown (the most active ones)", 1, min(cfg.d_mlp, 256), "ff_top", min(cfg.d_mlp, 64))
ui.chart(
    fig.mlp_activation_heatmap(acts, t.tokens, layer, top_n, projector=P),
    "ff_mlp",
    caption=(
        f"Each row is one neuron (its value {act}(gate) × up, see below), each column a token; red positive, blue "
        "negative."
        if gated
        else f"Each row is one neuron (its value after the {act}), each column a token; the brighter, the stronger "
        f"it fires ({act} leaves almost nothing below 0, so the scale starts at the smallest value)."
    )
    + f" Only the {min(top_n, cfg.d_mlp)} neurons with the largest activation anywhere in the prompt are drawn "
    f"(of {cfg.d_mlp:,}).",
)
pos = ui.slider(
    f"Token position (here, for {NORM} and the logit lens below)", 0, t.n_tokens - 1, "ff_pos", t.n_tokens - 1
)
ui.chart(fig.top_neurons_bar(acts, pos, t.tokens, layer, projector=P), "ff_top_neurons")
if gated:
    st.subheader("A gated feed-forward network: gate × up")
    st.markdown(
        f"This model's feed-forward network is **gated** (SwiGLU, as in Llama): the token's vector goes through "
        f"*two* matrices side by side. **gate** is passed through {act} and decides, neuron by neuron, *how much* "
        "passes; **up** is a plain linear value saying *what* passes. Their product is what the last matrix, "
        f"**down**, reads: `down({act}(gate·x) × up·x)`. So a neuron's activation above is this product, and it can "
        "be negative: an open gate times a negative up value. A gate near 0 shuts its neuron whatever up says."
    )
    ui.chart(
        fig.gated_neurons_bar(
            t["pre", layer], t["pre_linear", layer], acts, pos, t.tokens, layer, cfg.act, projector=P
        ),
        "ff_gated",
        caption=f"The neurons with the largest product at token {pos}: the {act} of the gate (`mlp.hook_pre` after "
        f"{act}), up (`mlp.hook_pre_linear`) and their product (`mlp.hook_post`).",
    )

st.subheader("The residual stream")
st.markdown(
    "Top: how long each token's vector is after every layer. In a pre-norm model (GPT-2, Llama) nothing rescales the "
    "stream, so it tends to grow layer by layer; in the seed's post-LN model every layer ends on a LayerNorm, so its "
    "length stays about the same. Below: how big a change attention and the feed-forward network make at each layer "
    "next to the stream they add to (averages over the prompt's tokens; whiskers show how much tokens differ)."
    + (
        " In this model's **parallel** blocks both sub-layers read the layer's input and both outputs are added at "
        "once: the stream after the layer is still input + attention output + feed-forward output."
        if cfg.parallel
        else ""
    )
)
ui.chart(fig.residual_norm_heatmap(t, projector=P), "ff_resid_norm")
ui.chart(fig.sublayer_norms(t, projector=P), "ff_sublayer")

st.subheader(f"{NORM}, step by step")
names = layernorm_names(cfg)
ln = ui.select(NORM, names, "ff_ln", default=block_name(layer, "ln2"))
view = layernorm_view(ctx.model, t, ln, pos)
if view.kind == "rmsnorm":
    how_norm = (
        "**RMSNorm** is LayerNorm made simpler: it subtracts **no mean**, divides the vector by its **root mean "
        "square** √(mean(x²) + ε), then multiplies by a learned scale γ (one per dimension). There is **no shift** β. "
        "The vector keeps its direction; only its length is set."
    )
else:
    how_norm = (
        "LayerNorm subtracts the vector's mean, divides by its standard deviation, then multiplies by a learned "
        "scale γ and adds a learned shift β (one of each per dimension)."
    )
st.markdown(f"**{ln}**: {view.role}. {how_norm}")
ui.chart(fig.layernorm_figure(view, t.tokens[pos], projector=P), "ff_layernorm")

st.subheader("Logit lens: what would the model say if it stopped here?")


@st.cache_data(max_entries=16, show_spinner="Decoding every layer…")
def _lens(spec: str, text: str, first: int, stop: int, _model, _trace):  # model and trace fixed by (spec, text)
    return logit_lens(_model, _trace, positions=range(first, stop))


# Decoding costs one unembedding per layer and position (a large vocabulary makes it the page's
# slowest step), and past MAX_CELL_TEXT_TOKENS columns the guesses no longer fit in the cells: by
# default the lens decodes the window of positions up to the token position chosen above.
window = lens_window(t.n_tokens, pos, fig.MAX_CELL_TEXT_TOKENS)
if t.n_tokens > len(window) and ui.toggle(
    f"Decode all {t.n_tokens} positions (slower; the guesses no longer fit in the cells)", "ff_lens_all"
):
    window = range(t.n_tokens)
lens = _lens(ctx.spec, t.text, window.start, window.stop, ctx.model, t)
how = f"through the final {NORM}" if cfg.final_ln else "the seed's stream is already normalized after every layer"
tied = " With tied weights the first row mostly predicts the input token itself." if cfg.tie_weights else ""
part = (
    ""
    if len(window) == t.n_tokens
    else f" Shown: positions {window.start}–{window.stop - 1} of {t.n_tokens}, a window of {len(window)} that ends at "
    "the token position chosen above, or starts at 0 (move it to see others)."
)
ui.chart(
    fig.logit_lens_heatmap(lens, t.tokens, projector=P),
    "ff_lens",
    caption=f"Each row decodes the residual stream after one layer with the model's own output layer ({how}). The "
    f"last row is the model's real prediction; colour is its probability. Long tokens are cut short (…): hover a "
    f"cell for the whole token.{tied}{part}",
)

st.subheader("Direct logit attribution: who pushed the prediction?")
top_ids = np.argsort(-t.probs())[:10].tolist()
target = ui.select(
    "Target token (next after the last position)", top_ids, "ff_target", format_func=lambda i: repr(tok_str(i))
)
attr = direct_logit_attribution(ctx.model, t, target)
ui.chart(
    fig.logit_attribution(attr, tok_str(target), projector=P),
    "ff_dla",
    caption=f"Each bar: how much one component's write into the residual stream raises (red) or lowers (blue) the "
    f"logit of {tok_str(target)!r}. This split is **{attr.method}**."
    + (
        " The first bar is the token embedding alone: a rotary model adds no position vector."
        if cfg.pos == "rotary"
        else ""
    )
    + (
        " The output layer is separate from the embeddings (untied), so its own weights are used."
        if not cfg.tie_weights
        else ""
    ),
)

st.subheader("Neuron ablation: switch neurons off")
st.markdown(
    "Knock out neurons and watch the prediction: **zero** replaces a neuron's activation by 0 at every "
    "position, **mean** by its average over the prompt. A big change (high KL divergence) means the model "
    "relied on them. Tip: try the most active neurons from the bar chart above."
)
neurons = [f"{layer}.{n}" for n in range(cfg.d_mlp)]  # this layer's, plus any already off elsewhere
ab = ui.ablation_picker(ctx, "neurons", neurons, "Neurons to ablate (layer.neuron)", "Replace by")
ui.ablation_result(ctx, ab, "ff_ablation", k=10, note=" (heads come from the attention page)" * bool(ab.heads))

ui.seed_note(
    "feed_forward_output = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, "
    "embed_dim))(attention_output)\n"
    "embeddings = nn.LayerNorm(embed_dim)(embeddings + attention_output)\n"
    "embeddings = nn.LayerNorm(embed_dim)(embeddings + feed_forward_output)",
    "The seed applies the feed-forward network to the attention output alone; a real GPT applies it to the "
    "residual stream (x + attention output) and adds its output back. GPT-2 also moves LayerNorm *before* "
    "each sub-layer (pre-LN, plus one final LayerNorm) and uses GELU instead of ReLU.",
)
