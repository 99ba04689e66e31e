"""The only Streamlit code outside ``app.py`` and ``pages/``: sidebar, caching, URL state.

State: every choice (model, prompt, and each page's layer/head/token…) lives in
``st.session_state`` under a private key and is mirrored into ``st.query_params`` on every run,
so a copied URL reopens exactly that view. Streamlit clears query parameters when the user
switches pages and forgets the state of widgets that are not on screen, which is why the kept
value is stored apart from the widget's own key.

Caching: models are loaded once per process (``st.cache_resource``); traces are shared between
sessions in a byte-bounded LRU (traces are read-only, so sharing is safe).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import gptviz
from gptviz import export
from gptviz import lesson as lessons
from gptviz.analysis.ablation import Ablation, parse_components
from gptviz.cache import ByteLRU
from gptviz.checkpoints import BUNDLED, CheckpointError, cached_gpt2_models
from gptviz.figures import visible
from gptviz.model import GPT
from gptviz.tokenizer import Tokenizer, get_tokenizer
from gptviz.trace import Trace, trace_nbytes

T = TypeVar("T")
DEFAULT_MODEL = f"bundled:{BUNDLED[0]}"
OTHER = "Other: a folder or file…"
EXAMPLES = {
    "Shakespeare": "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "Hello, world!": "Hello, world!",
    "Repeated words (induction)": "The cat sat on the mat. The dog sat on the rug. The cat sat on the",
    "A question": "First Citizen:\nWhat is the city but the people?",
    "Code": "def add(a, b):\n    return a + b\n",
    "Unicode and emoji": "Café déjà vu 😀 naïve façade",
}
DEFAULT_PROMPT = EXAMPLES["Shakespeare"]
MAX_PROMPT_CHARS = 100_000
# Projector mode: everything Streamlit draws is sized in rem, so a larger root font enlarges the
# page text, captions, metrics, widgets, tables and the sidebar at once (charts have their own
# sizes, see ``figures.style``). A constant: no user text ever goes into this HTML.
PROJECTOR_CSS = "<style>html { font-size: 22px; }</style>"
TRACE_CACHE_BYTES = int(os.environ.get("GPTVIZ_TRACE_CACHE_MB", "1500")) * 2**20


@dataclass(frozen=True)
class Context:
    """What a page needs: the model, its tokenizer, the trace of the shared prompt."""

    spec: str
    model: GPT
    tokenizer: Tokenizer
    trace: Trace
    projector: bool

    @property
    def cfg(self) -> gptviz.GPTConfig:
        return self.model.cfg


# --- caching ---------------------------------------------------------------------------------


@st.cache_resource(max_entries=12, show_spinner="Loading the model…")  # room for the 5 snapshots + others
def load_model(spec: str) -> GPT:
    """One model object per spec per process; sessions only read it (hooks are per call)."""
    return gptviz.load_model(spec)


@st.cache_resource
def _trace_cache() -> ByteLRU[Trace]:
    return ByteLRU(TRACE_CACHE_BYTES, trace_nbytes)


def get_trace(spec: str, text: str, extra_key: Any = None, extra_hooks: list | None = None) -> Trace:
    """The trace of ``text`` through model ``spec``, computed once and shared (bounded)."""
    model = load_model(spec)
    return _trace_cache().get_or_compute(
        (spec, text, extra_key), lambda: gptviz.run(model, text, extra_hooks=extra_hooks)
    )


# --- state kept across pages and mirrored into the URL ---------------------------------------


def _kept() -> dict[str, Any]:
    """Values chosen in this session, by URL key. Seeded once from the URL."""
    ss = st.session_state
    if "_kept" not in ss:
        ss["_kept"] = {}
        ss["_url"] = {k: st.query_params.get(k) for k in st.query_params}
    return ss["_kept"]


def _from_url(key: str) -> str | None:
    _kept()
    return st.session_state["_url"].get(key)


def keep(key: str, value: Any) -> None:
    """Remember ``value`` for ``key`` and write it to the URL."""
    _kept()[key] = value
    _write_url()


def kept(key: str, default: T) -> T:
    return _kept().get(key, default)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def md_text(value: object) -> str:
    """``value`` as literal text inside Streamlit Markdown (messages quoting a URL or a path):
    every Markdown/HTML character backslash-escaped, newlines folded, so a link cannot inject
    an image, a link or styling."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value)).replace("\n", " ")


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _write_url() -> None:
    want = {k: _encode(v) for k, v in _kept().items()}
    for k in list(st.query_params):
        if k not in want:
            del st.query_params[k]
    for k, v in want.items():
        if st.query_params.get(k) != v:
            st.query_params[k] = v


