"""Classroom mode: the lesson flow and its links, predict-then-reveal verdicts, side by side, the
training timeline, exports round-trip, and projector mode (fonts >= 14 px, colour-blind-safe
scales) on every chart of every page. Numbers are checked against ``gptviz.run`` directly."""

from __future__ import annotations

import numpy as np
import plotly.colors as pc
import pytest
import torch

import gptviz
from gptviz import export
from gptviz import lesson as L
from gptviz.analysis.timeline import models_with_snapshots
from gptviz.checkpoints import BUNDLED, bundled_snapshots
from gptviz.figures._base import visible
from tests.apptest_utils import assert_ok, decode, figures, open_page

MODEL = "bundled:gpt2-style"
PROMPT = "Hello, world!"
MIN_PX = 14


@pytest.fixture(scope="module")
def model():
    return gptviz.load_model(MODEL)


def _pattern(spec: dict) -> np.ndarray:
    return decode(spec["data"][0]["z"]).astype(np.float32)


def _masked(p: np.ndarray) -> np.ndarray:
    return np.where(np.tril(np.ones_like(p, dtype=bool)), p, np.nan)


def _bars(spec: dict) -> np.ndarray:
    return decode(spec["data"][0]["x"]).astype(np.float64)


def _verdict(at) -> str:
    """'right', 'wrong' or '' from the reveal box on the page."""
    if any(s.value.startswith("**Right!**") for s in at.success):
        return "right"
    if any(w.value.startswith("**Not quite.**") for w in at.warning):
        return "wrong"
    return ""


def _reveal(at, key: str):
    return at.button(key=f"FormSubmitter:form_{key}-Reveal the answer").click().run()


# --- the lesson ------------------------------------------------------------------------------


def test_lesson_next_back_keep_state_and_each_step_url_restores_it(model):
    lesson = L.LESSONS["hello"]
    at = open_page("7_Lesson.py", lesson="hello")
    assert_ok(at)
    assert at.sidebar.text_area(key="w_prompt").value == lesson.prompt  # the preset set its prompt
    trace = gptviz.run(model, lesson.prompt)
    fact = L.facts(trace, 0, 0, gptviz.get_tokenizer(model.cfg.tokenizer).token_str)
    links = []
    for i, step in enumerate(lesson.steps):
        assert at.query_params["lesson_step"] in (str(i), [str(i)])
        assert at.subheader[0].value == L.step_text(step, fact)[0]
        links.append({k: at.query_params[k] for k in at.query_params})
        if i < len(lesson.steps) - 1:
            at.button(key="lesson_next").click().run()
            assert_ok(at)
    at.button(key="lesson_back").click().run()
    at.button(key="lesson_back").click().run()
    assert at.query_params["lesson_step"] in ("3", ["3"])
    assert at.sidebar.text_area(key="w_prompt").value == lesson.prompt  # state kept on the way back
    for i, params in enumerate(links):  # a fresh session from each step's URL opens that step
        params = {k: v[0] if isinstance(v, list) else v for k, v in params.items()}
        again = open_page("7_Lesson.py", **params)
        assert_ok(again)
        assert again.subheader[0].value == L.step_text(lesson.steps[i], fact)[0]
        assert again.query_params["lesson_step"] in (str(i), [str(i)])
        if lesson.steps[i].stage == "embeddings":
            z = decode(figures(again)["lesson_chart"]["data"][0]["z"])
            np.testing.assert_allclose(z, trace["hook_embed"], atol=1e-6)


def test_lesson_presets_set_prompt_and_selection(model):
    at = open_page("7_Lesson.py", prompt="Some other prompt.")
    assert_ok(at)
    at.selectbox(key="w_lesson").set_value("previous-token").run()
    assert_ok(at)
    lesson = L.LESSONS["previous-token"]
    assert at.sidebar.text_area(key="w_prompt").value == lesson.prompt
    assert at.query_params["lesson"] in ("previous-token", ["previous-token"])
    layer, head, score = L.best_previous_token_head(gptviz.run(model, lesson.prompt))
    assert at.query_params["attn_layer"] in (str(layer), [str(layer)])
    assert at.query_params["attn_head"] in (str(head), [str(head)])
    at.selectbox(key="w_lesson").set_value("temperature").run()
    assert at.sidebar.text_area(key="w_prompt").value == L.LESSONS["temperature"].prompt
    for _ in range(5):
        at.button(key="lesson_next").click().run()
    assert_ok(at)
    assert at.query_params["out_temperature"] in ("0.3", ["0.3"])  # the cold step set its temperature
    assert at.select_slider(key="w_out_temperature").value == 0.3


