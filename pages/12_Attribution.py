"""Research — input attribution: which prompt tokens raise the chosen next token?"""

import streamlit as st

from gptviz import figures, ui
from gptviz.analysis import attribution as at
from gptviz.ui import research as rui

MAX_TOKENS = 256  # the attribution reads at most this many tokens of the prompt
METHODS = {"integrated_gradients": "Integrated gradients", "gradient_x_input": "Gradient × input"}

ctx = ui.page(
    "Input attribution",
    "Which tokens of the prompt push the model toward its next token? **Gradient × input** multiplies each "
    "token's embedding by the logit's gradient with respect to it: a first-order share. **Integrated gradients** "
    "averages that gradient along the straight line from a **baseline** (the zero embedding) to the real "
    "embeddings, so the shares add up exactly to the logit's change between the baseline and the prompt. "
    "The baseline replaces the token embeddings only: the **position vectors stay as they are**, and so does "
    "a BOS token, if the tokenizer adds one (its share is then 0).",
)
t, tok, cfg, proj = ctx.trace, ctx.tokenizer, ctx.cfg, ctx.projector
ids = [int(i) for i in t.ids[:MAX_TOKENS]]
tokens = list(t.tokens[: len(ids)])
if t.n_tokens > MAX_TOKENS:
    st.info(
        f"The attribution reads the first {MAX_TOKENS} tokens of the prompt and explains the prediction after them."
    )
top = [int(i) for i in t.top_tokens(len(ids) - 1, 10).id]
c1, c2, c3 = st.columns(3)
method = ui.select("Method", list(METHODS), "attr_method", where=c1, format_func=METHODS.get)
target = rui.token_picker("Explain the next token", "attr_target", tok, top, top[0], cfg.vocab_size, c2)
steps = 64
if method == "integrated_gradients":
    steps = ui.select_slider("Integration steps", [8, 16, 32, 64, 128], "attr_steps", at.DEFAULT_STEPS, where=c3)
contrast = None
if ui.toggle("Contrastive: why this token rather than another?", "attr_contrastive"):
    others = [i for i in top if i != target] or top
    contrast = rui.token_picker("…rather than", "attr_other", tok, others, others[0], cfg.vocab_size)
    if contrast == target:
        st.info("Pick a different token to contrast with.")
        st.stop()
fixed = [0] if getattr(tok, "adds_bos", False) and ids and ids[0] == tok.bos_id else []
key = ("attr", ctx.spec, tuple(ids), method, target, contrast, steps, tuple(fixed))
progress, slot = rui.progress_bar("Integrating gradients: steps")
with st.spinner("Attributing…"):
    attr = rui.cached(
        key, lambda: at.attribute(ctx.model, ids, target, method, contrast, len(ids) - 1, steps, fixed, progress)
    )
slot.empty()
what = repr(tok.token_str(target)) + (f" rather than {tok.token_str(contrast)!r}" if contrast is not None else "")
st.markdown(ui.md_text(f"Explaining the logit of {what} after the last token."))
ui.chart(figures.attribution_tokens(attr, tokens, projector=proj), "attr_tokens",
         caption="Red tokens raise the logit, blue ones lower it; hover a token for its number.")  # fmt: skip
ui.chart(figures.attribution_bars(attr, tokens, projector=proj), "attr_bars",
         table=attr.frame(tokens), caption="The same numbers as bars, in logit units.")  # fmt: skip
gap = attr.f_input - attr.f_baseline
if method == "integrated_gradients":
    st.caption(
        f"Completeness: the shares add up to {attr.scores.sum():.4f}; the logit moves by {gap:.4f} from the baseline "
        f"to the prompt (gap {attr.delta:+.1e}, {steps} Gauss–Legendre steps)."
    )
else:
    st.caption(
        f"Gradient × input is a local estimate: its shares add up to {attr.scores.sum():.4f}, while the logit moves "
        f"by {gap:.4f} from the baseline. Integrated gradients close that gap."
    )
