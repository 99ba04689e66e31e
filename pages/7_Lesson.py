"""Classroom: a guided lesson through the five stages, one shareable link per step."""

import streamlit as st

from gptviz import lesson as L
from gptviz import ui
from gptviz.checkpoints import CheckpointError


def use_settings(settings: dict, only_missing_from_url: bool = False) -> None:
    """Keep a lesson's or step's choices (layer, head, temperature…) for every page."""
    for k, v in settings.items():
        if not (only_missing_from_url and ui.from_url(k) is not None):
            ui.keep(k, v)
            ui.forget_widget(k)


def use_prompt(key: str, only_missing_from_url: bool = False) -> None:
    """Callback (or top of the script): set the lesson's prompt and selection, before the sidebar."""
    lesson = L.LESSONS[key]
    ui.set_choice("prompt", lesson.prompt)
    use_settings(dict(lesson.selection), only_missing_from_url)


def go(key: str, i: int) -> None:
    i = L.clamp_step(L.LESSONS[key], i)
    ui.keep("lesson_step", i)
    use_settings(dict(L.LESSONS[key].steps[i].settings))


def choose() -> None:
    key = ui.widget_value("lesson")
    ui.keep("lesson", key)
    use_prompt(key)
    go(key, 0)


if not st.session_state.get("lesson_opened"):  # a shared link: its lesson's prompt unless it names one
    st.session_state["lesson_opened"] = True
    if ui.from_url("lesson") in L.LESSONS and ui.from_url("prompt") is None:
        use_prompt(ui.from_url("lesson"), only_missing_from_url=True)

ctx = ui.page(
    "Lesson",
    "A guided tour for the classroom: the stages in order (or, in one lesson, three generations of "
    "design), one short step at a time, each with its chart for the current prompt. Guess before each reveal. Every step has its own link.",
)
t, cfg, P = ctx.trace, ctx.cfg, ctx.projector
key = ui.select("Lesson", list(L.LESSONS), "lesson", format_func=lambda k: L.LESSONS[k].title, on_change=choose)
lesson = L.LESSONS[key]
st.caption(lesson.summary)
if t.text != lesson.prompt:
    c1, c2 = st.columns([4, 1])
    c1.info(f"This lesson is written for the prompt {L.code(lesson.prompt)}; it works on yours too.")
    c2.button("Use the lesson's prompt", key="lesson_prompt", on_click=use_prompt, args=(key,))
raw = ui.kept("lesson_step", None)
raw = raw if raw is not None else ui.from_url("lesson_step")
i = L.clamp_step(lesson, int(raw) if str(raw).isdigit() else 0)
ui.keep("lesson_step", i)
step = lesson.steps[i]


def kept_int(name: str, default: int, hi: int) -> int:
    value = ui.kept(name, None)
    value = value if value is not None else ui.from_url(name)
    value = int(value) if str(value).lstrip("-").isdigit() else default
    ui.keep(name, min(max(value, 0), hi))
    return min(max(value, 0), hi)


stage_name = L.STAGES[step.stage][0].split(" · ", 1)[-1]  # "1 · Tokenization" -> "Tokenization"
where = "" if lesson.models else f" · {stage_name}"  # a comparing step's stage page is only where to explore
st.progress((i + 1) / len(lesson.steps), text=f"Step {i + 1} of {len(lesson.steps)}{where}")
if lesson.models:  # a lesson comparing models: each runs the prompt, whatever the sidebar's model
    try:
        runs = {spec: (ui.load_model(spec), ui.get_trace(spec, t.text)) for spec in lesson.models}
    except (CheckpointError, OSError, ValueError) as exc:
        st.warning(f"This lesson needs the models {', '.join(lesson.models)}: {exc}")
        st.stop()
    title, text = L.step_text(step, L.compare_facts(runs))
    st.subheader(title)
    st.markdown(text)
    verdict = ui.quiz_choice(step, runs, f"lesson_{key}_{i}") if step.quiz == "choice" else None
    if step.quiz is not None and verdict is None:  # the designs, not the measurement that answers
        view = L.compare_teaser(runs, P)
        ui.chart(view.figure, "lesson_before", table=view.table)
    else:
        view = L.compare_view(step, runs, P)
        ui.chart(view.figure, "lesson_chart", table=view.table, caption=view.caption)
else:
    if lesson.head == "previous-token":
        layer, head, _ = L.best_previous_token_head(t)
        ui.keep("attn_layer", layer)
        ui.keep("attn_head", head)
    else:
        layer = kept_int("attn_layer", lesson.selection.get("attn_layer", 0), cfg.n_layer - 1)
        head = kept_int("attn_head", lesson.selection.get("attn_head", 0), cfg.n_head - 1)

    temp = 1.0
    if step.stage == "temperature":
        default = float(step.settings.get("out_temperature", 1.0))
        temp = ui.select_slider("Temperature", L.TEMPERATURES, "out_temperature", default)
    title, text = L.step_text(step, L.facts(t, layer, head, ctx.tokenizer.token_str, temperature=temp))
    st.subheader(title)
    st.markdown(text)

    verdict = None
    if step.quiz == "tokens":
        verdict = ui.quiz_tokens(ctx, f"lesson_{key}_{i}")
    elif step.quiz == "attention":
        verdict = ui.quiz_attention(ctx, layer, head, f"lesson_{key}_{i}")
    elif step.quiz == "next":
        verdict = ui.quiz_next(ctx, f"lesson_{key}_{i}")

    if step.quiz is not None and verdict is None:  # a chart that does not give the answer away
        ui.chart(ui.figure(L.teaser, step, t, P, key="lesson_before"), "lesson_before")  # shared by the room
    else:
        view = L.step_view(step, t, ctx.model, ctx.tokenizer.token_str, layer, head, temp, P)
        ui.chart(view.figure, "lesson_chart", table=view.table, caption=view.caption)
        if view.extra is not None:
            ui.table(view.extra, "lesson_table")

label, page = L.STAGES[step.stage]
if lesson.models and page == "pages/8_Side_by_side.py":  # open it on the lesson's models
    chosen = dict(zip(("sbs_left", "sbs_right", "sbs_third"), lesson.models, strict=False))
    st.page_link(page, label="See the models side by side", icon=":material/compare:", query_params=chosen)
else:
    st.page_link(page, label=f"Explore {label} on its own page", icon=":material/arrow_outward:")
c = st.columns([1, 1, 4])
c[0].button("Back", key="lesson_back", on_click=go, args=(key, i - 1), disabled=i == 0, icon=":material/arrow_back:")
last = i == len(lesson.steps) - 1
c[1].button(
    "Next",
    key="lesson_next",
    on_click=go,
    args=(key, i + 1),
    disabled=last,
    type="primary",
    icon=":material/arrow_forward:",
)
if last:
    c[2].success("End of the lesson. Pick another one above, or explore the pages on your own.")
with st.expander("Link to this step", icon=":material/link:"):
    st.code(ui.share_link(), language=None, wrap_lines=True)