# --- predict, then reveal ----------------------------------------------------------------------


def test_quiz_right_and_wrong_verdicts(model):
    trace = gptviz.run(model, PROMPT)
    tok = gptviz.get_tokenizer(model.cfg.tokenizer)
    at = open_page("7_Lesson.py", lesson="hello", lesson_step="0")
    key = "lesson_hello_0"
    n = len(tok.encode(PROMPT))
    assert "lesson_chart" not in figures(at) and "lesson_before" in figures(at)  # the answer waits for the guess
    at.number_input(key=f"guess_{key}").set_value(n + 2)
    _reveal(at, key)
    assert_ok(at)
    assert _verdict(at) == "wrong"
    assert "lesson_chart" in figures(at)
    at.number_input(key=f"guess_{key}").set_value(n)
    assert _verdict(_reveal(at, key)) == "right"

    at = open_page("7_Lesson.py", lesson="hello", lesson_step="3", attn_layer="1", attn_head="2")
    key = "lesson_hello_3"
    row = trace.pattern(1, 2)[-1]
    best, worst = int(np.argmax(row)), int(np.argmin(row))
    at.selectbox(key=f"guess_{key}").set_value(worst)
    assert _verdict(_reveal(at, key)) == "wrong"
    np.testing.assert_array_equal(_pattern(figures(at)["lesson_chart"]), _masked(trace.pattern(1, 2)))
    at.selectbox(key=f"guess_{key}").set_value(best)
    assert _verdict(_reveal(at, key)) == "right"

    at = open_page("6_Output.py", prompt=PROMPT)
    at.session_state["x_quiz_next"] = True  # open the collapsed section
    at.run()
    probs = trace.probs()
    top = int(np.argmax(probs))
    other = next(i for i in L.next_token_choices(trace, 4) if i != top)
    at.radio(key="guess_next").set_value(other)
    assert _verdict(_reveal(at, "next")) == "wrong"
    at.radio(key="guess_next").set_value(top)
    assert _verdict(_reveal(at, "next")) == "right"
    assert_ok(at)


# --- side by side, timeline -------------------------------------------------------------------


def test_side_by_side_shows_both_real_traces():
    at = open_page("8_Side_by_side.py", prompt=PROMPT, sbs_layer="3", sbs_head="1")
    assert_ok(at)
    figs = figures(at)
    for i, spec in enumerate(("bundled:seed", MODEL)):
        m = gptviz.load_model(spec)
        trace = gptviz.run(m, PROMPT)
        layer, head = min(3, m.cfg.n_layer - 1), min(1, m.cfg.n_head - 1)
        np.testing.assert_array_equal(_pattern(figs[f"sbs_attn_{i}"]), _masked(trace.pattern(layer, head)))
        probs = trace.probs()
        np.testing.assert_allclose(_bars(figs[f"sbs_next_{i}"]), np.sort(probs)[::-1][:10], rtol=1e-5)
        assert len(figs[f"sbs_tokens_{i}"]["data"][0]["text"]) == trace.n_tokens


@pytest.mark.parametrize("name", models_with_snapshots())
def test_timeline_snapshot_k_is_the_kth_checkpoint(name):
    steps = bundled_snapshots(name)
    assert steps and steps[0] == 0  # stored, or rebuilt from the card's seed (llama-style)
    at = open_page("9_Training_timeline.py", prompt=PROMPT, attn_layer="1", attn_head="3", tl_model=name)
    assert_ok(at)
    for k, step in enumerate(steps):
        if k:
            at.select_slider(key="w_tl_step").set_value(step).run()
            assert_ok(at)
        trace = gptviz.run(gptviz.load_model(f"bundled:{name}@{step}"), PROMPT)
        figs = figures(at)
        np.testing.assert_array_equal(_pattern(figs["tl_attn"]), _masked(trace.pattern(1, 3)))
        np.testing.assert_allclose(_bars(figs["tl_next"]), np.sort(trace.probs())[::-1][:10], rtol=1e-5)
        loss = figs["tl_loss"]
        assert [s["x0"] for s in loss["layout"]["shapes"] if s.get("xref") == "x"] == [step]  # the marked step
        marker = next(d for d in loss["data"] if d["name"] == f"step {step} on your prompt")
        logp = torch.log_softmax(torch.tensor(trace["hook_logits"][:-1], dtype=torch.float64), -1)
        expected = -logp[torch.arange(trace.n_tokens - 1), torch.tensor(trace.ids[1:])].mean().item()
        assert decode(marker["y"])[0] == pytest.approx(expected, rel=1e-4)


