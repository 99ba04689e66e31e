"""Research — activation patching: which activations carry the answer?"""

import pandas as pd
import streamlit as st

from gptviz import figures, ui
from gptviz.analysis import patching as pt
from gptviz.ui import research as rui

# Classic pairs (the indirect-object task); the first whose two prompts have the same token
# count under the model's tokenizer is the default (the bundled BPEs split "Mary" and "John").
PAIRS = (
    ("When Mary and John went to the store, John gave a drink to", "When Mary and John went to the store, Mary gave a drink to"),
    ("When Romeo and Juliet went to the church, Romeo gave a ring to", "When Romeo and Juliet went to the church, Juliet gave a ring to"),
    ("When Henry and Edward went to the church, Edward gave a ring to", "When Henry and Edward went to the church, Henry gave a ring to"),
)  # fmt: skip

ctx = ui.page(
    "Activation patching",
    "Run the model on a **corrupted** prompt, copy one activation from the run on the **clean** prompt, and see how "
    "far the answer moves back: the activations that restore it are the ones that carry it. The metric is the logit "
    "difference between two answer tokens after the last position, **normalised**: 1 = the patch restores the clean "
    "answer fully, 0 = no effect. *Noising* does the opposite (corrupted activations into the clean run; 1 = the "
    "answer moves fully to the corrupted one). Attribution patching, a one-pass gradient estimate, is shown beside "
    "the exact result.",
)
model, tok, cfg, proj = ctx.model, ctx.tokenizer, ctx.cfg, ctx.projector
default = next((p for p in PAIRS if len(tok.encode(p[0])) == len(tok.encode(p[1]))), PAIRS[0])
c1, c2 = st.columns(2)
clean = rui.text_box("Clean prompt", "patch_clean", default[0], where=c1)
corrupt = rui.text_box("Corrupted prompt", "patch_corrupt", default[1], where=c2)
ids_clean, ids_corrupt = tok.encode(clean), tok.encode(corrupt)
c1.caption(f"{len(ids_clean)} tokens")
c2.caption(f"{len(ids_corrupt)} tokens")
try:
    pt.check_pair(ids_clean, ids_corrupt, cfg.n_ctx)
except pt.PatchingError as exc:
    st.warning(f"Cannot patch these prompts: {ui.md_text(exc)}.")
    if isinstance(exc, pt.TokenCountMismatch):
        st.markdown("Both tokenizations, side by side: change a word until the counts match.")
        t1, t2 = st.columns(2)
        t1.dataframe(pd.DataFrame(rui.token_table(tok, ids_clean)), hide_index=True, key="patch_tok_clean")
        t2.dataframe(pd.DataFrame(rui.token_table(tok, ids_corrupt)), hide_index=True, key="patch_tok_corrupt")
    st.stop()
tokens = [tok.token_str(i) for i in ids_clean]
diff = [p for p in range(len(ids_clean)) if ids_clean[p] != ids_corrupt[p]]
if diff:
    shown = ", ".join(f"{p} ({tokens[p]!r} → {tok.token_str(ids_corrupt[p])!r})" for p in diff[:8])
    st.caption(ui.md_text(f"The prompts differ at position(s) {shown}."))
else:
    st.info("The two prompts are the same tokens: there is nothing to patch. Change the corrupted one.")
    st.stop()

default_metric = rui.cached(("patch_metric", ctx.spec, tuple(ids_clean), tuple(ids_corrupt)),
                            lambda: pt.default_metric(model, ids_clean, ids_corrupt))  # fmt: skip
