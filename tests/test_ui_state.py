"""The URL-state logic of ``gptviz.ui.state`` on its own, in a tiny app (no model, no pages).

Each app below is a few widgets from ``ui.state``; ``AppTest.from_function`` runs it as a
script, the test sets the opening URL (``at.query_params``) and reads back what the widgets
show and what the URL says. The rules under test: a URL value restores its widget; moving a
widget writes the URL; when a widget is not drawn its kept value (else the URL's) carries on;
``set_choice`` moves a widget from a callback; a bad URL value warns and falls back.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _url(at: AppTest, key: str) -> str | None:
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


def _slider_app() -> None:
    import streamlit as st

    from gptviz.ui import state

    if st.toggle("show the slider", value=True, key="show"):
        n = state.slider("N", 0, 10, "n", 3)
        st.write(f"n={n}")
    st.button("nine", key="nine", on_click=state.set_choice, args=("n", 9))


def _kept_app() -> None:
    import streamlit as st

    from gptviz.ui import state

    st.button("clear", key="clear", on_click=state.keep, args=("picked", []))
    st.write(f"kept_or_url={state.kept_or_url('picked')!r}")
    st.write(f"from_url={state.from_url('picked')!r}")


def _run(app, **url: str) -> AppTest:
    at = AppTest.from_function(app, default_timeout=30)
    for k, v in url.items():
        at.query_params[k] = v
    return at.run()


def _texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def test_a_url_value_restores_its_widget():
    at = _run(_slider_app, n="7")
    assert not at.exception
    assert at.slider(key="w_n").value == 7 and "n=7" in _texts(at)
    assert not at.warning
    assert _url(at, "n") == "7"


def test_without_a_url_the_default_shows_and_is_written():
    at = _run(_slider_app)
    assert at.slider(key="w_n").value == 3
    assert _url(at, "n") == "3"


def test_a_bad_url_value_warns_and_falls_back():
    for bad in ("99", "abc"):
        at = _run(_slider_app, n=bad)
        assert not at.exception
        assert at.slider(key="w_n").value == 3
        assert len(at.warning) == 1 and "n" in at.warning[0].value


def test_moving_a_widget_writes_the_url():
    at = _run(_slider_app, n="7")
    at.slider(key="w_n").set_value(5).run()
    assert "n=5" in _texts(at)
    assert _url(at, "n") == "5"


def test_a_hidden_widget_comes_back_with_the_kept_value_not_the_urls():
    at = _run(_slider_app, n="7")
    at.slider(key="w_n").set_value(2).run()
    at.toggle(key="show").set_value(False).run()  # the slider is not drawn: Streamlit forgets w_n
    assert not at.slider and "w_n" not in at.session_state
    assert _url(at, "n") == "2"  # still in the URL while hidden
    at.toggle(key="show").set_value(True).run()
    assert at.slider(key="w_n").value == 2  # the kept value, not the opening URL's 7


def test_set_choice_moves_the_widget_and_the_url():
    at = _run(_slider_app, n="7")
    at.button(key="nine").click().run()
    assert at.slider(key="w_n").value == 9 and "n=9" in _texts(at)
    assert _url(at, "n") == "9"


def test_kept_or_url_prefers_this_sessions_choice_even_when_empty():
    at = _run(_kept_app, picked="1,2")
    assert "kept_or_url='1,2'" in _texts(at)  # nothing kept yet: the URL's raw string
    at.button(key="clear").click().run()
    assert "kept_or_url=[]" in _texts(at)  # the user cleared it: an empty list wins over the URL
    assert "from_url='1,2'" in _texts(at)  # the opening URL is still known
    assert _run(_kept_app).markdown[0].value == "kept_or_url=None"
