"""The only Streamlit code outside ``app.py`` and ``pages/`` (see ARCHITECTURE.md).

Pages read one flat namespace (``ui.page``, ``ui.chart``, ``ui.slider``, ``ui.load_model``…);
behind it each job has its module:

- ``caching``: models, traces and figure JSON shared between sessions in byte-bounded LRUs;
- ``state``: choices kept across pages and mirrored into the URL, and the widgets that keep them;
- ``sidebar``: model picker, prompt, projector toggle, exports, share link, grouped page links;
- ``layout``: the page frame, charts with their numbers and downloads, tables, seed notes;
- ``ablation``: the head/neuron ablation picker and its before/after result, shared by two pages;
- ``quiz``: "predict, then reveal".
"""

from gptviz.ui.ablation import ablated_trace, ablation, ablation_picker, ablation_result, set_ablation
from gptviz.ui.caching import TRACE_CACHE_BYTES, Context, _figure_cache, _trace_cache, figure, get_trace, load_model
from gptviz.ui.layout import architecture, chart, page, seed_note, table
from gptviz.ui.quiz import quiz, quiz_attention, quiz_choice, quiz_next, quiz_section, quiz_tokens
from gptviz.ui.sidebar import (
    DEFAULT_MODEL,
    DEFAULT_PROMPT,
    EXAMPLES,
    MAX_PROMPT_CHARS,
    OTHER,
    PROJECTOR_CSS,
    model_options,
    nav,
    share_link,
    sidebar,
    use_chat_template,
)
from gptviz.ui.state import (
    forget_widget,
    from_url,
    keep,
    kept,
    kept_or_url,
    md_text,
    multiselect,
    number,
    select,
    select_slider,
    set_choice,
    slider,
    toggle,
    view_params,
    widget_value,
)

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_PROMPT", "EXAMPLES", "MAX_PROMPT_CHARS", "OTHER", "PROJECTOR_CSS", "TRACE_CACHE_BYTES",
    "Context", "_figure_cache", "_trace_cache", "ablated_trace", "architecture", "ablation", "ablation_picker", "ablation_result",
    "chart", "figure", "forget_widget", "from_url", "get_trace", "keep", "kept", "kept_or_url", "load_model", "md_text",
    "model_options",
    "multiselect", "nav", "number", "page", "quiz", "quiz_attention", "quiz_choice", "quiz_next", "quiz_section", "quiz_tokens",
    "select", "select_slider", "set_ablation", "set_choice", "seed_note", "share_link", "sidebar", "slider", "table", "toggle",
    "use_chat_template", "view_params", "widget_value",
]  # fmt: skip
