"""Stage 1 — tokenization: text → token ids."""

import streamlit as st

from gptviz import figures, ui
from gptviz.analysis import tokenize_view
from gptviz.checkpoints import bundled_tokenizer_name
from gptviz.tokenizer import ChatTemplateError, get_tokenizer

ctx = ui.page(
    "1 · Tokenization",
    "A GPT never sees letters. A **tokenizer** cuts the text into pieces from a fixed vocabulary "
    "and replaces each piece by its number, its **token id**. GPT-style models use byte-level "
    "**BPE** (byte-pair encoding): start from the text's bytes and repeatedly glue together the "
    "most common neighbouring pair seen in training. Common words become one token; rare words, "
    "names and emoji are split into several. Hover a chip for its id and raw bytes.",
)
t = ctx.trace
ui.quiz_section("tokens", ctx)
c = st.columns(4)
c[0].metric("characters", len(t.text))
c[1].metric("bytes (UTF-8)", len(t.text.encode("utf-8")))
c[2].metric("tokens", t.n_input_tokens)
c[3].metric("bytes per token", f"{len(t.text.encode('utf-8')) / max(1, t.n_input_tokens):.2f}")
ui.chart(
    figures.trace_chips(t, title=f"{ctx.cfg.tokenizer} tokens", projector=ctx.projector),
    "chips",
    alt="The prompt split into tokens",
    table=figures.token_table(t.tokens, t.ids.tolist(), t.token_bytes),
    caption="␣ is a space, ↵ a newline. A chip like \\xf0\\x9f is part of a character: BPE works on bytes.",
    lazy=False,  # the page's token table: always sent, so it is there without a click
)

template = ctx.tokenizer.chat_template
if template:
    st.subheader("The chat template")
    st.markdown(
        "This is an **instruct** model: after pre-training on plain text it was fine-tuned on conversations "
        "written in the **chat template** below, where special tokens mark who speaks and where a message ends. "
        "Given a bare prompt it continues the text; given the prompt as a user message, it answers it."
    )
    with st.expander("The template (Jinja source, from tokenizer_config.json)", icon=":material/code:"):
        st.code(template, language="jinja2", wrap_lines=True)
    try:
        wrapped = ctx.tokenizer.wrap_chat(t.text)
    except ChatTemplateError as exc:
        st.warning(f"The chat template does not render a single user message: {ui.md_text(exc)}")
    else:
        st.markdown(
            "Your prompt as one user message, ending where the assistant's answer begins (the *generation prompt*):"
        )
        st.code(wrapped, language=None, wrap_lines=True)
        st.button(
            "Wrap my prompt in the chat template",
            key="tok_chat_wrap",
            on_click=ui.use_chat_template,
            args=(wrapped,),
            icon=":material/forum:",
            disabled=ctx.special and wrapped == t.text,
            help="Makes this text the prompt and reads its special tokens as control tokens (the sidebar's "
            '"Parse special tokens" switch): a typed special token is otherwise plain text.',
        )
    if ctx.special:
        st.caption(
            "Special tokens are parsed: each one written in the prompt is a single control token above. "
            'Switch off "Parse special tokens in the prompt" in the sidebar to read them as plain text.'
        )

st.subheader("Two tokenizers, same text")
st.markdown(
    "GPT-2's vocabulary (50,257 tokens) was learned from web text; the bundled models' small "
    "vocabulary was learned from Shakespeare. The same text costs a different number of tokens."
)
views = {
    key: (name, tokenize_view(get_tokenizer(name), t.text[:5000]))
    for key, name in (("gpt2", "gpt2"), ("bundled", bundled_tokenizer_name()))
}


def chips(name: str, view, height: int | None = None):
    title = f"{name}: {len(view.ids)} tokens" + (" (first 5,000 characters)" if len(t.text) > 5000 else "")
    return figures.trace_chips(view, title=title, row_width=30, projector=ctx.projector, height=height)


drawn = {key: chips(name, view) for key, (name, view) in views.items()}
height = max(fig.layout.height for fig in drawn.values())  # both charts equally tall: redraw the shorter
for col, (key, (name, view)) in zip(st.columns(2), views.items(), strict=True):
    with col:
        ui.chart(drawn[key] if drawn[key].layout.height == height else chips(name, view, height), f"cmp_{key}")

st.subheader("Watch BPE build a word")
words = list(dict.fromkeys(w for w in ctx.tokenizer.pre_tokens(t.text[:5000]) if w.strip()))[:200]
if words:
    # open on the prompt's most-merged word among its first ones: a name spelled letter by
    # letter (ROMEO with our untagged tokenizers) would show "0 of 0 merges"
    busiest = max(words[:40], key=lambda w: len(ctx.tokenizer.merge_steps(w)))
    word = ui.select(
        "Word (a pre-token: BPE never merges across these)",
        words,
        "word",
        default=busiest,
        format_func=lambda w: figures.visible(w),
    )
    steps = ctx.tokenizer.merge_steps(word)
    upto = ui.slider("Merges applied", 0, len(steps) - 1, "merge", len(steps) - 1) if len(steps) > 1 else 0
    ui.chart(
        figures.bpe_merges(steps, upto, projector=ctx.projector),
        "merges",
        caption="Each row applies the merge with the lowest rank (learned earliest) among neighbouring pairs; "
        "a merged piece sits under the bytes it joins.",
    )

ui.seed_note(
    'text = "Hello, world!"\ntokens = ["Hello", ",", "world", "!"]\ntoken_indices = [15496, 11, 24, 0]',
    "The seed's ids are not GPT-2's: GPT-2's tokenizer gives `[15496, 11, 995, 0]`, and the third "
    "token is `' world'` *with* its leading space (spaces belong to the following word).",
)