def test_timeline_offers_the_bundled_models_with_snapshots(monkeypatch):
    from gptviz.analysis import timeline

    assert timeline.models_with_snapshots() == [n for n in BUNDLED if bundled_snapshots(n)]
    assert "gpt2-style" in timeline.models_with_snapshots() and "seed" not in timeline.models_with_snapshots()
    monkeypatch.setattr(timeline, "BUNDLED", ("seed", "llama-style", "gpt2-style"))
    monkeypatch.setattr(timeline, "bundled_snapshots", lambda n: [0, 10] if n != "seed" else [])
    assert timeline.models_with_snapshots() == ["llama-style", "gpt2-style"]


def test_timeline_model_choice_is_in_the_url():
    at = open_page("9_Training_timeline.py", prompt=PROMPT)
    assert_ok(at)
    box = at.selectbox(key="w_tl_model")
    assert box.value == "gpt2-style" and box.options == [f"bundled:{n}" for n in models_with_snapshots()]
    assert at.query_params.get("tl_model") in ("gpt2-style", ["gpt2-style"])  # written by the page
    assert (
        open_page("9_Training_timeline.py", prompt=PROMPT, tl_model="gpt2-style").selectbox(key="w_tl_model").value
        == "gpt2-style"
    )
    wrong = open_page("9_Training_timeline.py", prompt=PROMPT, tl_model="seed")  # no snapshots: not offered
    assert wrong.selectbox(key="w_tl_model").value == "gpt2-style"
    assert any("tl_model" in w.value for w in wrong.warning)


def test_snapshot_sweep_matches_each_snapshot_run_alone():
    from gptviz.analysis.timeline import snapshot_sweep

    steps = bundled_snapshots("gpt2-style")[:2]
    traces = [gptviz.run(gptviz.load_model(f"bundled:gpt2-style@{s}"), PROMPT) for s in steps]
    tok = gptviz.get_tokenizer(traces[0].config.tokenizer)
    sweep = snapshot_sweep(traces, steps, tok, k=3)
    last = torch.softmax(torch.tensor(traces[-1]["hook_logits"][-1], dtype=torch.float64), -1)
    assert sweep.ids == torch.topk(last, 3).indices.tolist()
    for s, trace in enumerate(traces):
        p = torch.softmax(torch.tensor(trace["hook_logits"][-1], dtype=torch.float64), -1)
        np.testing.assert_allclose(sweep.probs[s], p[sweep.ids].numpy(), rtol=1e-5)
        assert sweep.favourites[s] == tok.token_str(int(p.argmax()))
    table = sweep.table(["a", "b", "c"])
    assert table["step"].tolist() == steps and table.columns[-3:].tolist() == ["p(a)", "p(b)", "p(c)"]
    np.testing.assert_array_equal(table["p(b)"].to_numpy(), sweep.probs[:, 1])
    with pytest.raises(ValueError):
        snapshot_sweep(traces, steps[:1], tok)


# --- exports -------------------------------------------------------------------------------------


def test_exports_round_trip(model, tmp_path):
    at = open_page("2_Embeddings.py", prompt=PROMPT)
    at.session_state["x_embed_heatmap"] = True  # open the chart's "numbers and downloads"
    at.run()
    assert_ok(at)
    trace = gptviz.run(model, PROMPT)
    shown = at.dataframe[0].value
    np.testing.assert_allclose(shown.iloc[:, 1:].to_numpy(np.float64), trace["hook_embed"], atol=1e-6)
    back = export.read_csv(export.csv_bytes(shown))
    assert list(back.columns) == list(shown.columns)
    np.testing.assert_allclose(back.iloc[:, 1:].to_numpy(np.float64), shown.iloc[:, 1:].to_numpy(np.float64), rtol=1e-6)
    assert back.iloc[:, 0].tolist() == shown.iloc[:, 0].tolist()
    keys = {b.key for b in at.get("download_button")}
    assert {"csv_embed_heatmap", "html_embed_heatmap", "trace_npz"} <= keys

    path = tmp_path / "t.npz"
    path.write_bytes(export.npz_bytes(trace))
    loaded = gptviz.load_trace(path)
    assert loaded.tokens == trace.tokens and loaded.text == trace.text
    assert set(loaded.store) == set(trace.store)
    for name, arr in trace.store.items():
        np.testing.assert_array_equal(loaded.store[name], arr)

    fig = gptviz.figures.embedding_heatmap(trace)
    page = export.html_bytes(fig).decode()
    assert "<html>" in page[:100] and "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js inlined
    link = export.view_link({"prompt": PROMPT, "lesson_step": 2}, "http://host:8501/Lesson")
    assert link == "http://host:8501/Lesson?prompt=Hello%2C+world%21&lesson_step=2"


