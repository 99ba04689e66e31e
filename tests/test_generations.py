"""The "Three generations of GPT" lesson and the three-model side by side: every step walked in
the real app with seed, gpt2-style and llama-style, each chart checked against numbers computed
here from the models' weights (parameter counts from the config's formula, position vectors from
the embedding tables, K/V cache sizes from the head counts), and the links that restore a step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gptviz
from gptviz import lesson as L
from gptviz.analysis import generations as G
from gptviz.config import preset
from gptviz.model import GPT
from tests.apptest_utils import assert_ok, decode, figures, open_page

LESSON = L.LESSONS["three-generations"]
KEY = LESSON.key


@pytest.fixture(scope="module")
def runs():
    out = {}
    for spec in LESSON.models:
        model = gptviz.load_model(spec)
        out[spec] = (model, gptviz.run(model, LESSON.prompt))
    return out


def expected_parts(model: GPT) -> dict[str, int]:
    """Parameters per part from the config alone (the textbook formulas), not from the tensors."""
    c = model.cfg
    d, dh, V, L_ = c.d_model, c.d_head, c.vocab_size, c.n_layer
    q, kv = c.n_head * dh, 2 * c.kv_heads * dh
    b_qkv, b = c.has_qkv_bias, c.bias
    per_norm = d * (2 if c.norm_kind == "layernorm" else 1)
    mats = 3 if c.ffn == "gated" else 2
    ffn = mats * d * c.d_mlp + (b * ((mats - 1) * c.d_mlp + d))
    return {
        "token embeddings": V * d,
        "position embeddings": c.n_ctx * d if c.pos == "learned" else 0,
        "attention: queries": L_ * (q * d + b_qkv * q),
        "attention: keys and values": L_ * (kv * d + b_qkv * kv),
        "attention: output": L_ * (q * d + b * d),
        "norms": per_norm * (2 * L_ + (1 if c.final_ln else 0)),
        "feed-forward": L_ * ffn,
        "output layer": 0 if c.tie_weights else V * d + (V if c.has_unembed_bias else 0),
    }


@pytest.mark.parametrize(
    "cfg",
    [
        preset("seed", vocab_size=50, n_layer=2, d_model=16, d_mlp=32, n_ctx=16),
        preset("gpt2", vocab_size=50, n_layer=2, n_head=2, d_model=16, d_mlp=64, n_ctx=16),
        preset("llama", vocab_size=50, n_layer=2, n_head=4, n_kv_heads=2, d_model=16, d_mlp=40, n_ctx=16),
        preset("llama", vocab_size=50, n_layer=1, n_head=4, n_kv_heads=1, d_model=16, d_mlp=40, tie_weights=False),
    ],
)
def test_parameter_parts_follow_the_formulas_and_sum_to_the_model(cfg):
    model = GPT(cfg)
    parts = G.parameter_parts(model)
    assert parts == expected_parts(model)
    assert sum(parts.values()) == model.num_params()


def test_kv_size_and_signs_on_a_tiny_gqa_model():
    model = GPT(preset("llama", vocab_size=50, n_layer=3, n_head=6, n_kv_heads=2, d_model=24, d_mlp=40, n_ctx=16))
    t = gptviz.run(model, token_ids=[1, 2, 3, 4])
    kv = G.kv_size(t)
    assert kv.per_token == 3 * 2 * 2 * 4 and kv.per_token_full == 3 * 2 * 6 * 4 and kv.ratio == pytest.approx(1 / 3)
    signs = G.neuron_signs(t)
    assert signs.zero + signs.negative + signs.positive == pytest.approx(1.0)
    assert G.nothing_added(t) and not G.position_share(t).any()
    assert G.highway_gap(t).max() < 1e-5  # pre-norm: the stream is the sum of what was written


def test_lesson_numbers_match_the_models(runs):
    """The step texts and the parameter chart quote what the weights hold; a changed model or a
    wrong formula fails here."""
    facts = L.compare_facts(runs)
    table = G.parameter_table(runs)
    for i, (spec, (model, _)) in enumerate(runs.items()):
        want = expected_parts(model)
        assert (
            facts[f"params_{i}"]
            == sum(want.values())
            == sum(p.numel() for p in model.state_dict().values())
            - (model.cfg.vocab_size * model.cfg.d_model if model.cfg.tie_weights else 0)
        )
        assert table[spec].tolist() == [*want.values(), sum(want.values())]
        assert facts[f"kv_heads_{i}"] == model.cfg.kv_heads
    step = next(s for s in LESSON.steps if s.stage == "gen_params")
    text = L.step_text(step, facts)[1]
    for i in range(3):
        assert f"{facts[f'params_{i}']:,}" in text
    fig = L.compare_view(step, runs).figure
    for bar in fig.data:
        part = bar.name
        assert list(bar.x) == [expected_parts(m)[part] for m, _ in runs.values()]


def _check_chart(step: L.Step, spec: dict, runs) -> None:
    """The revealed chart of ``step`` against numbers computed here from the weights."""
    data = spec["data"]
    models = [m for m, _ in runs.values()]
    if step.stage == "gen_positions":
        for line, (model, t) in zip(data, runs.values(), strict=True):
            ids = torch.tensor(t.ids)
            emb = model.embed.weight[ids].detach().double()
            pos = torch.zeros_like(emb) if model.cfg.pos == "rotary" else model.positions(len(ids)).detach().double()
            np.testing.assert_allclose(decode(line["y"]), (pos.norm(dim=-1) / emb.norm(dim=-1)).numpy(), rtol=1e-5)
    elif step.stage == "gen_norm_place":
        last = [decode(line["y"])[-1] for line in data]
        for value, model in zip(last, models, strict=True):
            assert (value > 0.05) if model.cfg.norm == "post" else (value < 1e-5)
    elif step.stage == "gen_norm_kind":
        for line, (model, t) in zip(data, runs.values(), strict=True):
            y = decode(line["y"])
            assert len(y) == 2 * model.cfg.n_layer
            if model.cfg.norm == "pre":  # the first norm reads the embedding (+ its position vector)
                x = torch.tensor(np.asarray(t["resid_pre", 0]), dtype=torch.float64)
                expected = (x.mean(-1).abs() / x.pow(2).mean(-1).sqrt()).mean().item()
                assert y[0] == pytest.approx(expected, rel=1e-6)
    elif step.stage == "gen_ffn":
        zero, negative, positive = (decode(b["y"]) for b in data)
        np.testing.assert_allclose(zero + negative + positive, 1.0)
        for i, model in enumerate(models):
            if model.cfg.act == "relu" and model.cfg.ffn == "mlp":
                assert negative[i] == 0 and zero[i] > 0.2
    elif step.stage == "gen_attention":
        kept, full = (decode(b["y"]) for b in data)
        for i, m in enumerate(models):
            c = m.cfg
            assert kept[i] == 2 * c.n_layer * c.kv_heads * c.d_head * c.n_ctx
            assert full[i] == 2 * c.n_layer * c.n_head * c.d_head * c.n_ctx
    elif step.stage == "gen_params":
        for bar in data:
            assert [int(v) for v in decode(bar["x"])] == [expected_parts(m)[bar["name"]] for m in models]
    else:
        raise AssertionError(step.stage)


def _reveal(at, i: int, guess: int):
    at.radio(key=f"guess_lesson_{KEY}_{i}").set_value(guess)
    return at.button(key=f"FormSubmitter:form_lesson_{KEY}_{i}-Reveal the answer").click().run()


def test_lesson_walks_every_step_with_the_three_models(runs):
    at = open_page("7_Lesson.py", lesson=KEY)
    assert_ok(at)
    assert at.sidebar.text_area(key="w_prompt").value == LESSON.prompt
    facts = L.compare_facts(runs)
    links = []
    for i, step in enumerate(LESSON.steps):
        assert at.query_params["lesson_step"] in (str(i), [str(i)])
        assert at.subheader[0].value == L.step_text(step, facts)[0]
        figs = figures(at)
        assert "lesson_before" in figs and "lesson_chart" not in figs  # the designs first, not the answer
        right, _ = step.question.answer(runs)
        options = L.question_options(step, runs)
        assert at.radio(key=f"guess_lesson_{KEY}_{i}").options == [o.removeprefix("bundled:") for o in options]
        wrong = (right + 1) % len(options)
        _reveal(at, i, wrong)
        assert_ok(at)
        assert any(w.value.startswith("**Not quite.**") for w in at.warning)
        _reveal(at, i, right)
        assert any(s.value.startswith("**Right!**") for s in at.success)
        _check_chart(step, figures(at)["lesson_chart"], runs)
        links.append({k: at.query_params[k] for k in at.query_params})
        if i < len(LESSON.steps) - 1:
            at.button(key="lesson_next").click().run()
            assert_ok(at)
    assert at.button(key="lesson_next").disabled
    (link,) = [p.proto for p in at.get("page_link") if p.proto.label == "See the models side by side"]
    assert link.page == "Side_by_side"
    assert link.query_string == "sbs_left=bundled%3Aseed&sbs_right=bundled%3Agpt2-style&sbs_third=bundled%3Allama-style"
    at.button(key="lesson_back").click().run()
    at.button(key="lesson_back").click().run()
    assert at.query_params["lesson_step"] in ("3", ["3"])
    assert at.subheader[0].value == L.step_text(LESSON.steps[3], facts)[0]
    for i, params in enumerate(links):  # a fresh session from each step's link opens that step
        params = {k: v[0] if isinstance(v, list) else v for k, v in params.items()}
        again = open_page("7_Lesson.py", **params)
        assert_ok(again)
        assert again.subheader[0].value == L.step_text(LESSON.steps[i], facts)[0]
        assert "lesson_before" in figures(again)


def test_the_answers_are_what_the_designs_predict(runs):
    """Independent of the measured numbers' exact values, the right answers are the textbook ones
    for these three designs (a lesson whose reveal contradicted its own text would fail here)."""
    specs = list(runs)
    answers = {s.stage: s.question.answer(runs)[0] for s in LESSON.steps}
    rotary = next(i for i, (m, _) in enumerate(runs.values()) if m.cfg.pos == "rotary")
    post = next(i for i, (m, _) in enumerate(runs.values()) if m.cfg.norm == "post")
    assert answers["gen_positions"] == rotary and specs[rotary] == "bundled:llama-style"
    assert answers["gen_norm_place"] == post and specs[post] == "bundled:seed"
    assert answers["gen_ffn"] == specs.index("bundled:llama-style")
    assert answers["gen_attention"] == 1  # 4 query heads over 2 K/V heads: half
    assert L._PARAM_OPTIONS[answers["gen_params"]] == "feed-forward"


def test_side_by_side_three_models():
    prompt = "Hello, world!"
    at = open_page("8_Side_by_side.py", prompt=prompt)
    assert_ok(at)
    assert "sbs_attn_2" not in figures(at)  # two columns unless a third is asked for
    at.selectbox(key="w_sbs_third").set_value("bundled:llama-style").run()
    assert_ok(at)
    assert at.query_params["sbs_third"] in ("bundled:llama-style", ["bundled:llama-style"])
    link = {k: (v[0] if isinstance(v, list) else v) for k, v in ((k, at.query_params[k]) for k in at.query_params)}
    again = open_page("8_Side_by_side.py", **{**link, "sbs_layer": "4", "sbs_head": "3"})
    assert_ok(again)
    figs = figures(again)
    for i, spec in enumerate(("bundled:seed", "bundled:gpt2-style", "bundled:llama-style")):
        m = gptviz.load_model(spec)
        trace = gptviz.run(m, prompt)
        layer, head = min(4, m.cfg.n_layer - 1), min(3, m.cfg.n_head - 1)
        p = trace.pattern(layer, head)
        z = decode(figs[f"sbs_attn_{i}"]["data"][0]["z"]).astype(np.float32)
        np.testing.assert_array_equal(z, np.where(np.tril(np.ones_like(p, dtype=bool)), p, np.nan))
        bars = decode(figs[f"sbs_next_{i}"]["data"][0]["x"]).astype(np.float64)
        np.testing.assert_allclose(bars, np.sort(trace.probs())[::-1][:10], rtol=1e-5)


def test_projector_mode_large_fonts_on_every_step_chart(runs):
    import json

    from tests.test_classroom import projector_problems

    figs = {"teaser": L.compare_teaser(runs, projector=True).figure}
    figs |= {s.stage: L.compare_view(s, runs, projector=True).figure for s in LESSON.steps}
    problems = {k: bad for k, fig in figs.items() if (bad := projector_problems(json.loads(fig.to_json())))}
    assert not problems, problems
    small = json.loads(L.compare_view(LESSON.steps[-1], runs).figure.to_json())
    assert projector_problems(small)  # the check does catch the normal (smaller) type
