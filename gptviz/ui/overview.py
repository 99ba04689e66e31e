"""The overview section (the home page's first screen and the Overview page): the whole GPT for
the prompt, a click on any stage opening its page, and generation watched token by token.

Generation keeps one ``CachedGeneration`` per session (its KV cache is a value of this session,
never state on the shared model); the chart itself draws a trace of prompt + continuation,
shared through the trace cache like every other page's.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

import gptviz
from gptviz import site
from gptviz.analysis import generation as gen
from gptviz.analysis.overview import generated_attention, overview, overview_table
from gptviz.figures import overview as fo
from gptviz.trace import Trace
from gptviz.ui.caching import Context, _trace_cache, model_key
from gptviz.ui.layout import chart
from gptviz.ui.state import keep, kept_or_url, number, select, select_slider, set_choice, slider, toggle

ATTENTION = "pages/4_Attention.py"
# A clicked stage -> (page, {URL key of that page: the clicked point's field})
PAGES: dict[str, tuple[str, dict[str, str]]] = {
    "tokens": ("pages/1_Tokenization.py", {}),
    "embedding": ("pages/2_Embeddings.py", {"emb_pos": "pos"}),
    "attention": (ATTENTION, {"attn_layer": "layer", "attn_head": "head"}),
    "layer": ("pages/5_Feed-forward_and_residual.py", {"ff_layer": "layer", "ff_pos": "pos"}),
    "output": ("pages/6_Output.py", {}),
}
GENERATED = "ov_generated"  # URL key: the ids generated so far, a comma list
TEMPERATURES = [0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0]


def ids_trace(spec: str, model: gptviz.GPT, ids: Sequence[int]) -> Trace:
    """The trace of token ids (a prompt plus what was generated: decoding and re-encoding text
    need not give the same ids back), shared like ``get_trace``'s."""
    ids = tuple(int(i) for i in ids)
    key = (model_key(spec), "ids", ids)
    return _trace_cache().get_or_compute(key, lambda: gptviz.run(model, token_ids=ids))


def _go(stage: str, fields: dict[str, int]) -> None:
    """Remember the choices a click on ``stage`` asks for, to open its page on this run."""
    page, keys = PAGES.get(stage, (None, {}))
    if page is None:
        return
    params = {url: fields[f] for url, f in keys.items() if f in fields}
    for key, value in params.items():
        set_choice(key, value)
    st.session_state["_ov_goto"] = (page, params)


def _clicked() -> None:
    points = (st.session_state.get("ov_chart") or {}).get("selection", {}).get("points", [])
    hit = fo.target(points[0]) if points else None
    if hit:
        _go(*hit)


def _generated(ctx: Context) -> list[int]:
    """The ids generated so far for this prompt and model (restored from a link)."""
    owner = (ctx.spec, ctx.trace.text, ctx.special)
    if st.session_state.get("_ov_owner") not in (None, owner):
        keep(GENERATED, [])  # the prompt or the model changed: start over
        st.session_state.pop("_ov_run", None)
    st.session_state["_ov_owner"] = owner
    raw = kept_or_url(GENERATED)
    ids = raw if isinstance(raw, list) else [int(i) for i in (raw or "").split(",") if i.strip().isdigit()]
    V = ctx.cfg.vocab_size
    return [int(i) for i in ids if 0 <= int(i) < V]


def _run(ctx: Context, ids: list[int]) -> gen.CachedGeneration:
    """This session's cached generator, positioned at ``ids`` (rebuilt if it is not)."""
    run = st.session_state.get("_ov_run")
    if run is None or run.model is not ctx.model or run.ids != ids:
        run = gen.CachedGeneration(ctx.model, ids)
        st.session_state["_ov_run"] = run
    return run