# --- projector mode ------------------------------------------------------------------------------

SAFE_SCALES = {
    name: [[round(float(a), 6), c.lower().replace(" ", "")] for a, c in pc.get_colorscale(name)]
    for name in ("Viridis", "Cividis", "RdBu_r", "RdBu")
}


def _safe_scale(scale) -> bool:
    if isinstance(scale, str):
        return scale.lower() in {n.lower() for n in SAFE_SCALES}
    return [[round(float(a), 6), str(c).lower().replace(" ", "")] for a, c in scale] in SAFE_SCALES.values()


def _merge(under: dict, over: dict) -> dict:
    out = dict(under)
    for k, v in over.items():
        out[k] = _merge(under[k], v) if isinstance(v, dict) and isinstance(under.get(k), dict) else v
    return out


def with_template(spec: dict) -> dict:
    """A figure's JSON with its template applied as Plotly.js does: the template's layout under
    the figure's (its ``xaxis`` under every x axis, …), ``data[type][0]`` under each trace."""
    layout = spec.get("layout", {})
    template = layout.get("template") or {}
    tl = template.get("layout", {})
    merged = _merge(tl, {k: v for k, v in layout.items() if k != "template"})
    for k, v in merged.items():
        for kind in ("xaxis", "yaxis", "coloraxis"):
            if k.startswith(kind) and k != kind and isinstance(v, dict) and kind in tl:
                merged[k] = _merge(tl[kind], v)
    data = [_merge((template.get("data", {}).get(tr.get("type", "scatter")) or [{}])[0], tr) for tr in spec["data"]]
    return {**spec, "layout": merged, "data": data}


def projector_problems(spec: dict) -> list[str]:
    """Every text size in a Plotly JSON figure below 14 px (set, inherited from the layout font
    or from the template, as Plotly does), and every colour scale that is not Viridis/Cividis (or
    RdBu for signed values)."""
    spec = with_template(spec)
    layout, bad = spec.get("layout", {}), []
    base = (layout.get("font") or {}).get("size")
    if base is None or base < MIN_PX:
        bad.append(f"layout.font.size={base}")
    base = base or 12

    def check(path: str, font: dict | None, default: float | None = None) -> None:
        size = (font or {}).get("size", base if default is None else default)
        for s in size if isinstance(size, list) else [size]:
            if s is None or s < MIN_PX:
                bad.append(f"{path}={s}")

    check("title.font", (layout.get("title") or {}).get("font"))
    check("hoverlabel.font", (layout.get("hoverlabel") or {}).get("font"), default=13)  # Plotly's default
    legend = layout.get("legend") or {}
    check("legend.font", legend.get("font"))
    check("legend.title.font", (legend.get("title") or {}).get("font"), (legend.get("font") or {}).get("size"))
    for k, v in layout.items():
        if k.startswith(("xaxis", "yaxis")):
            check(f"{k}.tickfont", v.get("tickfont"))
            check(f"{k}.title.font", (v.get("title") or {}).get("font"))
        if k.startswith("coloraxis"):
            bar = v.get("colorbar") or {}
            check(f"{k}.colorbar.tickfont", bar.get("tickfont"))
            check(f"{k}.colorbar.title.font", (bar.get("title") or {}).get("font"))
            if "colorscale" in v and not _safe_scale(v["colorscale"]):
                bad.append(f"{k}.colorscale")
    for i, a in enumerate(layout.get("annotations") or []):
        check(f"annotations[{i}].font", a.get("font"))
    for i, tr in enumerate(spec.get("data", [])):
        name = f"data[{i}]"
        bar = tr.get("colorbar") or {}
        check(f"{name}.colorbar.tickfont", bar.get("tickfont"))
        check(f"{name}.colorbar.title.font", (bar.get("title") or {}).get("font"))
        for key in ("textfont", "insidetextfont", "outsidetextfont"):
            if key in tr:
                check(f"{name}.{key}", tr[key])
        check(f"{name}.hoverlabel.font", (tr.get("hoverlabel") or {}).get("font"), default=MIN_PX)
        for holder in (tr, tr.get("marker") or {}):
            if "colorscale" in holder and not _safe_scale(holder["colorscale"]):
                bad.append(f"{name}.colorscale")
    return bad


