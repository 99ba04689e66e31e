"""The chat template on the Tokenization page: shown, and "Wrap my prompt in the chat template"
makes the prompt one user message whose special tokens reach the trace as control tokens (and
only then: typed special tokens are plain text by default), kept in the URL as ``special=1``."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer as RustTokenizer

from gptviz.tokenizer import ChatTemplateError, HFTokenizer, NoChatTemplate, get_tokenizer, render_chat_template
from tests.apptest_utils import assert_ok, open_page
from tests.hf_families import make_family_model

TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PROMPT = "Hello, world!"
WRAPPED = "<|im_start|>user\nHello, world!<|im_end|>\n<|im_start|>assistant\n"  # written out by hand
PAGE = "1_Tokenization.py"


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory):
    """A tiny random Qwen2 checkpoint whose tokenizer.json has <|im_start|>/<|im_end|> as special
    tokens and whose tokenizer_config.json has a small ChatML template."""
    folder = tmp_path_factory.mktemp("chat") / "qwen2-chat"
    make_family_model("qwen2", folder)
    tok = RustTokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.add_special_tokens(["<|im_start|>", "<|im_end|>"]) == 2
    tok.save(str(folder / "tokenizer.json"))
    config = {"chat_template": TEMPLATE, "eos_token": "<|im_end|>", "tokenizer_class": "Qwen2Tokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    get_tokenizer.cache_clear()  # a folder of the same path may have been read before
    return folder


@pytest.fixture(scope="module")
def reference(chat_folder):
    """The ids of the wrapped prompt from the library itself: special tokens parsed, and not."""
    rust = RustTokenizer.from_file(str(chat_folder / "tokenizer.json"))
    special = {rust.token_to_id("<|im_start|>"), rust.token_to_id("<|im_end|>")}
    parsed = rust.encode(WRAPPED).ids
    rust.encode_special_tokens = True
    plain = rust.encode(WRAPPED).ids
    assert special < set(parsed) and not special & set(plain)  # the reference itself tells them apart
    return special, parsed, plain


def trace_ids(at) -> list[int]:
    """The ids of the page's trace, from its token table (always sent: ``lazy=False``)."""
    (table,) = [df.value for df in at.dataframe if "id" in df.value.columns and "n_bytes" in df.value.columns]
    return [int(i) for i in table["id"]]


def test_wrap_chat_renders_one_user_message(chat_folder):
    tok = HFTokenizer(chat_folder)
    assert tok.chat_template == TEMPLATE
    assert tok.wrap_chat(PROMPT) == WRAPPED
    with pytest.raises(NoChatTemplate):
        render_chat_template(None, [], name="base")
    with pytest.raises(ChatTemplateError, match="failed to render"):
        render_chat_template("{{ raise_exception('no system role') }}", [], name="strict")
    with pytest.raises(ChatTemplateError):
        render_chat_template("{% for %}", [], name="broken")


def test_page_shows_the_template_and_wrapping_parses_special_tokens(chat_folder, reference):
    special, parsed, plain = reference
    at = open_page(PAGE, model=str(chat_folder), prompt=PROMPT)
    assert_ok(at)
    assert any(TEMPLATE == c.value for c in at.code)  # the Jinja source, in its expander
    assert any(WRAPPED.rstrip() == c.value.rstrip() for c in at.code)  # the preview (st.code drops the last newline)
    assert not special & set(trace_ids(at))
    at.button(key="tok_chat_wrap").click().run()
    assert_ok(at)
    assert at.query_params["special"] == "1" and at.query_params["prompt"] == WRAPPED
    assert at.sidebar.text_area[0].value == WRAPPED
    assert at.sidebar.toggle(key="w_special").value is True
    n_special = sum(i in special for i in parsed)  # 2 × <|im_start|>, 1 × <|im_end|>
    assert n_special == 3
    assert any(f"Special tokens are parsed: **{n_special}**" in c.value for c in at.sidebar.caption)
    ids = trace_ids(at)
    assert ids == parsed and special < set(ids)


def test_typed_special_tokens_are_plain_text_without_opting_in(chat_folder, reference):
    special, parsed, plain = reference
    at = open_page(PAGE, model=str(chat_folder), prompt=WRAPPED)
    assert_ok(at)
    assert at.sidebar.toggle(key="w_special").value is False
    ids = trace_ids(at)
    assert ids == plain and not special & set(ids)
    assert not any("Special tokens are parsed" in c.value for c in at.sidebar.caption)


def test_link_restores_parsed_special_tokens_on_every_page(chat_folder, reference):
    special, parsed, plain = reference
    at = open_page(PAGE, model=str(chat_folder), prompt=WRAPPED, special="1")
    assert_ok(at)
    assert at.sidebar.toggle(key="w_special").value is True
    assert trace_ids(at) == parsed
    # switching it off in the sidebar reads the same text as plain text again (a different trace)
    at.sidebar.toggle(key="w_special").set_value(False).run()
    assert_ok(at)
    assert trace_ids(at) == plain and at.query_params["special"] == "0"
    # another page shares the setting: the Output page's prompt is the parsed one
    other = open_page("6_Output.py", model=str(chat_folder), prompt=WRAPPED, special="1")
    assert_ok(other)
    assert any("Special tokens are parsed: **3**" in c.value for c in other.sidebar.caption)