def _initial(key: str, default: T, parse: Callable[[str], T], valid: Callable[[T], bool]) -> T:
    """What the widget shows now, else the kept value, else the URL's (if it parses and is
    valid), else ``default``. The widget's own state wins while it is on screen (the user just
    moved it); Streamlit drops it when the page changes, and then the kept value carries on."""
    widget = st.session_state.get(f"w_{key}")
    if widget is not None and valid(widget):
        return widget
    store = _kept()
    if key in store and valid(store[key]):
        return store[key]
    raw = _from_url(key)
    if raw is not None and key not in store:
        try:
            value = parse(raw)
            if valid(value):
                return value
        except (ValueError, TypeError):
            pass
        st.warning(
            f"The link asked for {key} = {md_text(repr(raw))}, which does not fit here; "  # key: ours, not the link's
            f"showing {md_text(repr(default))} instead."
        )
    return default


def _widget(factory: Callable[..., Any], key: str, value: Any, *args: Any, **kw: Any) -> Any:
    """Draw ``factory(*args)`` showing ``value``; keep what the user picks under ``key``."""
    st.session_state[f"w_{key}"] = value
    result = factory(*args, key=f"w_{key}", **kw)
    keep(key, result)
    return result


def _parse_option(options: list[Any]) -> Callable[[str], Any]:
    by_text = {_encode(o): o for o in options}
    return lambda s: by_text[s] if s in by_text else type(options[0])(s)


def select(label: str, options: Sequence[T], key: str, default: T | None = None, where: Any = st, **kw: Any) -> T:
    """A selectbox whose choice survives page switches and lives in the URL."""
    options = list(options)
    default = options[0] if default is None or default not in options else default
    value = _initial(key, default, _parse_option(options), lambda v: v in options)
    return _widget(where.selectbox, key, value, label, options, **kw)


def select_slider(label: str, options: Sequence[T], key: str, default: T, where: Any = st, **kw: Any) -> T:
    """A slider over fixed values (e.g. temperatures), kept like ``select``."""
    options = list(options)
    default = default if default in options else options[0]
    value = _initial(key, default, _parse_option(options), lambda v: v in options)
    return _widget(where.select_slider, key, value, label, options, **kw)


def slider(label: str, lo: int, hi: int, key: str, default: int, where: Any = st, **kw: Any) -> int:
    """An integer slider that survives page switches and lives in the URL (clamped)."""
    default = min(max(default, lo), hi)
    if hi <= lo:
        keep(key, lo)
        return lo
    value = _initial(key, default, int, lambda v: isinstance(v, int) and lo <= v <= hi)
    return _widget(where.slider, key, value, label, lo, hi, **kw)


def number(label: str, lo: int, hi: int, key: str, default: int, where: Any = st, **kw: Any) -> int:
    """An integer number box (e.g. a random seed), kept like ``slider``."""
    value = _initial(key, min(max(default, lo), hi), int, lambda v: isinstance(v, int) and lo <= v <= hi)
    return int(_widget(where.number_input, key, value, label, lo, hi, step=1, **kw))


def multiselect(label: str, options: Sequence[int], key: str, where: Any = st, **kw: Any) -> list[int]:
    """A multiselect of integers (e.g. dimensions), URL as a comma list."""
    options = list(options)

    def parse(s: str) -> list[int]:
        return [int(x) for x in s.split(",") if x != ""]

    value = _initial(key, [], parse, lambda v: all(x in options for x in v))
    return list(_widget(where.multiselect, key, value, label, options, **kw))


def toggle(label: str, key: str, default: bool = False, where: Any = st, **kw: Any) -> bool:
    value = _initial(key, default, lambda s: s in ("1", "true", "True"), lambda v: isinstance(v, bool))
    return bool(_widget(where.toggle, key, value, label, **kw))


def from_url(key: str) -> str | None:
    """The raw value the session's opening URL gave for ``key`` (for state that is not a widget)."""
    return _from_url(key)


# --- the shared sidebar ----------------------------------------------------------------------


def model_options() -> list[str]:
    return [f"bundled:{b}" for b in BUNDLED] + cached_gpt2_models() + [OTHER]


