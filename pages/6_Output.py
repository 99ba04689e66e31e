"""Stage 5 — output: a score for every vocabulary token → the next token."""

import streamlit as st

from gptviz import serving, ui
from gptviz.analysis import generation as gen
from gptviz.figures import output as figs

TEMPERATURES = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 3.0, 5.0]
TOP_PS = [round(0.05 * i, 2) for i in range(1, 21)]


def use_as_prompt(text: str) -> None:
    """Button callback (runs before the sidebar exists, so it may set the prompt box)."""
    ui.set_choice("prompt", text)
    ui.keep("out_generated", [])


ctx = ui.page(
    "5 · Output",
    "After the last layer, every position holds one vector. A final linear layer (the **unembedding**) "
    "turns it into one score, a **logit**, for *every* token in the vocabulary, and a **softmax** turns "
    "the scores into probabilities that add up to 1. Only the last position's scores matter for "
    "writing: they predict the token that comes next.",
)
t, tok, proj, V = ctx.trace, ctx.tokenizer, ctx.projector, ctx.cfg.vocab_size
ui.quiz_section("next", ctx)
pos = t.n_tokens - 1
if ui.toggle("Look at the prediction after an earlier token", "out_pick"):
    pos = ui.slider("Predict the token after position", 0, t.n_tokens - 1, "out_pos", t.n_tokens - 1)
n_show = ui.slider("Tokens shown", 5, 40, "out_n", 15)
logits, probs = t.logits(pos), t.probs(pos)
top = gen.top_ids(probs, n_show)  # the same tokens as the chart below, reshaped further down
names = [tok.token_str(int(i)) for i in top]
ui.chart(
    figs.next_token_chart(t, tok.token_str, k=n_show, pos=pos, projector=proj),
    "out_probs",
    caption=f"Out of {V:,} possible tokens. Hover a bar for its logit: a gap of 1 in logits is a factor e ≈ 2.7.",
)
if pos < t.n_tokens - 1:
    nxt = int(t.ids[pos + 1])
    rank = int((probs > probs[nxt]).sum()) + 1
    st.markdown(f"The prompt actually continues with `{t.tokens[pos + 1]!r}`: rank {rank}, {probs[nxt]:.1%}.")

st.subheader("Temperature, top-k and top-p: reshaping before drawing")
st.markdown(
    "To write, we **draw** a token from these probabilities. Three knobs change the odds first. "
    "**Temperature** divides the logits: below 1 the favourites get stronger (0 = always the top token), "
    "above 1 the distribution flattens. **Top-k** keeps only the k most likely tokens. **Top-p** keeps the "
    "smallest set of top tokens whose probabilities add up to at least p. What survives is rescaled to sum to 1."
)
c = st.columns(3)
temp = ui.select_slider("Temperature", TEMPERATURES, "out_temperature", 1.0, where=c[0])
top_k = ui.slider("Top-k (0 = off)", 0, 100, "out_top_k", 0, where=c[1])
top_p = ui.select_slider("Top-p (1 = off)", TOP_PS, "out_top_p", 1.0, where=c[2])
shaped = gen.reshape(logits, temp, top_k, top_p)
settings = f"temperature {temp}, top-k {top_k or 'off'}, top-p {top_p}"
reshaped = figs.reshaped_distribution(names, probs[top], shaped.probs[top], shaped.kept[top], settings, projector=proj)
ui.chart(
    reshaped,
    "out_reshaped",
    caption=f"{int(shaped.kept.sum()):,} of {V:,} tokens can still be drawn; the {len(top)} shown hold "
    f"{shaped.probs[top].sum():.1%} of the reshaped probability. Faded: the model's own odds; ✕: cut.",
)

st.subheader("Generate, one token at a time")
st.markdown(
    "Each press runs the model on the prompt plus everything generated so far, reshapes its prediction "
    "with the settings above, and draws one token, which is appended and fed back in. The **seed** fixes "
    "the dice: the same seed and settings always give the same text."
)
owner = (ctx.spec, t.text, ctx.special)
if st.session_state.get("out_owner") not in (None, owner):
    ui.keep("out_generated", [])  # the prompt or the model changed: start over
st.session_state["out_owner"] = owner
url_ids = [int(i) for i in (ui.from_url("out_generated") or "").split(",") if i.isdigit()]
CAP = serving.MAX_GENERATED_TOKENS
if len(url_ids) > CAP and ui.kept("out_generated", None) is None:
    st.warning(f"The link's continuation was cut to its first {CAP} tokens (the most one continuation may have).")
generated = [int(i) for i in ui.kept("out_generated", url_ids) if 0 <= int(i) < V][:CAP]  # a link restores it
prompt_ids = tok.encode(t.text, allow_special=ctx.special)  # the ids the trace read
c = st.columns([2, 2, 1, 1, 2], vertical_alignment="bottom")  # buttons level with the Seed box
greedy = ui.toggle("Greedy (always the top token)", "out_greedy", where=c[0])
seed = ui.number("Seed", 0, 999_999, "out_seed", 0, where=c[1])
if c[2].button(
    "Next token", key="out_next", type="primary", disabled=len(generated) >= CAP,
    help=f"At most {CAP} tokens per continuation: Reset, or Use as prompt, to go on.",
):  # fmt: skip
    rng = gen.rng_for(seed, len(generated))
    chosen, _ = gen.generate_step(ctx.model, tok, prompt_ids + generated, 0 if greedy else temp, top_k, top_p, rng)
    generated.append(chosen)
if c[3].button("Reset", key="out_reset"):
    generated = []
ui.keep("out_generated", generated)
continuation = tok.decode(generated)
c[4].button(
    "Use as prompt", key="out_use", on_click=use_as_prompt, args=(t.text + continuation,), disabled=not generated
)
if t.truncated:
    st.caption(
        f"The prompt is longer than the context: generation continues its end (its last {ctx.cfg.n_ctx} tokens)."
    )
if generated:
    st.code(continuation, language=None, wrap_lines=True)
    steps = gen.continuation_steps(ctx.model, tok, prompt_ids, generated)
    ui.chart(
        figs.generation_timeline([s.rows() for s in steps], projector=proj),
        "out_timeline",
        caption="Each column is one step: the model's five favourites (its own odds, temperature 1) and the pick.",
    )
else:
    st.info("Press **Next token** to start a continuation of the prompt.")

st.subheader("Many draws from the same distribution")
n_draws = ui.slider("Number of draws", 1, 5000, "out_draws", 200)
shown, counts, other_p, other_n = gen.draw_summary(shaped.probs, n_draws, gen.rng_for(seed, n_draws, 1), n_show)
shown_names = [tok.token_str(int(i)) for i in shown]
ui.chart(
    figs.sampling_histogram(shown_names, shaped.probs[shown], counts, other_p, other_n, projector=proj),
    "out_samples",
    caption="With few draws the shares wobble around the probabilities; with thousands they settle on them.",
)

ui.seed_note(
    "output_logits = nn.Linear(embed_dim, vocab_size)(embeddings)",
    "GPT-2 has no separate output matrix: it reuses the token **embedding** matrix (tied weights, no bias), "
    "and it first normalises the last residual vector with a final **LayerNorm** (Llama-style models: a final "
    "**RMSNorm**, and often a separate output matrix). The logits become "
    "probabilities with a **softmax**, and only the **last position's** scores predict the next token "
    "(the others predict tokens we already have; they are what training learns from).",
)
