"""The shared sidebar: model picker, prompt box, projector toggle, trace download, share link."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

import gptviz
from gptviz import export, hub, serving, site
from gptviz.checkpoints import BUNDLED, CheckpointError, cached_models
from gptviz.tokenizer import TokenizerBase, get_tokenizer
from gptviz.trace import Trace
from gptviz.ui.caching import Context, check_spec, get_trace, load_model, serving_mode
from gptviz.ui.state import SPECIAL, _from_url, keep, kept, kept_or_url, md_text, set_choice, toggle, view_params

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


def model_options() -> list[str]:
    """The bundled models, then every cached model of a supported family (GPT-2, Llama, Mistral,
    Qwen2/3, GPT-NeoX / Pythia), then "other" (a folder, a file or a Hub name typed in). Served
    mode (``gptviz.serving``) offers only what the server allows, and no box for a folder path."""
    if serving_mode() == serving.SERVED:
        return serving.offered(serving.env_allowlist())
    return [f"bundled:{b}" for b in BUNDLED] + cached_models() + [OTHER]


def _model_sidebar() -> str:
    sb = st.sidebar
    options = model_options()
    current = kept_or_url("model") or DEFAULT_MODEL
    if current not in options and OTHER not in options:  # served mode: a listed or allowed spec only
        try:
            options.append(check_spec(current))  # e.g. a training snapshot from a shared link
        except serving.RefusedSpec as exc:
            sb.error(f"The link's model cannot be opened: {exc}. Showing {DEFAULT_MODEL} instead.")
            current = DEFAULT_MODEL
    widget = st.session_state.get("w_model")  # the user's pick wins while the box is on screen
    choice = widget if widget in options else current if current in options else OTHER
    st.session_state["w_model"] = choice
    choice = sb.selectbox(
        "Model",
        options,
        key="w_model",
        help="Bundled models ship with gptviz. Models of every supported family (GPT-2, Llama, Mistral, Qwen2, "
        "Qwen3, GPT-NeoX / Pythia) appear here when they are in the local Hugging Face cache; pick "
        f"{OTHER!r} to open a folder or a Hub name.",
    )
    spec = choice
    if choice == OTHER:
        st.session_state.setdefault("w_model_path", current if current not in options else "")
        spec = sb.text_input("Checkpoint folder or .safetensors file", key="w_model_path").strip()
        if not spec:
            sb.info(
                "Type the path of a Hugging Face folder (GPT-2, Llama, Mistral, Qwen2/3 or GPT-NeoX), a Hub name "
                "such as `HuggingFaceTB/SmolLM2-135M`, or a gptviz .safetensors file."
            )
            spec = DEFAULT_MODEL
    try:
        load_model(spec)
    except (CheckpointError, OSError, ValueError) as exc:
        # Served mode names no file of the server's, even for a listed model that fails to load.
        why = str(exc).rstrip(".") if serving_mode() == serving.LOCAL else serving.REFUSAL
        sb.error(f"Could not load {md_text(repr(spec))}: {md_text(why)}. Showing {DEFAULT_MODEL} instead.")
        if choice == OTHER and hub.looks_like_repo_id(spec) and not Path(spec).expanduser().exists():
            _download_offer(spec)
        spec = DEFAULT_MODEL
    keep("model", spec)
    return spec


def _download_offer(name: str) -> None:
    """Offer to fetch an uncached Hub model: a click asks the Hub for the files and their size, a
    second click downloads them with a progress bar. Nothing reaches the network before a click,
    so a link naming a model never starts a download. ``GPTVIZ_NO_DOWNLOADS=1`` hides the offer
    (a shared classroom server whose disk should not fill up); served mode never shows it."""
    if os.environ.get("GPTVIZ_NO_DOWNLOADS", "").strip() not in ("", "0") or serving_mode() == serving.SERVED:
        return  # served mode never downloads: visitors must not fill the server's disk
    sb = st.sidebar
    plans = st.session_state.setdefault("hub_plans", {})
    plan = plans.get(name)
    if plan is None:
        if sb.button(
            f"Look up {name} on the Hugging Face Hub",
            key="hub_lookup",
            icon=":material/travel_explore:",
            help="Asks the Hub which files the model has and their size; nothing is downloaded yet.",
        ):
            try:
                plans[name] = hub.plan_download(name)
            except hub.DownloadError as exc:
                sb.error(md_text(exc))
                return
            st.rerun()
        return
    sb.caption(
        f"{md_text(plan.repo_id)} @ {plan.commit[:12]}: "
        + ", ".join(f"{md_text(f.path)} ({hub.human_size(f.size)})" for f in plan.files)
    )
    if sb.button(
        f"Download {name} ({hub.human_size(plan.total_bytes)})",
        key="hub_download",
        type="primary",
        icon=":material/download:",
        help=f"Safetensors weights, config and tokenizer files only, into {hub.cache_dir()}.",
    ):
        bar = sb.progress(0.0, text="Downloading…")

        def progress(done: int, total: int) -> None:
            bar.progress(
                min(1.0, done / total) if total else 1.0, text=f"{hub.human_size(done)} of {hub.human_size(total)}"
            )

        try:
            hub.download(plan, progress)
        except hub.DownloadError as exc:
            sb.error(md_text(exc))
            return
        plans.pop(name, None)
        st.rerun()


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
    else:
        start = st.session_state["w_prompt"]  # what the box shows: typed here, or on the last page
    # Set on every run: each page draws its own box (Streamlit's widget ids include the page), and
    # a new box would otherwise come up empty after a page switch in a real browser session.
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
    nav()
    sb.markdown("### gptviz")
    spec = _model_sidebar()
    text = _prompt_sidebar()
    special = toggle(
        "Parse special tokens in the prompt",
        SPECIAL,
        where=sb,
        help="Off (the default): a special token typed in the prompt, such as <|im_start|> or <|endoftext|>, is "
        "plain text, cut into ordinary tokens. On: it is read as the control token it names, as a chat template "
        'writes it (the Tokenization page\'s "Wrap my prompt in the chat template" turns this on).',
    )
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
    if special:
        sb.caption(
            f"Special tokens are parsed: **{_special_count(tok, trace)}** in the prompt are control tokens, not text."
        )
    if trace.truncated:
        sb.warning(
            f"The prompt has {trace.n_input_tokens} tokens; the model reads at most {model.cfg.n_ctx}, "
            f"so the pages show the first {trace.n_tokens}."
        )
    _exports_sidebar(trace)
    return Context(spec, model, tok, trace, projector, special)


def _special_count(tok: TokenizerBase, trace: Trace) -> int:
    """How many of the trace's tokens are special tokens written in the text: ids that the same
    text read as plain text never has (plain text cuts them into ordinary tokens; BOS, which the
    post-processor adds either way, is in both and not counted)."""
    plain = set(tok.encode(trace.text))
    return sum(1 for i in trace.ids.tolist() if i not in plain)


def use_chat_template(text: str) -> None:
    """Button callback (runs before the sidebar): make ``text``, a prompt rendered in the model's
    chat template, the prompt, and parse its special tokens as control tokens (``special=1``)."""
    set_choice("prompt", text)
    set_choice(SPECIAL, True)


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


def share_link() -> str:
    """A link that reopens this view: the browser's address of this page (``st.context.url``;
    ``GPTVIZ_BASE_URL`` or a relative link where it is unknown) plus the query parameters."""
    try:
        base = st.context.url
    except Exception:  # outside a browser session (tests, bare mode)
        base = None
    return export.view_link(view_params(), base or os.environ.get("GPTVIZ_BASE_URL", ""))


def nav() -> None:
    """The page list, grouped by purpose (``gptviz.site``), at the top of the sidebar.

    Streamlit's own list is hidden (``client.showSidebarNavigation = false``): it would name
    the home page "app" and sort by file name. ``st.navigation`` is not used: with a ``pages/``
    folder, Streamlit 1.67 then runs the pages without ``app.py`` around them."""
    sb = st.sidebar
    sb.page_link(site.HOME.path, label=site.HOME.title, icon=site.HOME.icon)
    for name in site.SECTIONS:
        pages = site.section(name)
        if pages:
            sb.markdown(f"**{name}**")
            for p in pages:
                sb.page_link(p.path, label=p.title, icon=p.icon)
    sb.divider()