def _model_sidebar() -> str:
    sb = st.sidebar
    options = model_options()
    url_model = _from_url("model")
    current = kept("model", None)
    if current is None:
        current = url_model or DEFAULT_MODEL
    widget = st.session_state.get("w_model")  # the user's pick wins while the box is on screen
    choice = widget if widget in options else current if current in options else OTHER
    st.session_state["w_model"] = choice
    choice = sb.selectbox(
        "Model",
        options,
        key="w_model",
        help="Bundled models ship with gptviz; GPT-2 "
        "checkpoints appear here when they are in the local Hugging Face cache.",
    )
    spec = choice
    if choice == OTHER:
        st.session_state.setdefault("w_model_path", current if current not in options else "")
        spec = sb.text_input("Checkpoint folder or .safetensors file", key="w_model_path").strip()
        if not spec:
            sb.info("Type the path of a Hugging Face GPT-2 folder or a gptviz .safetensors file.")
            spec = DEFAULT_MODEL
    try:
        load_model(spec)
    except (CheckpointError, OSError, ValueError) as exc:
        sb.error(f"Could not load {md_text(repr(spec))}: {md_text(exc)}. Showing {DEFAULT_MODEL} instead.")
        spec = DEFAULT_MODEL
    keep("model", spec)
    return spec


def _set_example() -> None:
    name = st.session_state.get("w_example")
    if name in EXAMPLES:
        st.session_state["w_prompt"] = EXAMPLES[name]
        keep("prompt", EXAMPLES[name])


def _prompt_sidebar() -> str:
    sb = st.sidebar
    if "w_prompt" not in st.session_state:
        start = kept("prompt", None) or _from_url("prompt") or DEFAULT_PROMPT
        if len(start) > MAX_PROMPT_CHARS:
            sb.warning(f"The link's prompt was cut to the box's {MAX_PROMPT_CHARS:,} characters.")
            start = start[:MAX_PROMPT_CHARS]
        st.session_state["w_prompt"] = start
    sb.selectbox("Example prompts", ["Pick an example…", *EXAMPLES], key="w_example", on_change=_set_example)
    text = sb.text_area(
        "Prompt",
        key="w_prompt",
        height=120,
        max_chars=MAX_PROMPT_CHARS,
        help="One prompt drives every page. Press Ctrl+Enter to apply.",
    )
    keep("prompt", text)
    return text


def sidebar() -> Context | None:
    """Model picker, prompt box, token count, projector toggle. ``None`` if the prompt is empty."""
    sb = st.sidebar
    sb.markdown("### gptviz")
    spec = _model_sidebar()
    text = _prompt_sidebar()
    projector = toggle("Projector mode (large text)", "projector", where=sb)
    if projector:
        st.html(PROJECTOR_CSS)  # style only: Streamlit applies it without taking room on the page
    model = load_model(spec)
    tok = get_tokenizer(model.cfg.tokenizer)
    try:
        trace = get_trace(spec, text)
    except gptviz.EmptyPromptError:
        sb.caption(f"0 tokens / context {model.cfg.n_ctx}")
        return None
    sb.caption(f"**{trace.n_input_tokens}** tokens / context {model.cfg.n_ctx} · {model.num_params():,} parameters")
    if trace.truncated:
        sb.warning(
            f"The prompt has {trace.n_input_tokens} tokens; the model reads at most {model.cfg.n_ctx}, "
            f"so the pages show the first {trace.n_tokens}."
        )
    _exports_sidebar(trace)
    return Context(spec, model, tok, trace, projector)


def _exports_sidebar(trace: Trace) -> None:
    """The whole trace as ``.npz`` (made on click), and the link that reopens this view."""
    sb = st.sidebar
    sb.download_button(
        "Download the trace (.npz)",
        data=lambda: export.npz_bytes(trace),
        file_name=export.trace_filename(trace),
        mime="application/octet-stream",
        key="trace_npz",
        on_click="ignore",
        icon=":material/download:",
        help="Every recorded array of this prompt's forward pass; open it with gptviz.load_trace(path).",
    )
    with sb.expander("Link to this view", key="x_share", on_change="rerun", icon=":material/link:") as box:
        if box.open:
            st.code(share_link(), language=None, wrap_lines=True)
            st.caption("Copy it with the button at its right: it reopens this page with every choice made here.")


def view_params() -> dict[str, str]:
    """The query parameters of the current view: every kept choice, with the value a widget on
    screen now shows (it is newer than the kept one until the widget's line runs)."""
    ss, out = st.session_state, {}
    for key, value in _kept().items():
        widget = ss.get(f"w_{key}")
        if key not in ("model",) and widget is not None and type(widget) is type(value):
            value = widget
        out[key] = _encode(value)
    return out


def share_link() -> str:
    """A link that reopens this view: the browser's address of this page (``st.context.url``;
    ``GPTVIZ_BASE_URL`` or a relative link where it is unknown) plus the query parameters."""
    try:
        base = st.context.url
    except Exception:  # outside a browser session (tests, bare mode)
        base = None
    return export.view_link(view_params(), base or os.environ.get("GPTVIZ_BASE_URL", ""))