def overview_section(ctx: Context) -> None:
    """The overview chart with its controls, the per-layer links, and generation."""
    goto = st.session_state.pop("_ov_goto", None)
    if goto is not None:
        st.switch_page(goto[0], query_params={k: str(v) for k, v in goto[1].items()} or None)
    cfg, tok, pj = ctx.cfg, ctx.tokenizer, ctx.projector
    prompt_ids = [int(i) for i in ctx.trace.ids]
    generated = _generated(ctx)

    # c: Next token, Reset, the query slider, the head box, the options. Large text (projector):
    # the buttons on one row and the two choices on the next, so no label is cut short.
    if pj:
        b = st.columns([1.4, 1.2, 1.4, 2], vertical_alignment="bottom")
        c = [b[0], b[1], *st.columns(2, vertical_alignment="bottom"), b[2]]
    else:
        c = st.columns([1.4, 1, 2.6, 2, 1.3], vertical_alignment="bottom")
    with c[4].popover(
        "Options", icon=":material/tune:", help="Generation settings: greedy or sampled, seed, tokens per press"
    ):
        greedy = toggle("Greedy (always the top token)", "ov_greedy", default=True)
        temp = select_slider("Temperature (when not greedy)", TEMPERATURES, "ov_temperature", 1.0)
        seed = number("Seed (the same seed, the same tokens)", 0, 999_999, "ov_seed", 0)
        n_play = number("Tokens per press", 1, 32, "ov_n", 1)
    room = cfg.n_ctx - len(prompt_ids) - len(generated)  # the chart shows one trace: stop at the context
    if c[0].button("Next token", key="ov_next", type="primary", icon=":material/skip_next:", disabled=room <= 0):
        run = _run(ctx, prompt_ids + generated)
        for _ in range(min(n_play, room)):
            rng = gen.rng_for(seed, len(generated))
            chosen, _ = run.step(tok, 0.0 if greedy else temp, rng=rng)
            generated.append(chosen)
        keep(GENERATED, generated)
    if room <= 0:
        st.caption(f"The context is full ({cfg.n_ctx} tokens): **Reset**, or shorten the prompt, to generate.")
    if c[1].button("Reset", key="ov_reset", disabled=not generated, help="Forget the generated tokens"):
        generated = []
        keep(GENERATED, [])
    trace = ids_trace(ctx.spec, ctx.model, prompt_ids + generated) if generated else ctx.trace
    T = trace.n_tokens
    if st.session_state.get("_ov_len") not in (None, T):
        set_choice("ov_query", T - 1)  # a new token (or a reset): follow the last one
    st.session_state["_ov_len"] = T
    query = slider("Selected token (the query)", 0, T - 1, "ov_query", T - 1, where=c[2])
    head_opts = ["strongest", *range(cfg.n_head)]
    head = select("Head drawn in every layer", head_opts, "ov_head", "strongest", where=c[3])
    heads = {} if head == "strongest" else dict.fromkeys(range(cfg.n_layer), int(head))
    ov = overview(trace, tok.token_str, query, heads)
    chart(
        fo.overview_figure(ov, projector=pj, new_tokens=len(generated)),
        "ov_chart",
        alt=f"Overview: token {ov.query} through all {cfg.n_layer} layers",
        table=overview_table(ov),
        caption="Columns: your tokens; rows: the stages, top to bottom. Blue lines: which earlier tokens the "
        "selected one reads in each layer (one head, its width the weight); dots: the residual stream's size; "
        "right: what attention and the feed-forward add at the selected token. Left squares: every head, by "
        "its strongest link. **Click** a head, a link or any stage to open its page; hover for the numbers.",
        on_select=_clicked,
        selection_mode="points",
    )
    _layer_links(ov)
    if generated:
        _generation(ctx, trace, generated, head)


def _layer_links(ov) -> None:
    """One row of links per layer to that layer's head and feed-forward network, so a keyboard
    (and a test) can do what a click on the chart does."""
    with st.expander("Open a layer's page (keyboard-friendly links)", icon=":material/open_in_new:"):
        att, ff = site.page(ATTENTION), site.page(PAGES["layer"][0])
        for lv in ov.layers:
            c = st.columns([1, 2, 2])
            c[0].markdown(f"**Layer {lv.layer}**")
            c[1].page_link(
                att.path,
                label=f"Attention · head {lv.head}",
                icon=att.icon,
                query_params={"attn_layer": str(lv.layer), "attn_head": str(lv.head)},
            )
            c[2].page_link(ff.path, label="Feed-forward", icon=ff.icon, query_params={"ff_layer": str(lv.layer)})


def _generation(ctx: Context, trace: Trace, generated: list[int], head: object) -> None:
    cfg, n = ctx.cfg, len(generated)
    prompt_len = trace.n_tokens - n
    st.markdown(
        f"**{n} token{'s' * (n != 1)} generated.** With a **KV cache** each step runs only the newest token "
        f"through the model: it computes that token's query, key and value in each of the {cfg.n_layer} layers, "
        f"and reads the keys and values of the {trace.n_tokens - 1} earlier tokens from the cache instead of "
        "recomputing them (the shaded column above is what the last step computed; hollow dots are tokens whose "
        "keys and values were reused). `benchmarks/generation.py` measures how much time that saves."
    )
    run = st.session_state.get("_ov_run")
    if run is not None and run.ids[:-1] == [int(i) for i in trace.ids[:-1]]:
        st.caption(f"This session's generator has run {run.computed} token positions for {trace.n_tokens} tokens.")
    layer = slider("Layer of the timeline", 0, cfg.n_layer - 1, "ov_tl_layer", cfg.n_layer - 1)
    h = None if head == "strongest" else int(head)
    weights = generated_attention(trace, n, layer, h)
    chart(
        fo.generation_attention(weights, trace.tokens, n, layer, h, projector=ctx.projector),
        "ov_timeline",
        caption=f"Each row is one generated token: what it read when it was the newest (the {prompt_len} prompt "
        "tokens left of the orange line, the continuation right of it). Only this row is computed at that step.",
    )
    st.code(ctx.tokenizer.decode(generated), language=None, wrap_lines=True)
    st.button(
        "Use as prompt",
        key="ov_use",
        on_click=_use_as_prompt,
        args=(ctx.trace.text + ctx.tokenizer.decode(generated),),
        help="Make prompt + continuation the prompt, so every page (attention, output…) shows it",
        icon=":material/input:",
    )


def _use_as_prompt(text: str) -> None:
    """Button callback (runs before the sidebar, so it may set the prompt box)."""
    set_choice("prompt", text)
    keep(GENERATED, [])