candidates = pt.top_answers(model, ids_clean, ids_corrupt, 8)
c1, c2, c3, c4 = st.columns(4)
answer = rui.token_picker("Clean answer", "patch_answer", tok, candidates, default_metric.answer, cfg.vocab_size, c1)
wrong = rui.token_picker("Corrupted answer", "patch_wrong", tok, candidates, default_metric.wrong, cfg.vocab_size, c2)
kind = ui.select("What to patch", list(pt.KINDS), "patch_kind", where=c3, format_func=pt.KIND_LABELS.get)
direction = ui.select(
    "Direction", ["denoise", "noise"], "patch_dir", where=c4,
    format_func={"denoise": "denoising (clean → corrupted)", "noise": "noising (corrupted → clean)"}.get,
)  # fmt: skip
metric = pt.LogitDiff(answer, wrong)
n = len(ids_clean)
need = pt.work(kind, cfg.n_layer, cfg.n_head, n)
key = (ctx.spec, tuple(ids_clean), tuple(ids_corrupt), answer, wrong, kind, direction)
st.caption(
    f"This map costs {need:,} forward-pass equivalents (the cap per request is {pt.MAX_WORK:,}), "
    f"run in batches; the gradient estimate costs about 4."
)
if answer == wrong:
    st.info("Pick two different answer tokens: their logit difference is the metric.")
    st.stop()
approx = rui.cached(
    ("patch_attr", *key), lambda: pt.attribution_patching(model, ids_clean, ids_corrupt, kind, metric, direction)
)
exact = None
try:
    progress, slot = rui.progress_bar("Patching…")
    exact = rui.cached(("patch_exact", *key),
                       lambda: pt.patch(model, ids_clean, ids_corrupt, kind, metric, direction, progress=progress))  # fmt: skip
    slot.empty()
except pt.WorkCapError as exc:
    st.warning(f"{ui.md_text(exc)}. The gradient estimate below is still shown.")
if approx.clean == approx.corrupt or abs(approx.clean - approx.corrupt) < 1e-9:
    st.warning("Both prompts give the same logit difference for these answers: nothing to restore, pick others.")
    st.stop()
names = ui.md_text(f"{tok.token_str(answer)!r} − {tok.token_str(wrong)!r}")
st.markdown(
    f"Logit difference {names}: **{approx.clean:.3f}** on the clean prompt, **{approx.corrupt:.3f}** on the corrupted one."
)


def open_clicked(key: str) -> None:
    """A click on a map cell: remember its layer (and head) for the attention and residual pages."""
    points = (st.session_state.get(key) or {}).get("selection", {}).get("points", [])
    cell = figures.clicked_cell(points[0]) if points else None
    if cell:
        ui.set_choice("attn_layer", cell[0])
        if cell[1] is not None:
            ui.set_choice("attn_head", cell[1])
        st.session_state["patch_opened"] = cell


layer = None
if kind == "head_pos":
    layer = ui.slider("Layer shown", 0, cfg.n_layer - 1, "patch_layer", cfg.n_layer - 1)
c1, c2 = st.columns(2)
with c1:
    if exact is not None:
        ui.chart(figures.patching_heatmap(exact, tokens, layer=layer, projector=proj), "patch_exact",
                 on_select=lambda: open_clicked("patch_exact"), selection_mode="points",
                 caption="Exact: one patched forward pass per cell. Hover for the raw metric; click a cell to open it.")  # fmt: skip
with c2:
    ui.chart(figures.patching_heatmap(approx, tokens, layer=layer, projector=proj), "patch_approx",
             on_select=lambda: open_clicked("patch_approx"), selection_mode="points",
             caption="Attribution patching: (a_clean − a_corrupted) · ∂metric/∂a, one forward and one backward pass.")  # fmt: skip
opened = st.session_state.get("patch_opened")
if opened:
    what = f"head {opened[0]}.{opened[1]}" if opened[1] is not None else f"layer {opened[0]}"
    st.page_link("pages/4_Attention.py", label=f"Open {what} on the attention page", icon=":material/visibility:")
if exact is not None:
    agree = pt.agreement(exact, approx)
    st.subheader("How good is the gradient estimate?")
    st.markdown(
        f"Correlation with the exact map **r = {agree['pearson']:.3f}**, largest difference "
        f"**{agree['max_abs_diff']:.3f}**; {'the same' if agree['same_top'] else 'a different'} cell comes first."
    )
    ui.chart(figures.patching_agreement(exact, approx, agree, projector=proj), "patch_agreement",
             caption="Each dot is one patch. On the dotted line the estimate is exact; it drifts where the model "
             "is far from linear between the two runs (LayerNorm, attention's softmax).")  # fmt: skip