def page(title: str, intro: str) -> Context:
    """Start a page: config, sidebar, title, intro. Stops the page if there is no prompt."""
    st.set_page_config(page_title=f"{title} · gptviz", page_icon="🔎", layout="wide")
    ctx = sidebar()
    st.title(title)
    st.markdown(intro)
    if ctx is None:
        st.info("The prompt is empty: type some text in the sidebar to see the model at work.")
        st.stop()
    return ctx


def chart(
    fig: go.Figure,
    key: str,
    alt: str | None = None,
    table: pd.DataFrame | None = None,
    details: bool = True,
    caption: str | None = None,
    lazy: bool = True,
    **kw: Any,
) -> Any:
    """Show a figure as built (our styling, not Streamlit's theme), PNG export in the toolbar.

    ``caption`` is drawn right under the chart. Every chart gets an accessible name (``alt``,
    else its kind and title) and, below it, a collapsed "numbers and downloads" section: the
    numbers as a table (``table``, else read off the figure), that table as CSV, and the chart
    as a standalone HTML file. The section is lazy: nothing in it is computed or sent until it
    is opened, and the 4 MB HTML file only when its button is pressed. ``lazy=False`` sends the
    table on every run, so it is there without a click (the tokenization page's token table).
    ``details=False`` leaves the section out (Streamlit cannot nest it in another expander)."""
    config = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": key, "scale": 2}}
    alt = alt or export.alt_text(fig)
    result = st.plotly_chart(fig, key=key, theme=None, config=config, width="stretch", alt=alt, **kw)
    if caption:
        st.caption(caption)
    if not details:
        return result
    title, icon = "Numbers and downloads", ":material/table:"
    if not lazy:
        with st.expander(title, icon=icon):
            _details_body(fig, key, alt, table)
        return result
    with st.expander(title, key=f"x_{key}", on_change="rerun", icon=icon) as box:
        if box.open:
            _details_body(fig, key, alt, table)
    return result


def _details_body(fig: go.Figure, key: str, alt: str, table: pd.DataFrame | None) -> None:
    df = table if table is not None else export.figure_table(fig)
    st.caption(f"{alt}. PNG: the camera button in the chart's toolbar.")
    c1, c2 = st.columns(2)
    with c2:
        _download("Chart as HTML (interactive, works offline)", lambda: export.html_bytes(fig), key, "html")
    _table_body(df, key, where=c1)


def _download(label: str, data: Any, key: str, ext: str) -> None:
    """A download button for ``<key>.<ext>`` whose bytes are made only when it is pressed."""
    mime = {"html": "text/html", "csv": "text/csv"}[ext]
    st.download_button(
        label, data=data, file_name=f"{key}.{ext}", mime=mime, key=f"{ext}_{key}", on_click="ignore",
        icon=":material/download:",
    )  # fmt: skip


def table(df: pd.DataFrame, key: str, **kw: Any) -> None:
    """A table with a CSV download button (the same rows and columns as shown)."""
    _table_body(df, key, **kw)


def _table_body(df: pd.DataFrame, key: str, where: Any = None, **kw: Any) -> None:
    with where if where is not None else st.container():
        _download("Table as CSV", lambda: export.csv_bytes(df), key, "csv")
    if df.attrs.get("truncated"):
        st.caption(f"The first {len(df):,} rows (the chart has more numbers than a table can show).")
    st.dataframe(df, hide_index=True, width="stretch", key=f"df_{key}", **kw)


def seed_note(code: str, note: str) -> None:
    """The seed's code for this step, and where a real GPT differs from it."""
    with st.expander("The seed's code for this step, and how a real GPT differs", expanded=False):
        st.code(code, language="python")
        st.markdown(note)


# --- ablation shared by the attention and feed-forward pages ------------------------------


def ablation(ctx: Context) -> Ablation:
    """The session's current ablation (heads and neurons), kept in the URL like any choice."""
    cfg = ctx.cfg
    try:
        heads = parse_components(_kept_or_url_list("ablate_heads"))
        neurons = parse_components(_kept_or_url_list("ablate_neurons"))
    except ValueError:
        heads, neurons = (), ()
    heads = tuple(h for h in heads if 0 <= h[0] < cfg.n_layer and 0 <= h[1] < cfg.n_head)
    neurons = tuple(n for n in neurons if 0 <= n[0] < cfg.n_layer and 0 <= n[1] < cfg.d_mlp)
    mode = kept("ablate_mode", None)
    mode = mode if mode is not None else _from_url("ablate_mode")
    return Ablation(heads, neurons, "mean" if mode == "mean" else "zero")


