"""Research — the information-flow graph: which routes lead to the prediction?"""

import pandas as pd
import streamlit as st

from gptviz import figures, ui
from gptviz.analysis import flow as fl
from gptviz.ui import research as rui

TAUS = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5]

ctx = ui.page(
    "Information flow",
    "Every vector the model adds to its residual stream is a sum: the stream so far, each head's contribution from "
    "each earlier position, the feed-forward output. Each part is weighed by how close it brings the sum to its "
    "final value, max(0, ‖y‖₁ − ‖y − e‖₁), normalised over the parts of that sum (Ferrando & Voita, 2024, "
    "*Information Flow Routes*). Keeping the edges above a threshold τ, walking back from one prediction, "
    "leaves the routes the information took.",
)
t, tok, cfg, proj = ctx.trace, ctx.tokenizer, ctx.cfg, ctx.projector
ids = [int(i) for i in t.ids[: fl.MAX_FLOW_TOKENS]]
tokens = list(t.tokens[: len(ids)])
if t.n_tokens > fl.MAX_FLOW_TOKENS:
    st.info(f"The graph reads the first {fl.MAX_FLOW_TOKENS} tokens of the prompt (its token cap).")
c1, c2 = st.columns(2)
pos = ui.slider("Prediction after position", 0, len(ids) - 1, "flow_pos", len(ids) - 1, where=c1)
tau = ui.select_slider("Threshold τ (edges kept at or above)", TAUS, "flow_tau", 0.04, where=c2)
progress, slot = rui.progress_bar("Weighing every route: layer")
graph = rui.cached(("flow", ctx.spec, tuple(ids)), lambda: fl.information_flow(ctx.model, ids, progress=progress))
slot.empty()
edges = graph.graph(pos, tau)
path = graph.strongest_path(pos)
nxt = t.top_tokens(pos, 1)
guess = ui.md_text(repr(str(nxt.token[0]))) if len(nxt) else "?"


def open_clicked() -> None:
    points = (st.session_state.get("flow_graph") or {}).get("selection", {}).get("points", [])
    edge = figures.clicked_edge(points[0]) if points else None
    if edge and edge["kind"] == "head":
        ui.set_choice("attn_layer", edge["layer"])
        ui.set_choice("attn_head", edge["head"])
        ui.set_choice("attn_query", edge["dst"])
        st.session_state["flow_opened"] = edge


ui.chart(
    figures.flow_graph(edges, tokens, cfg.n_layer, path, title=f"Routes to the prediction after position {pos}",
                       projector=proj),
    "flow_graph",
    table=edges,
    on_select=open_clicked,
    selection_mode="points",
    caption=f"{len(edges):,} edges at τ ≥ {tau} (the model's guess after position {pos}: {guess}). Blue: heads, "
    "green: feed-forward, grey: residual; wider = heavier; orange-red: the strongest path (largest product of "
    "weights). Hover the dot on an edge for its weight; click a head's dot to open its pattern.",
)  # fmt: skip
opened = st.session_state.get("flow_opened")
if opened:
    st.page_link(
        "pages/4_Attention.py", label=f"Open head {opened['layer']}.{opened['head']} on the attention page",
        icon=":material/visibility:",
    )  # fmt: skip
st.subheader("The strongest path")
show = path.assign(
    head=path["head"].where(path["head"] >= 0).astype("Int64"),  # blank for residual and feed-forward edges
    source=[f"{s} {lay}, {p}: {tokens[p]!r}" for s, lay, p in zip(path.src_stage, path.src_layer, path.src_pos, strict=True)],
    target=[f"{s} {lay}, {p}: {tokens[p]!r}" for s, lay, p in zip(path.dst_stage, path.dst_layer, path.dst_pos, strict=True)],
)[["kind", "layer", "head", "source", "target", "weight"]]  # fmt: skip
ui.table(pd.DataFrame(show), "flow_path")
st.caption(
    "Nodes: 'resid l' is the stream entering layer l (l = the number of layers: the output), 'mid l' the stream "
    "between layer l's attention and feed-forward. A head's edge weight counts its contribution from one position; "
    "the output bias is a part of each attention sum but no edge."
)
