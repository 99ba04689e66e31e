"""The research pages in the real app (AppTest): they draw, links restore prompts, metric and
selection, the numbers are the analysis functions' own, and hostile prompts stay text."""

from __future__ import annotations

import json

import numpy as np
import pytest
from apptest_utils import assert_ok, decode, figures, open_page

import gptviz
from gptviz.analysis import attribution as at
from gptviz.analysis import flow as fl
from gptviz.analysis import patching as pt

CLEAN = "When Romeo and Juliet went to the church, Romeo gave a ring to"
CORRUPT = "When Romeo and Juliet went to the church, Juliet gave a ring to"
PROMPT = "ROMEO:\nBut, soft! what light"


@pytest.fixture(scope="module")
def bundled():
    model = gptviz.load_model("bundled:gpt2-style")
    return model, gptviz.get_tokenizer(model.cfg.tokenizer)


def test_patching_page_draws_exact_estimate_and_agreement():
    at_ = open_page("10_Activation_patching.py", prompt=PROMPT)
    assert_ok(at_)
    figs = figures(at_)
    assert {"patch_exact", "patch_approx", "patch_agreement"} <= set(figs)
    assert at_.text_area(key="w_patch_clean").value == CLEAN  # the default pair that fits this tokenizer
    z = decode(figs["patch_exact"]["data"][0]["z"])
    assert z.shape == (5, 18)


def test_patching_link_restores_prompts_metric_and_selection(bundled):
    model, tok = bundled
    a, b = tok.encode(CLEAN), tok.encode(CORRUPT)
    answer, wrong = tok.encode(" Juliet")[0], tok.encode(" Romeo")[0]
    at_ = open_page(
        "10_Activation_patching.py", prompt=PROMPT, patch_clean=CLEAN, patch_corrupt=CORRUPT,
        patch_kind="head", patch_dir="noise", patch_answer=str(answer), patch_wrong=str(wrong),
    )  # fmt: skip
    assert_ok(at_)
    assert at_.selectbox(key="w_patch_kind").value == "head"
    assert at_.selectbox(key="w_patch_dir").value == "noise"
    assert at_.selectbox(key="w_patch_answer").value == answer
    assert at_.selectbox(key="w_patch_wrong").value == wrong
    spec = figures(at_)["patch_exact"]
    assert "noising" in spec["layout"]["title"]["text"]
    want = pt.patch(model, a, b, "head", pt.LogitDiff(answer, wrong), "noise")
    np.testing.assert_allclose(decode(spec["data"][0]["z"]), want.values, atol=1e-5)
    assert at_.query_params["patch_kind"] == ["head"] or at_.query_params["patch_kind"] == "head"


def test_different_token_counts_show_both_tokenizations():
    at_ = open_page(
        "10_Activation_patching.py",
        prompt=PROMPT,
        patch_clean="When Mary and John went",
        patch_corrupt="When Romeo went",
    )
    assert not at_.exception
    warn = " ".join(w.value for w in at_.warning)
    n1, n2 = (
        len(gptviz.get_tokenizer("shakespeare-bpe-2048-untagged").encode(s))
        for s in ("When Mary and John went", "When Romeo went")
    )
    assert f"has {n1} tokens" in warn and f"has {n2}" in warn
    tables = [d.value for d in at_.dataframe]
    assert [len(t) for t in tables[:2]] == [n1, n2]
    assert not figures(at_)


HOSTILE = "<script>alert(1)</script> <b>b</b> **bold** $x^2$ ![i](http://e.x/a.png) "


def test_hostile_prompts_in_both_boxes_render_as_text():
    clean, corrupt = HOSTILE + "Romeo gave a ring to", HOSTILE + "Juliet gave a ring to"
    at_ = open_page("10_Activation_patching.py", prompt=PROMPT, patch_clean=clean, patch_corrupt=corrupt)
    assert_ok(at_)
    assert at_.text_area(key="w_patch_clean").value == clean
    for spec in figures(at_).values():
        text = json.dumps(spec)
        assert "<script>" not in text and "<b>b" not in text and "$x^2$" not in text
    md = " ".join(m.value for m in [*at_.markdown, *at_.caption])
    assert "<script>" not in md and "![i]" not in md
    # mismatched hostile prompts: the tables hold the text as it is
    at_ = open_page("10_Activation_patching.py", prompt=PROMPT, patch_clean=clean, patch_corrupt=HOSTILE)
    assert not at_.exception and at_.warning
    shown = list(at_.dataframe[0].value["token"])  # each token as Python writes it, '<' included
    assert "'<'" in shown and "'>'" in shown


def test_flow_page_link_restores_position_and_threshold(bundled):
    model, tok = bundled
    at_ = open_page("11_Information_flow.py", prompt=PROMPT, flow_pos="3", flow_tau="0.1")
    assert_ok(at_)
    assert at_.slider(key="w_flow_pos").value == 3 and at_.select_slider(key="w_flow_tau").value == 0.1
    spec = figures(at_)["flow_graph"]
    g = fl.information_flow(model, tok.encode(PROMPT))
    edges = g.graph(3, 0.1)
    mids = [d for d in spec["data"] if d.get("customdata") is not None and d.get("mode") == "markers"]
    assert len(mids[0]["customdata"]) == len(edges)
    assert any(d.get("name") == "strongest path" for d in spec["data"])
    assert f"{len(edges):,} edges" in " ".join(c.value for c in at_.caption)


def test_attribution_page_link_restores_method_tokens_and_contrast(bundled):
    model, tok = bundled
    ids = tok.encode(PROMPT)
    t = gptviz.run(model, PROMPT)
    top = [int(i) for i in t.top_tokens(-1, 10).id]
    at_ = open_page(
        "12_Attribution.py", prompt=PROMPT, attr_method="gradient_x_input", attr_target=str(top[1]),
        attr_contrastive="1", attr_other=str(top[2]),
    )  # fmt: skip
    assert_ok(at_)
    assert at_.selectbox(key="w_attr_method").value == "gradient_x_input"
    assert at_.selectbox(key="w_attr_target").value == top[1]
    assert at_.selectbox(key="w_attr_other").value == top[2]
    want = at.gradient_x_input(model, ids, top[1], contrast=top[2])
    bars = figures(at_)["attr_bars"]
    np.testing.assert_allclose(decode(bars["data"][0]["y"]), want.scores, atol=1e-5)
    default = open_page("12_Attribution.py", prompt=PROMPT)
    assert_ok(default)
    assert any("Completeness" in c.value for c in default.caption)
