"""The overview: its numbers are the trace's (links = pattern, next token = trace.probs()), it
handles rotary models, it is on the home page, its per-layer links open the attention page at
that layer and head, and "Next token" extends it (with the KV-cached generator's tokens)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import numpy as np
import pytest

import gptviz
from gptviz.analysis import generation as gen
from gptviz.analysis.overview import generated_attention, head_strength, overview, overview_table, window
from gptviz.figures import overview as fo
from gptviz.ui.sidebar import DEFAULT_MODEL, DEFAULT_PROMPT
from tests.apptest_utils import assert_ok, decode, figures, open_page
from tests.conftest import tiny_model

PROMPT = "The cat sat on the mat. The dog sat on the rug. The cat sat on the"


@pytest.fixture(scope="module")
def bundled():
    return gptviz.load_model(DEFAULT_MODEL)


def _trace_named(fig: dict, name: str) -> dict:
    return next(t for t in fig["data"] if t.get("name") == name)


def _links(fig: dict) -> dict[tuple[int, int], tuple[int, float]]:
    """(layer, key) -> (head, weight) read off the figure's link markers."""
    cd = _trace_named(fig, "links")["customdata"]
    return {(int(c[1]), int(c[3])): (int(c[2]), float(c[4])) for c in cd}


@pytest.mark.parametrize("query", [-1, 5])
def test_link_weights_and_probabilities_are_the_trace(bundled, query):
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    t = gptviz.run(bundled, PROMPT)
    ov = overview(t, tok.token_str, query=query)
    q = query % t.n_tokens
    fig = fo.overview_figure(ov).to_plotly_json()
    cols = window(t.n_tokens, q, fo.columns())
    links = _links(fig)
    for layer in range(bundled.cfg.n_layer):
        pattern = t["pattern", layer].astype(np.float32)
        # the head drawn is the strongest: the heaviest link other than to the first token
        strongest = int(np.argmax(pattern[:, q, 1 : q + 1].max(axis=1)))
        for k in cols:
            if k <= q:
                head, w = links[(layer, k)]
                assert head == strongest
                assert w == pytest.approx(float(pattern[head, q, k]), abs=1e-6)
        if cols.start > 0:  # everything left of the window, summed: the weights still add up to 1
            assert links[(layer, -1)][1] == pytest.approx(float(pattern[strongest, q, : cols.start].sum()), abs=1e-5)
        assert sum(w for (lay, _), (_, w) in links.items() if lay == layer) == pytest.approx(1.0, abs=2e-3)  # float16
    probs = t.probs(q)
    top = np.argsort(-probs)[:5]
    nxt = _trace_named(fig, "next")["customdata"]
    assert [int(c[2]) for c in nxt] == top.tolist()
    np.testing.assert_allclose([c[3] for c in nxt], probs[top], atol=1e-7)


def test_a_chosen_head_is_drawn_and_the_heads_column_is_the_pattern(bundled):
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    t = gptviz.run(bundled, PROMPT)
    ov = overview(t, tok.token_str, heads={0: 2, 3: 1})
    assert (ov.layers[0].head, ov.layers[0].chosen, ov.layers[3].head) == (2, True, 1)
    fig = fo.overview_figure(ov).to_plotly_json()
    heads = _trace_named(fig, "heads")
    colours = decode(heads["marker"]["color"]).reshape(bundled.cfg.n_layer, bundled.cfg.n_head)
    for layer in range(bundled.cfg.n_layer):
        row = t["pattern", layer][:, -1, :].astype(np.float32)
        np.testing.assert_allclose(colours[layer], row[:, 1:].max(axis=1), atol=1e-4)
    np.testing.assert_allclose(head_strength(np.array([[0.9, 0.1], [0.5, 0.5]])), [0.1, 0.5])


def test_residual_sizes_are_the_norms(bundled):
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    t = gptviz.run(bundled, "Hello, world!")
    ov = overview(t, tok.token_str)
    for lv in ov.layers:
        np.testing.assert_allclose(lv.resid_post, np.linalg.norm(t["resid_post", lv.layer], axis=-1), rtol=1e-5)
        np.testing.assert_allclose(lv.attn_add, np.linalg.norm(t["attn_out", lv.layer], axis=-1), rtol=1e-5)
    np.testing.assert_allclose(ov.pos_norm, np.linalg.norm(bundled.pos_embed.weight[: t.n_tokens].detach(), axis=-1))


def test_rotary_model_has_no_position_row():
    model = tiny_model("llama", n_kv_heads=2)
    tok = gptviz.get_tokenizer(model.cfg.tokenizer)
    t = gptviz.run(model, PROMPT)
    ov = overview(t, tok.token_str)
    assert ov.pos_norm is None and ov.final_norm == "RMSNorm"
    fig = fo.overview_figure(ov, projector=True).to_plotly_json()
    assert "embedding (rotary)" in fig["layout"]["yaxis"]["ticktext"]
    assert "rotated inside attention" in fig["layout"]["title"]["subtitle"]["text"]


def test_the_table_is_the_overview(bundled):
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    t = gptviz.run(bundled, PROMPT)
    ov = overview(t, tok.token_str, heads={1: 3})
    table = overview_table(ov)
    assert list(table["layer"]) == list(range(bundled.cfg.n_layer)) and table["head drawn"][1] == 3
    for lv, row in zip(ov.layers, table.itertuples(), strict=True):
        assert row.weight == pytest.approx(float(t["pattern", lv.layer][lv.head, -1].max()), abs=1e-6)
    np.testing.assert_allclose(table["|x| out"], [np.linalg.norm(t["resid_post", i][-1]) for i in range(5)], rtol=1e-5)


