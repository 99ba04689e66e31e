"""The "Three generations" lesson and the three-model side by side in a real browser: a guess
picked and revealed by clicks, the chart drawn without a console error, and screenshots
(``artifacts/screenshots/generations-*.png``) for a human to read."""

from __future__ import annotations

import gptviz
from gptviz import lesson as L
from tests import test_browser as tb

chromium, server, browser, tab = tb.chromium, tb.server, tb.browser, tb.tab  # its fixtures (one server here)


def _guess(tab, option: str) -> None:
    tab.page.locator('[data-testid="stMain"] [data-testid="stRadio"] label').filter(has_text=option).first.click()
    tab.page.get_by_role("button", name="Reveal the answer").click()
    tab.page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stAlert"]')]
                   .some(a => /Right!|Not quite\\./.test(a.innerText))"""
    )
    tab.wait_idle()


def test_lesson_steps_reveal_in_the_browser(tab):
    """Every step: the designs table first, then the right guess clicked and the chart drawn."""
    lesson = L.LESSONS["three-generations"]
    runs = {s: (m := gptviz.load_model(s), gptviz.run(m, lesson.prompt)) for s in lesson.models}
    for i, step in enumerate(lesson.steps):
        tab.open(f"Lesson?lesson=three-generations&lesson_step={i}")
        assert tab.wait_charts() >= 1
        if i == 0:
            tab.screenshot("generations-step1-before")
        right, _ = step.question.answer(runs)
        _guess(tab, L.question_options(step, runs)[right].removeprefix("bundled:"))
        title = L.compare_view(step, runs).figure.layout.title.text
        tab.wait_title(title[:20])
        assert "Right!" in tab.page.locator('[data-testid="stMain"]').inner_text()
        tab.screenshot(f"generations-step{i + 1}")
    tab.page.get_by_role("link", name="See the models side by side").click()  # the last step's link
    tab.page.wait_for_function("() => location.pathname.endsWith('/Side_by_side')")
    tab.wait_idle()
    assert tab.wait_charts() >= 9
    assert tab.query().get("sbs_third") == "bundled:llama-style"
    tab.assert_clean()


def test_side_by_side_three_columns_in_the_browser(tab):
    tab.open("Side_by_side?sbs_third=bundled%3Allama-style&prompt=Hello%2C%20world!")
    assert tab.wait_charts() >= 9  # tokens, attention and predictions for each of the three
    tab.screenshot("generations-side-by-side")
    tab.assert_clean()
