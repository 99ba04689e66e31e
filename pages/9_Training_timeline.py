"""Classroom: a bundled model during training, from random weights to trained."""

import numpy as np
import streamlit as st

import gptviz
from gptviz import figures, ui
from gptviz.analysis import generation as gen
from gptviz.analysis.timeline import Sweep, history_value, models_with_snapshots, prompt_loss, snapshot_sweep
from gptviz.checkpoints import bundled_card, bundled_snapshots
from gptviz.figures import attention as fa
from gptviz.figures.training import loss_curve, prediction_timeline
from gptviz.tokenizer import get_tokenizer

ctx = ui.page(
    "Training timeline",
    "A model starts with **random weights** and learns by predicting the next token of its training "
    "text, millions of times. gptviz ships snapshots of its bundled models taken during "
    "training: move the slider to see its loss fall, its attention heads find their jobs, and its "
    "predictions go from noise to Shakespeare-like guesses. The prompt is the one in the sidebar.",
)
P, text = ctx.projector, ctx.trace.text
models = models_with_snapshots()
if not models:
    st.info("No training snapshots of a bundled model ship with this install.")
    st.stop()
name = ui.select("Model", models, "tl_model", format_func=lambda n: f"bundled:{n}")
steps = bundled_snapshots(name)
step = ui.select_slider("Training step (snapshot)", steps, "tl_step", steps[0])
spec = f"bundled:{name}@{step}"
model = ui.load_model(spec)
t = ui.get_trace(spec, text)
tok = get_tokenizer(model.cfg.tokenizer)
history = bundled_card(name).get("history", [])


@st.cache_data(max_entries=8, show_spinner="Running every snapshot on the prompt…")
def across(name: str, text: str, steps: tuple[int, ...]) -> Sweep:
    """Every snapshot of ``name`` on the prompt (models cached once, traces not kept)."""
    traces = [gptviz.run(ui.load_model(f"bundled:{name}@{s}"), text) for s in steps]
    return snapshot_sweep(traces, steps, get_tokenizer(traces[0].config.tokenizer))


val = history_value(history, step)
sweep = across(name, text, tuple(steps))
ids, matrix, losses = sweep.ids, sweep.probs, sweep.losses
c = st.columns(4)
c[0].metric("snapshot", f"step {step:,}", help=f"{steps.index(step) + 1} of {len(steps)} snapshots")
c[1].metric("validation loss", f"{val:.3f}" if val is not None else "—", help="From the training log (nats per token)")
c[2].metric("loss on your prompt", f"{prompt_loss(t):.3f}", help="Mean cross-entropy of each next token of the prompt")
c[3].metric("random guessing", f"{np.log(model.cfg.vocab_size):.3f}", help="ln(vocabulary size): a uniform guess")
here = losses[steps.index(step)]
curve = loss_curve(history, step, here, (steps, losses), float(np.log(model.cfg.vocab_size)), projector=P)
ui.chart(
    curve,
    "tl_loss",
    caption="Loss = the average surprise at the true next token, in nats: ln(vocabulary) for random guessing (the "
    "dotted line, where training starts), lower when the model expects the right token. Training loss is measured "
    "on the text it learns from, validation loss on text it never trains on (both from the training log); the "
    "dashed curve is each snapshot on your prompt.",
)

st.subheader("Attention at this step")
c = st.columns(2)
layer = ui.slider("Layer", 0, model.cfg.n_layer - 1, "attn_layer", 0, where=c[0])
head = ui.slider("Head", 0, model.cfg.n_head - 1, "attn_head", 0, where=c[1])
ui.chart(
    fa.attention_pattern(t, layer, head, projector=P, title=f"Step {step}: layer {layer}, head {head}"),
    "tl_attn",
    caption="At step 0 every head spreads its attention almost evenly; trained heads pick their tokens.",
)

st.subheader("Predictions at this step")
probs, logits = t.probs(), t.logits()
top = gen.top_ids(probs, 10)
names = [tok.token_str(int(i)) for i in top]
ui.chart(figures.next_token_distribution(names, probs[top], logits[top], top, t.tokens[-1], projector=P), "tl_next")
names = [tok.token_str(i) for i in ids]
summary = sweep.table([figures.visible(n) for n in names])
ui.chart(
    prediction_timeline(steps, names, matrix, step, projector=P),
    "tl_predictions",
    table=summary,
    caption="The five tokens the final snapshot likes best after the prompt, and how likely each snapshot found them.",
)
