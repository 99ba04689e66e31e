"""Bad states in the UI: each gives a friendly message and the app keeps drawing its charts.

A shared link can carry anything (an unknown model, a layer that does not exist, ``abc`` for a
number), the sidebar can be given a folder that is not a checkpoint or a file that is a
malicious pickle, and the prompt box can be emptied or filled with a book. None of these may
show a traceback: the app says what is wrong (``st.warning``/``st.error``/``st.info``), falls
back to something sensible, and the page still renders.
"""

from __future__ import annotations

import pickle
import re

import pytest

from gptviz import ui
from gptviz.checkpoints import BUNDLED, bundled_card
from tests.apptest_utils import ROOT, assert_ok, decode, figures, open_page

PROMPT = "The cat sat on the mat. The cat"
PAGES = sorted(p.name for p in (ROOT / "pages").glob("*.py"))


def plain(markdown: str) -> str:
    """A message as the reader sees it: Markdown backslash escapes removed (the app may escape)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def warnings_text(at) -> str:
    return "\n".join(plain(w.value) for w in [*at.warning, *at.sidebar.warning])


def sidebar_errors(at) -> list[str]:
    return [plain(e.value) for e in at.sidebar.error]


def no_traceback(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def url_value(at, key: str) -> str | None:
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


# --- the model -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "spec"),
    [
        ("4_Attention.py", "bundled:nope"),
        ("6_Output.py", "gpt2-xxl"),
        (None, "../../etc/passwd"),
        ("2_Embeddings.py", ""),
    ],
)
def test_unknown_model_in_the_url(page, spec):
    at = open_page(page, model=spec, prompt=PROMPT)
    no_traceback(at)
    if spec:
        errors = sidebar_errors(at)
        assert any(spec in e and "Showing bundled:gpt2-style instead" in e for e in errors), errors
    assert url_value(at, "model") == "bundled:gpt2-style"  # the link is corrected
    assert figures(at) or page is None
    assert at.sidebar.caption and "tokens" in at.sidebar.caption[0].value


def test_a_folder_that_is_not_a_checkpoint_in_the_url(tmp_path):
    at = open_page("2_Embeddings.py", model=str(tmp_path), prompt=PROMPT)
    no_traceback(at)
    assert at.sidebar.selectbox[0].value == ui.OTHER
    assert at.sidebar.text_input[0].value == str(tmp_path)
    assert any("no config.json" in e for e in sidebar_errors(at))
    assert figures(at)["embed_heatmap"]


def test_a_malicious_pickle_is_never_run(tmp_path):
    """A folder that looks like a GPT-2 checkpoint whose weights are a pickle that runs code."""

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2}')
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"wte.weight": Payload()}, f, protocol=2)
    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps(Payload()))
    for spec in (folder, tmp_path / "evil.safetensors"):
        at = open_page("4_Attention.py", model=str(spec), prompt=PROMPT)
        no_traceback(at)
        assert any("Could not load" in e for e in sidebar_errors(at))
        assert figures(at)["attn_pattern"]
    assert not (tmp_path / "pwned").exists()


def test_picking_another_model_in_the_sidebar_sticks():
    at = open_page("2_Embeddings.py", prompt=PROMPT)
    at.sidebar.selectbox[0].set_value("bundled:seed").run()
    assert_ok(at)
    assert at.sidebar.selectbox[0].value == "bundled:seed"
    assert url_value(at, "model") == "bundled:seed"


def test_a_folder_that_is_not_a_checkpoint_typed_in_the_sidebar(tmp_path):
    at = open_page("4_Attention.py", prompt=PROMPT)
    at.sidebar.selectbox[0].set_value(ui.OTHER).run()
    no_traceback(at)
    assert at.sidebar.selectbox[0].value == ui.OTHER
    assert any("Type the path" in i.value for i in at.sidebar.info)  # nothing typed yet
    at.sidebar.text_input[0].set_value(str(tmp_path)).run()
    no_traceback(at)
    assert any(str(tmp_path) in e and "no config.json" in e for e in sidebar_errors(at))
    assert figures(at)["attn_pattern"]  # the page goes on with the default model
    assert at.sidebar.text_input[0].value == str(tmp_path)  # what the user typed stays to be fixed


# --- layers, heads and other choices out of range ------------------------------------------------

BAD_URLS = {
    "4_Attention.py": (
        {
            "attn_layer": "99",
            "attn_head": "abc",
            "attn_query": "-1",
            "ablate_heads": "x.y,99.99",
            "ablate_mode": "evil",
        },
        ["attn_layer", "attn_head", "attn_query"],
    ),
    "5_Feed-forward_and_residual.py": (
        {"ff_layer": "-3", "ff_top": "0", "ff_pos": "99999", "ff_ln": "blocks.9.ln1", "ff_target": "abc"},
        ["ff_layer", "ff_top", "ff_pos", "ff_ln", "ff_target"],
    ),
    "6_Output.py": (
        {"out_n": "9999", "out_temperature": "hot", "out_top_k": "-5", "out_generated": "1,2,abc,99999999"},
        ["out_n", "out_temperature", "out_top_k"],
    ),
    "1_Tokenization.py": ({"word": "<script>", "merge": "-1"}, ["word"]),
    "2_Embeddings.py": ({"emb_pos": "1e9"}, ["emb_pos"]),
    "3_Positional_encoding.py": (
        {"pos_n": "0", "pos_dims": "1,abc", "pos_token": "-2"},
        ["pos_n", "pos_dims", "pos_token"],
    ),
}


@pytest.mark.parametrize("page", list(BAD_URLS))
def test_out_of_range_values_in_the_url(page):
    params, warned = BAD_URLS[page]
    at = open_page(page, prompt=PROMPT, **params)
    assert_ok(at)
    text = warnings_text(at)
    for key in warned:
        assert f"The link asked for {key} = {params[key]!r}" in text, (key, text)
    assert figures(at)
    for key in warned:  # the link now holds a value that fits
        assert url_value(at, key) != params[key]
    at.run()  # and the next run is quiet: the warnings were about the link, once
    assert_ok(at)
    assert not warnings_text(at)


# --- the prompt ------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [None, *PAGES])
def test_an_empty_prompt_is_a_friendly_message_and_the_page_comes_back(page):
    at = open_page(page, prompt=PROMPT)
    assert_ok(at)
    at.sidebar.text_area[0].set_value("").run()
    no_traceback(at)
    assert not at.error
    if page is not None:
        assert any("empty" in i.value for i in at.info)
    assert any("0 tokens" in c.value for c in at.sidebar.caption)
    at.sidebar.text_area[0].set_value(PROMPT).run()
    assert_ok(at)
    assert figures(at) or page is None


@pytest.mark.parametrize("page", [None, "1_Tokenization.py", "4_Attention.py", "6_Output.py"])
def test_a_100k_character_prompt_is_truncated_with_a_notice(page):
    text = "To be, or not to be: that is the question. " * 2326  # 100,018 characters, ~25k tokens
    text = text[: ui.MAX_PROMPT_CHARS]
    at = open_page(page, prompt=text)
    assert_ok(at)
    notes = [w.value for w in at.sidebar.warning]
    n_ctx = bundled_card(BUNDLED[0])["config"]["n_ctx"]  # the default model's context
    assert any(f"the model reads at most {n_ctx}" in w and f"show the first {n_ctx}" in w for w in notes), notes
    assert figures(at) or page is None
    if page == "1_Tokenization.py":
        chips = figures(at)["chips"]
        assert len(chips["data"][0]["text"]) == n_ctx and len(decode(chips["data"][1]["x"])) == n_ctx  # texts, chips
        assert "first 5,000 characters" in figures(at)["cmp_gpt2"]["layout"]["title"]["text"]


# --- what the URL says is shown as text, not as Markdown ----------------------------------------


def test_link_values_in_messages_are_text_not_markdown():
    """A shared link must not be able to put an image (a beacon), a link or styling in a message."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark")
    evil = "![x](http://example.com/beacon.png) [click](http://example.com) **loud**"
    at = open_page("4_Attention.py", prompt=PROMPT, attn_head=evil, model=f"bundled:{evil}")
    no_traceback(at)
    messages = [w.value for w in at.warning] + [e.value for e in at.sidebar.error]
    assert any("beacon" in m for m in messages) and len(messages) >= 2
    for m in messages:
        rendered = md.render(m)
        assert "<img" not in rendered and "<a " not in rendered and "<strong>" not in rendered, m


def test_a_link_with_a_longer_prompt_than_the_box_allows_is_cut_with_a_notice():
    at = open_page(None, prompt="x" * (ui.MAX_PROMPT_CHARS + 50_000))
    no_traceback(at)
    assert len(at.sidebar.text_area[0].value) <= ui.MAX_PROMPT_CHARS
    assert any(f"{ui.MAX_PROMPT_CHARS:,}" in w for w in warnings_text(at).splitlines())