def set_ablation(ab: Ablation) -> None:
    keep("ablate_heads", [f"{a}.{b}" for a, b in sorted(ab.heads)])
    keep("ablate_neurons", [f"{a}.{b}" for a, b in sorted(ab.neurons)])
    keep("ablate_mode", ab.mode)


def _kept_or_url_list(key: str) -> list[str]:
    """The kept list (an empty list counts: the user cleared it), else the URL's comma list."""
    value = kept(key, None)
    if value is not None:
        return list(value)
    return [x for x in (_from_url(key) or "").split(",") if x]


def ablated_trace(ctx: Context, ab: Ablation) -> Trace:
    """The prompt rerun with ``ab`` applied (cached like any trace); the plain trace if empty."""
    if not ab:
        return ctx.trace
    return get_trace(ctx.spec, ctx.trace.text, extra_key=ab.key, extra_hooks=ab.hooks())


# --- predict, then reveal ---------------------------------------------------------------------


def quiz(
    question: str, key: str, owner: Any, ask: Callable[[], Any], check: Callable[[Any], lessons.Verdict]
) -> lessons.Verdict | None:
    """A guess in a form (``ask`` draws its input), then the verdict from the real trace.

    The guess is remembered per ``key`` for the current ``owner`` (model, prompt, head…): change
    any of them and the question is asked afresh. Returns the verdict once revealed, else None."""
    store = f"quiz_{key}"
    with st.form(f"form_{key}"):
        st.markdown(f"**Predict first:** {question}")
        guess = ask()
        submitted = st.form_submit_button("Reveal the answer", type="primary")
    if submitted:
        st.session_state[store] = (owner, guess)
    saved = st.session_state.get(store)
    if saved is None or saved[0] != owner:
        st.caption("Make your guess, then press **Reveal the answer**.")
        return None
    verdict = check(saved[1])
    (st.success if verdict.correct else st.warning)(verdict.text, icon="✅" if verdict.correct else "🤔")
    return verdict


def quiz_tokens(ctx: Context, key: str = "tokens") -> lessons.Verdict | None:
    """How many tokens will the prompt become?"""
    t = ctx.trace
    return quiz(
        f"how many tokens will the tokenizer cut this {len(t.text):,}-character prompt into?",
        key,
        (ctx.spec, t.text),
        lambda: st.number_input("Your guess: number of tokens", 1, 1_000_000, 1, step=1, key=f"guess_{key}"),
        lambda g: lessons.check_token_count(t, int(g)),
    )


def quiz_attention(ctx: Context, layer: int, head: int, key: str = "attention") -> lessons.Verdict | None:
    """Which earlier token will head ``layer.head`` look at most from the last token?"""
    t = ctx.trace
    q = t.n_tokens - 1
    options = list(range(q + 1))
    return quiz(
        f"from the last token, {lessons.code(t.tokens[q])}, which token will layer {layer}, head {head} look at most?",
        key,
        (ctx.spec, t.text, layer, head),
        lambda: st.selectbox(
            "Your guess: the token looked at",
            options,
            index=None,
            placeholder="Pick a token…",
            format_func=lambda i: f"{i}: {visible(t.tokens[i])}",
            key=f"guess_{key}",
        ),
        lambda g: lessons.check_attention(t, layer, head, -1 if g is None else int(g)),
    )


def quiz_next(ctx: Context, key: str = "next") -> lessons.Verdict | None:
    """Which of a few candidates is the model's most likely next token?"""
    t, name_of = ctx.trace, ctx.tokenizer.token_str
    choices = lessons.next_token_choices(t, 4)
    return quiz(
        f"which of these does the model think is the most likely next token after {lessons.code(t.tokens[-1])}?",
        key,
        (ctx.spec, t.text),
        lambda: st.radio(
            "Your guess: the next token",
            choices,
            index=None,
            format_func=lambda i: visible(name_of(int(i))),
            key=f"guess_{key}",
            horizontal=True,
        ),
        lambda g: lessons.check_next_token(t, -1 if g is None else int(g), name_of),
    )


def quiz_section(kind: str, ctx: Context, *args: Any) -> None:
    """A collapsed "predict, then reveal" section for a stage page (nothing runs until opened)."""
    with st.expander("Predict, then reveal", key=f"x_quiz_{kind}", on_change="rerun", icon=":material/quiz:") as box:
        if box.open:
            {"tokens": quiz_tokens, "attention": quiz_attention, "next": quiz_next}[kind](ctx, *args)
