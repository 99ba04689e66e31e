"""Classroom: the same prompt through two or three models, next to each other."""

import streamlit as st

from gptviz import figures, ui
from gptviz.analysis.timeline import models_with_snapshots
from gptviz.checkpoints import CheckpointError, bundled_snapshots
from gptviz.figures import attention as fa
from gptviz.tokenizer import get_tokenizer

NONE = "(none)"

ctx = ui.page(
    "Side by side",
    "The same prompt through two or three models. Do they cut it into the same tokens? Does the same "
    "head look at the same places? Do they agree on the next token? Compare three generations of design "
    "(the seed: 2017, gpt2-style: 2019, llama-style: today), a model with itself during training "
    "(`@step`), or GPT-2 if it is cached.",
)
P, text = ctx.projector, ctx.trace.text
snapshots = [f"bundled:{n}@{s}" for n in models_with_snapshots() for s in bundled_snapshots(n)]
options = [o for o in ui.model_options() if o != ui.OTHER] + snapshots
asked = (ctx.spec, ui.from_url("sbs_left"), ui.from_url("sbs_right"), ui.from_url("sbs_third"))
options += [s for s in asked if s and s != NONE and s not in options]
c = st.columns(3)
specs = [
    ui.select("Left model", options, "sbs_left", "bundled:seed", where=c[0]),
    ui.select("Right model", options, "sbs_right", "bundled:gpt2-style", where=c[1]),
    ui.select("Third model (optional)", [NONE, *options], "sbs_third", NONE, where=c[2]),
]
specs = [s for s in specs if s != NONE]
runs = []
for col, spec in zip(c, specs, strict=False):
    try:
        model = ui.load_model(spec)
        runs.append((spec, model, ui.get_trace(spec, text)))
    except (CheckpointError, OSError, ValueError) as exc:
        col.warning(f"Could not load {spec}: {exc}")
        runs.append(None)
if not any(runs):
    st.stop()

most = [r[1].cfg for r in runs if r]
c = st.columns(2)
layer = ui.slider("Layer", 0, max(m.n_layer for m in most) - 1, "sbs_layer", 0, where=c[0])
head = ui.slider("Head", 0, max(m.n_head for m in most) - 1, "sbs_head", 0, where=c[1])


def each(draw) -> None:
    """Call ``draw(i, spec, model, trace)`` in each model's column (two or three)."""
    cols = st.columns(len(runs))
    for i, (col, r) in enumerate(zip(cols, runs, strict=True)):
        if r is not None:
            with col:
                draw(i, *r)


st.subheader("Tokens")


def tokens(i, spec, model, t) -> None:
    cfg = model.cfg
    st.markdown(f"**{spec}**: {model.num_params():,} parameters, {cfg.n_layer} layers × {cfg.n_head} heads")
    st.caption(ui.architecture(cfg))
    if len(runs) < 3:
        title, row = f"{cfg.tokenizer}: {t.n_input_tokens} tokens", 30
    else:  # a narrow column: the tokenizer's name above the chart, not in a title it would cut
        title, row = f"{t.n_input_tokens} tokens", 20
        st.caption(f"Tokenizer: {cfg.tokenizer}")
    fig = figures.trace_chips(t, title=title, row_width=row, projector=P)
    ui.chart(fig, f"sbs_tokens_{i}", table=figures.token_table(t.tokens, t.ids.tolist(), t.token_bytes))


each(tokens)
st.subheader(f"Attention of layer {layer}, head {head}")


def attention(i, spec, model, t) -> None:
    ly, hd = min(layer, model.cfg.n_layer - 1), min(head, model.cfg.n_head - 1)
    if (ly, hd) != (layer, head):
        st.caption(f"{spec} has {model.cfg.n_layer} layers × {model.cfg.n_head} heads: showing layer {ly}, head {hd}.")
    ui.chart(fa.attention_pattern(t, ly, hd, projector=P, title=f"{spec}: layer {ly}, head {hd}"), f"sbs_attn_{i}")


each(attention)
st.subheader("Next-token predictions")


def prediction(i, spec, model, t) -> None:
    fig = figures.next_token_chart(t, get_tokenizer(model.cfg.tokenizer).token_str, projector=P)
    ui.chart(fig.update_layout(title={"text": f"{spec}: after {figures.label(t.tokens[-1])}"}), f"sbs_next_{i}")


each(prediction)
st.caption(
    "Models with different tokenizers see different tokens, so their heads and predictions are about "
    "different pieces of text; ids are only comparable between models that share a tokenizer."
)
