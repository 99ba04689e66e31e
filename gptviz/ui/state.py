"""State kept across pages and mirrored into the URL, and the widgets that keep it.

Every choice (model, prompt, and each page's layer/head/token…) lives in ``st.session_state``
under a private key and is mirrored into ``st.query_params`` on every run, so a copied URL
reopens exactly that view. Streamlit clears query parameters when the user switches pages and
forgets the state of widgets that are not on screen, which is why the kept value is stored apart
from the widget's own key (``w_<key>``: private to this module; pages call ``set_choice``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")


def _kept() -> dict[str, Any]:
    """Values chosen in this session, by URL key. Seeded once from the URL; a link followed
    inside the session (``st.page_link(..., query_params=…)``) then overrides what it names."""
    ss = st.session_state
    if "_kept" not in ss:
        ss["_kept"] = {}
        ss["_url"] = {k: st.query_params.get(k) for k in st.query_params}
        ss["_written"] = dict(ss["_url"])
    else:
        _adopt_link(ss)
    return ss["_kept"]


def _adopt_link(ss: Any) -> None:
    """Query parameters that differ from what this session last wrote came from a link clicked
    inside the session (the URL is ours otherwise): take them as if the session opened with them.
    (Parameters that vanished are a page switch, which clears the URL: the kept values return.)"""
    written = ss["_written"]
    for k in st.query_params:
        raw = st.query_params.get(k)
        if raw == written.get(k):
            continue
        ss["_url"][k] = written[k] = raw
        ss["_kept"].pop(k, None)
        ss.pop(f"w_{k}", None)


def _from_url(key: str) -> str | None:
    _kept()
    return st.session_state["_url"].get(key)


def keep(key: str, value: Any) -> None:
    """Remember ``value`` for ``key`` and write it to the URL."""
    _kept()[key] = value
    _write_url()


def kept(key: str, default: T) -> T:
    return _kept().get(key, default)


def kept_or_url(key: str) -> Any:
    """The kept value of ``key`` (whatever this session chose, an empty list included: the user
    cleared it), else the raw string the opening URL gave, else ``None``. For state that is not a
    widget (a generated text, a lesson step, an ablation)."""
    value = kept(key, None)
    return value if value is not None else _from_url(key)


def set_choice(key: str, value: Any) -> None:
    """Make ``value`` the choice of ``key`` now: kept, in the URL, and shown by its widget on the
    next run (a click on a chart cell, a lesson step setting the layer). Must run before the
    widget's line, e.g. in an ``on_change``/``on_select`` callback."""
    keep(key, value)
    st.session_state[f"w_{key}"] = value


def widget_value(key: str) -> Any:
    """What the widget of ``key`` shows right now (``None`` if it is not drawn): in its own
    ``on_change`` callback this is the new choice, before the widget's line keeps it."""
    return st.session_state.get(f"w_{key}")


def forget_widget(key: str) -> None:
    """Drop what the widget of ``key`` shows, so the kept value (or the URL's) wins on its next run."""
    st.session_state.pop(f"w_{key}", None)


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
    st.session_state["_written"] = dict(want)
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


SPECIAL = "special"  # URL key: 1 when typed special tokens are parsed (the chat-template opt-in)


def special_tokens() -> bool:
    """Whether this session reads special tokens written in the prompt (``<|im_start|>``) as the
    control tokens they name: the sidebar toggle's kept value, else the opening link's
    ``special=1``. Off by default: a prompt is text, not control codes."""
    value = kept(SPECIAL, None)
    if isinstance(value, bool):
        return value
    return _from_url(SPECIAL) in ("1", "true", "True")


def from_url(key: str) -> str | None:
    """The raw value the session's opening URL gave for ``key`` (for state that is not a widget)."""
    return _from_url(key)


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
