"""Predict, then reveal: a guess in a form, then the verdict from the real trace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from gptviz import lesson as lessons
from gptviz.figures import visible
from gptviz.ui.caching import Context


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


def quiz_choice(step: lessons.Step, runs: Mapping[str, tuple[Any, Any]], key: str) -> lessons.Verdict | None:
    """A lesson's multiple-choice question about several models (``Step.question``)."""
    assert step.question is not None
    options = lessons.question_options(step, runs)
    text = next(iter(runs.values()))[1].text
    return quiz(
        step.question.text,
        key,
        (tuple(runs), text),
        lambda: st.radio(
            "Your guess",
            list(range(len(options))),
            index=None,
            format_func=lambda i: options[i].removeprefix("bundled:"),
            key=f"guess_{key}",
            horizontal=len(options) <= 3,
        ),
        lambda g: lessons.check_choice(step, runs, -1 if g is None else int(g)),
    )


def quiz_section(kind: str, ctx: Context, *args: Any) -> None:
    """A collapsed "predict, then reveal" section for a stage page (nothing runs until opened)."""
    with st.expander("Predict, then reveal", key=f"x_quiz_{kind}", on_change="rerun", icon=":material/quiz:") as box:
        if box.open:
            {"tokens": quiz_tokens, "attention": quiz_attention, "next": quiz_next}[kind](ctx, *args)