PAGES = {  # URL parameters that bring out the charts a page only draws on request
    "1_Tokenization.py": {},
    "2_Embeddings.py": {},
    "3_Positional_encoding.py": {},
    "4_Attention.py": {"ablate_heads": "0.0"},
    "5_Feed-forward_and_residual.py": {"ablate_neurons": "0.1"},
    "6_Output.py": {"out_generated": "100,200"},
    "7_Lesson.py": {"lesson": "previous-token", "lesson_step": "3"},
    "8_Side_by_side.py": {},
    "9_Training_timeline.py": {},
    "10_Activation_patching.py": {},
    "11_Information_flow.py": {},
    "12_Attribution.py": {"attr_contrastive": "1"},
}


def test_projector_mode_large_fonts_and_safe_scales_on_every_page():
    seen, problems = 0, {}
    for page, params in PAGES.items():
        at = open_page(page, prompt=PROMPT, projector="1", **params)
        assert_ok(at)
        assert at.sidebar.toggle(key="w_projector").value is True
        figs = {k: v for k, v in figures(at).items() if not k.isdigit()}
        assert figs, page
        seen += len(figs)
        for key, spec in figs.items():
            if bad := projector_problems(spec):
                problems[f"{page}:{key}"] = bad
    assert not problems, problems
    assert seen >= 40
    small = figures(open_page("2_Embeddings.py", prompt=PROMPT))["embed_heatmap"]
    assert projector_problems(small)  # the check does catch the normal (smaller) type


# --- the pure parts ------------------------------------------------------------------------------


def test_lesson_data_and_checkers_by_hand(model):
    assert len(L.LESSONS) >= 3
    pipeline = [lesson for lesson in L.LESSONS.values() if not lesson.models]  # comparing: test_generations
    for lesson in pipeline:
        stages = [s.stage for s in lesson.steps]
        order = [L.STAGES[s][1] for s in stages]  # the stage pages, numbered in pipeline order
        assert order == sorted(order), f"{lesson.key}: stages out of pipeline order"
        assert {"tokens", "embeddings", "positions"} <= set(stages) and stages[-1] in ("output", "temperature")
    trace = gptviz.run(model, "The cat sat on the mat. The cat")
    n = trace.n_input_tokens
    assert L.check_token_count(trace, n).correct and not L.check_token_count(trace, n + 1).correct
    p = trace.pattern(0, 1)[-1]
    assert L.check_attention(trace, 0, 1, int(np.argmax(p))).correct
    assert not L.check_attention(trace, 0, 1, int(np.argmin(p))).correct
    probs = trace.probs()
    name_of = gptviz.get_tokenizer(model.cfg.tokenizer).token_str
    assert L.check_next_token(trace, int(np.argmax(probs)), name_of).correct
    assert not L.check_next_token(trace, int(np.argsort(probs)[-2]), name_of).correct
    layer, head, score = L.best_previous_token_head(trace)
    pats = np.stack([trace["pattern", i].astype(np.float64) for i in range(model.cfg.n_layer)])
    T = trace.n_tokens
    prev = pats[:, :, np.arange(1, T), np.arange(T - 1)].mean(-1)
    assert (layer, head) == np.unravel_index(np.argmax(prev), prev.shape) and score == pytest.approx(prev.max())
    assert L.code("a`b") == "``a`b``" and L.code(" x") == "`␣x`"


def test_figure_tables_hold_the_drawn_numbers(model):
    trace = gptviz.run(model, PROMPT)
    probs = trace.probs()
    top = np.argsort(-probs)[:5]
    names = [f"tok{i}" for i in top]
    fig = gptviz.figures.next_token_distribution(names, probs[top], trace.logits()[top], top)
    table = export.figure_table(fig)
    assert table["token"].tolist() == names
    np.testing.assert_allclose(table["probability"].to_numpy(np.float64), probs[top], rtol=1e-6)
    pattern = export.figure_table(gptviz.figures.attention_pattern(trace, 0, 0))
    assert pattern.shape == (trace.n_tokens, trace.n_tokens + 1)
    named = [f"{i}: {visible(t)}" for i, t in enumerate(trace.tokens)]  # position and plain token text
    assert pattern.columns[1:].tolist() == named and pattern.iloc[:, 0].tolist() == named
    np.testing.assert_allclose(pattern.iloc[:, 1:].to_numpy(np.float64), _masked(trace.pattern(0, 0)), atol=1e-6)
    assert export.alt_text(fig).startswith("Bar chart: Top 5 next tokens")
    from gptviz.analysis.timeline import history_value

    history = [{"step": 100, "val_loss": 5.0}, {"step": 200, "val_loss": 4.0}]
    assert history_value(history, 150) == pytest.approx(4.5) and history_value(history, 0) is None