def test_click_targets():
    assert fo.target({"customdata": ["attention", 3, 1, 0, 0.5]}) == ("attention", {"layer": 3, "head": 1})
    assert fo.target({"customdata": ["layer", 2, 7]}) == ("layer", {"layer": 2, "pos": 7})
    assert fo.target({"customdata": [0, 1]}) is None and fo.target({}) is None


def test_generated_attention_rows_are_the_pattern(bundled):
    t = gptviz.run(bundled, PROMPT)
    w = generated_attention(t, 3, 2, head=1)
    np.testing.assert_allclose(w, t["pattern", 2][1, -3:, :].astype(np.float32))
    assert generated_attention(t, 3, 2).shape == (3, t.n_tokens)


# --- the app ---------------------------------------------------------------------------------


def _default_trace(bundled):
    return gptviz.run(bundled, DEFAULT_PROMPT)


def test_home_page_shows_the_overview_with_the_traces_numbers(bundled):
    at = open_page()
    assert_ok(at)
    fig = figures(at)["ov_chart"]
    t = _default_trace(bundled)
    q = t.n_tokens - 1
    for (layer, k), (head, w) in _links(fig).items():
        if k >= 0:
            assert w == pytest.approx(float(t["pattern", layer][head, q, k]), abs=1e-3)  # compact: float16
    probs = t.probs()
    np.testing.assert_allclose(
        [c[3] for c in _trace_named(fig, "next")["customdata"]], np.sort(probs)[::-1][:5], atol=1e-5
    )


def test_per_layer_links_open_the_attention_page_at_that_layer(bundled):
    at = open_page("0_Overview.py")
    assert_ok(at)
    links = [e.proto for e in at.get("page_link") if e.proto.page == "Attention" and e.proto.query_string]
    assert len(links) == bundled.cfg.n_layer
    heads = {(int(c[1]), int(c[2])) for c in _trace_named(figures(at)["ov_chart"], "links")["customdata"]}
    for layer, link in enumerate(links):
        params = dict(parse_qsl(link.query_string))
        assert int(params["attn_layer"]) == layer and (layer, int(params["attn_head"])) in heads
    # follow the layer-3 link inside the session: the attention page opens at that layer and head
    params = dict(parse_qsl(links[3].query_string))
    at.query_params.clear()
    at.query_params.update(params)
    at.switch_page("pages/4_Attention.py").run()
    if not at.sidebar.text_area[0].value:  # AppTest (not a browser) empties the prompt box on switch_page
        at.sidebar.text_area[0].input(DEFAULT_PROMPT).run()
    assert_ok(at)
    sliders = {s.label: s.value for s in at.slider}
    assert (sliders["Layer"], sliders["Head"]) == (3, int(params["attn_head"]))


def test_next_token_extends_the_overview(bundled):
    at = open_page("0_Overview.py")
    assert_ok(at)
    t = _default_trace(bundled)
    before = figures(at)["ov_chart"]
    at.button(key="ov_next").click().run()
    assert_ok(at)
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    expected = gen.generate(bundled, tok, list(t.ids), 2, temperature=0.0)  # greedy is the default
    assert at.query_params["ov_generated"] == str(expected[0])
    at.button(key="ov_next").click().run()
    assert_ok(at)
    assert at.query_params["ov_generated"] == ",".join(map(str, expected))
    after = figures(at)
    assert "ov_timeline" in after
    ids = _trace_named(after["ov_chart"], "next")["customdata"][0][1]
    assert ids == t.n_tokens + 1  # the query follows the newest token
    assert after["ov_chart"]["layout"]["shapes"], "the newest column is shaded (computed now)"
    assert before["layout"]["title"]["text"] != after["ov_chart"]["layout"]["title"]["text"]
    timeline = after["ov_timeline"]["data"][0]
    n = len(t.ids)
    assert timeline["y"] == [
        f"{n}: {fo.label(tok.token_str(expected[0]))}",
        f"{n + 1}: {fo.label(tok.token_str(expected[1]))}",
    ]
    # the figure now reads the trace of prompt + continuation
    t2 = gptviz.run(bundled, token_ids=[*t.ids, *expected])
    probs = t2.probs()
    np.testing.assert_allclose(
        [c[3] for c in _trace_named(after["ov_chart"], "next")["customdata"]], np.sort(probs)[::-1][:5], atol=1e-5
    )


def test_use_as_prompt_moves_the_continuation_into_the_prompt(bundled):
    at = open_page("0_Overview.py", prompt="To be, or not to be")
    at.button(key="ov_next").click().run()
    at.button(key="ov_next").click().run()
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    continuation = tok.decode([int(i) for i in at.query_params["ov_generated"].split(",")])
    at.button(key="ov_use").click().run()
    assert_ok(at)
    assert at.sidebar.text_area[0].value == "To be, or not to be" + continuation
    assert at.query_params["ov_generated"] == "" and "ov_timeline" not in figures(at)


def test_sampled_generation_uses_the_seed_and_temperature_of_analysis_generation(bundled):
    at = open_page("0_Overview.py", prompt="To be, or not to be", ov_greedy="0", ov_temperature="1.5", ov_seed="42")
    at.number_input(key="w_ov_n").set_value(3).run()
    at.button(key="ov_next").click().run()
    assert_ok(at)
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    ids = tok.encode("To be, or not to be")
    expected = gen.generate(bundled, tok, ids, 3, temperature=1.5, seed=42)
    assert at.query_params["ov_generated"] == ",".join(map(str, expected))


def test_a_full_context_stops_generation(bundled):
    at = open_page("0_Overview.py", prompt="word " * 400)
    assert_ok(at)
    assert at.button(key="ov_next").disabled
    assert any("context is full" in c.value for c in at.caption)
