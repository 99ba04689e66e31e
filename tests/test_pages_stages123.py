"""AppTests of the home page and stages 1–3: real numbers, prompt changes, URL state, escaping."""

import re

import numpy as np
import pytest

import gptviz
from gptviz import figures as figures_mod
from gptviz.tokenizer import get_tokenizer
from tests.apptest_utils import assert_ok, decode, figures, open_page

PROMPT = "The cat sat on the mat."
MODEL = "bundled:gpt2-style"


@pytest.fixture(scope="module")
def model():
    return gptviz.load_model(MODEL)


def test_home_opens_with_bundled_model_and_default_prompt():
    at = open_page()
    assert_ok(at)
    assert at.title[0].value.startswith("gptviz")
    assert any("parameters" == m.label for m in at.metric)
    assert at.sidebar.selectbox[0].value == MODEL
    assert at.sidebar.text_area[0].value.startswith("ROMEO")
    assert at.query_params["model"] == [MODEL] or at.query_params["model"] == MODEL


def test_tokenization_page_shows_the_real_tokens(model):
    at = open_page("1_Tokenization.py", prompt="Hello, world!")
    assert_ok(at)
    trace = gptviz.run(model, "Hello, world!")
    chips = figures(at)["chips"]
    texts = chips["data"][0]["text"]
    assert len(texts) == trace.n_tokens
    assert [t.split("<br>")[0] for t in texts] == [figures_mod.label(t) for t in trace.tokens]
    assert at.metric[2].value == str(trace.n_tokens)
    table = at.dataframe[0].value
    assert table["id"].tolist() == trace.ids.tolist()
    cmp = figures(at)["cmp_gpt2"]
    assert [int(t.split("<sub>")[1].split("<")[0]) for t in cmp["data"][0]["text"]] == [15496, 11, 995, 0]


def test_bpe_replay_opens_on_a_word_that_merges_and_the_link_keeps_the_choice(model):
    prompt = "ROMEO:\nBut, soft! what light through yonder window breaks?"  # ROMEO: no merges here
    at = open_page("1_Tokenization.py", prompt=prompt)
    assert_ok(at)
    tok = get_tokenizer(model.cfg.tokenizer)
    word = at.selectbox(key="w_word").value
    assert len(tok.merge_steps("ROMEO")) == 1 and len(tok.merge_steps(word)) > 2
    assert "merges: " in figures(at)["merges"]["layout"]["title"]["text"]
    at = open_page("1_Tokenization.py", prompt=prompt, word="ROMEO")
    assert_ok(at)
    assert at.selectbox(key="w_word").value == "ROMEO"


def test_embeddings_heatmap_equals_the_trace_and_follows_the_prompt(model):
    at = open_page("2_Embeddings.py", prompt=PROMPT)
    assert_ok(at)
    z = decode(figures(at)["embed_heatmap"]["data"][0]["z"])
    np.testing.assert_allclose(z, gptviz.run(model, PROMPT)["hook_embed"], atol=1e-6)
    at.sidebar.text_area[0].set_value("A different prompt entirely").run()
    assert_ok(at)
    z2 = decode(figures(at)["embed_heatmap"]["data"][0]["z"])
    np.testing.assert_allclose(z2, gptviz.run(model, "A different prompt entirely")["hook_embed"], atol=1e-6)


def test_positional_page_and_url_restores_the_view(model):
    at = open_page("3_Positional_encoding.py", prompt=PROMPT, pos_token="3", pos_n="40")
    assert_ok(at)
    figs = figures(at)
    pos = decode(figs["pos_heatmap"]["data"][0]["z"])
    assert pos.shape == (40, model.cfg.d_model)
    np.testing.assert_allclose(pos, model.pos_embed.weight.detach().numpy()[:40], atol=1e-6)
    rows = decode(figs["pos_sum"]["data"][0]["z"])
    trace = gptviz.run(model, PROMPT)
    np.testing.assert_allclose(rows[2], trace["blocks.0.hook_resid_pre"][3], atol=1e-6)
    assert at.query_params["pos_token"] in ("3", ["3"])


def test_seed_model_shows_sinusoids():
    at = open_page("3_Positional_encoding.py", model="bundled:seed", prompt=PROMPT, pos_n="32")
    assert_ok(at)
    pos = decode(figures(at)["pos_heatmap"]["data"][0]["z"])
    np.testing.assert_allclose(pos, gptviz.positional_encoding(32, pos.shape[1]).numpy(), atol=1e-6)


HOSTILE = '<script>alert(1)</script> <b>bold</b><br><a href="x">link</a> $x$\nline'


def test_token_text_reaches_figures_as_entities_not_tags():
    at = open_page("1_Tokenization.py", prompt=HOSTILE)
    assert_ok(at)
    import json

    blob = json.dumps([figures(at)[k] for k in ("chips", "cmp_gpt2", "cmp_bundled", "merges")])
    for tag in ("<script", "<b>", "<br>x", "<a ", "<a>"):
        assert tag not in blob.replace("<br><sub>", "").replace("<br>id", "").replace("<br>bytes", "").replace(
            "<br>string", ""
        ), tag
    assert "&lt;script&gt;" in blob or "&lt;" in blob
    at2 = open_page("2_Embeddings.py", prompt=HOSTILE)
    assert_ok(at2)
    blob2 = json.dumps(figures(at2))
    assert "<script" not in blob2 and "&lt;" in blob2


def test_bad_url_values_warn_and_the_app_still_works():
    at = open_page("3_Positional_encoding.py", model="no-such-model", pos_token="999", prompt=PROMPT)
    assert not at.exception
    plain = [re.sub(r"\\(.)", r"\1", m.value) for m in [*at.sidebar.error, *at.warning]]  # Markdown escapes off
    assert any("no-such-model" in m for m in plain)
    assert any("999" in m for m in plain)
    assert figures(at)["pos_heatmap"]


def test_empty_prompt_is_a_friendly_message():
    at = open_page("2_Embeddings.py", prompt=PROMPT)
    at.sidebar.text_area[0].set_value("").run()
    assert not at.exception
    assert any("empty" in i.value for i in at.info)
