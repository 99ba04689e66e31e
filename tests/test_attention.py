"""Stage 4a: head statistics against independent computations, the figures against the Trace,
and the Self-attention page driven headlessly (URL state, prompt changes, ablation round trip)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gptviz
from gptviz.analysis import attention as aa
from gptviz.analysis.ablation import Ablation
from gptviz.figures import attention as fa
from gptviz.hooks import hooks
from tests.apptest_utils import assert_ok, decode, figures, open_page
from tests.conftest import tiny_model

MODEL = "bundled:gpt2-style"
PROMPT = "ROMEO: But soft, what light through yonder window breaks?"


def uniform_causal(T: int) -> np.ndarray:
    return np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]


def previous_token_pattern(T: int) -> np.ndarray:
    p = np.zeros((T, T))
    p[0, 0] = 1.0
    p[np.arange(1, T), np.arange(T - 1)] = 1.0
    return p


def induction_pattern(n: int) -> np.ndarray:
    """Rows of the second copy look at the token after the previous occurrence; others uniform."""
    p = uniform_causal(2 * n)
    for i in range(n, 2 * n):
        p[i] = 0.0
        p[i, i - n + 1] = 1.0
    return p


# --- analysis: scores against hand computations ------------------------------------------------


def test_previous_and_first_token_scores_on_constructed_patterns():
    T = 9
    p = previous_token_pattern(T)
    assert aa.previous_token_score(p) == pytest.approx(1.0)
    assert aa.first_token_score(p) == pytest.approx(1 / (T - 1))  # only query 1 looks at position 0
    assert aa.pattern_entropy(p) == pytest.approx(0.0)
    u = uniform_causal(T)
    expected = np.mean([1 / (i + 1) for i in range(1, T)])
    assert aa.previous_token_score(u) == pytest.approx(expected)
    assert aa.first_token_score(u) == pytest.approx(expected)
    assert np.isnan(aa.previous_token_score(np.ones((1, 1))))


def test_entropy_of_uniform_causal_pattern_is_mean_log_positions():
    T = 17
    assert aa.pattern_entropy(uniform_causal(T)) == pytest.approx(np.mean(np.log(np.arange(1, T + 1))))
    stacked = np.stack([uniform_causal(T), previous_token_pattern(T)])  # [H, T, T] works per head
    assert aa.pattern_entropy(stacked) == pytest.approx([np.mean(np.log(np.arange(1, T + 1))), 0.0])


def test_induction_score_high_for_induction_head_low_for_uniform():
    n = 20
    assert aa.induction_score(induction_pattern(n), n) == pytest.approx(1.0)
    u = uniform_causal(2 * n)
    assert aa.induction_score(u, n) == pytest.approx(np.mean([1 / (i + 1) for i in range(n, 2 * n)]))
    assert aa.induction_score(u, n) < 0.05
    with pytest.raises(ValueError):
        aa.induction_score(u, n + 1)


def test_induction_scores_end_to_end_with_a_planted_head():
    """Replace head 1.0's pattern by an induction pattern and head 1.1's by a uniform one."""
    model = tiny_model()
    n = 12

    def plant(t: torch.Tensor, name: str) -> torch.Tensor:
        t = t.clone()
        t[:, 0] = torch.as_tensor(induction_pattern(n), dtype=t.dtype)
        t[:, 1] = torch.as_tensor(uniform_causal(2 * n), dtype=t.dtype)
        return t

    with hooks(model, [("blocks.1.attn.hook_pattern", plant)]):
        scores = aa.induction_scores(model, n=n, batch=3, seed=5)
    assert scores.shape == (2, 4)
    assert scores[1, 0] == pytest.approx(1.0)
    assert scores[1, 1] == pytest.approx(np.mean([1 / (i + 1) for i in range(n, 2 * n)]), abs=1e-6)
    # the other heads: an independent loop over the captured patterns of the same sequences
    ids = aa.repeated_tokens(model.cfg.vocab_size, n, batch=3, seed=5)
    assert torch.equal(ids[:, :n], ids[:, n:])
    pat = {}
    with hooks(model, [("blocks.0.attn.hook_pattern", lambda t, name: pat.setdefault(name, t.detach().clone()))]):
        model(ids)
    p = pat["blocks.0.attn.hook_pattern"].numpy()
    manual = [np.mean([p[b, h, i, i - n + 1] for b in range(3) for i in range(n, 2 * n)]) for h in range(4)]
    np.testing.assert_allclose(scores[0], manual, rtol=1e-5)
    assert np.array_equal(aa.induction_scores(model, n=n, batch=3, seed=5)[0], scores[0])  # pure in the seed


def test_head_stats_table_matches_the_functions():
    model = tiny_model()
    trace = gptviz.run(model, "the cat sat on the mat and the cat sat")
    ind = np.arange(8, dtype=float).reshape(2, 4) / 10
    df = aa.head_stats(trace, ind)
    assert list(df.index) == [f"{a}.{b}" for a in range(2) for b in range(4)]
    p = trace["blocks.1.attn.hook_pattern"][3].astype(np.float64)
    row = df.loc["1.3"]
    T = trace.n_tokens
    assert row["entropy"] == pytest.approx(
        -np.mean([sum(x * np.log(x) for x in p[i, : i + 1] if x > 0) for i in range(T)])
    )
    assert row["previous-token"] == pytest.approx(np.mean([p[i, i - 1] for i in range(1, T)]))
    assert row["first-token"] == pytest.approx(np.mean(p[1:, 0]))
    assert row["induction"] == pytest.approx(0.7)
    assert set(aa.STAT_HELP) <= set(df.columns)


def test_max_pool_keeps_block_maxima_and_masks_the_future():
    rng = np.random.default_rng(0)
    T = 100
    p = np.tril(rng.random((T, T)))
    pooled, s = aa.max_pool(p, 32)
    assert s == 4 and pooled.shape == (25, 25)
    assert pooled[7, 3] == pytest.approx(p[28:32, 12:16].max())
    assert pooled[24, 24] == pytest.approx(p[96:100, 96:100].max())
    assert np.isnan(pooled[3, 7]) and not np.isnan(pooled[7, 7])
    small, s1 = aa.max_pool(p[:10, :10], 32)
    assert s1 == 1 and np.array_equal(np.nan_to_num(small), np.tril(p[:10, :10]).astype(np.float32))


def test_compare_next_token_and_ablation_restores_exactly():
    model = tiny_model()
    text = "the cat sat on the mat"
    plain = gptviz.run(model, text)
    ab = Ablation(((0, 1), (1, 2)), mode="zero")
    after = gptviz.run(model, text, extra_hooks=ab.hooks())
    again = gptviz.run(model, text)
    assert not np.array_equal(plain["hook_logits"], after["hook_logits"])
    assert np.array_equal(plain["hook_logits"], again["hook_logits"])
    assert np.array_equal(plain["blocks.0.attn.hook_pattern"], after["blocks.0.attn.hook_pattern"])  # upstream
    assert not np.array_equal(plain["blocks.1.attn.hook_pattern"], after["blocks.1.attn.hook_pattern"])
    cmp = aa.compare_next_token(plain.probs(), after.probs(), k=5)
    assert cmp["kl"] > 0 and aa.compare_next_token(plain.probs(), plain.probs())["kl"] == pytest.approx(0.0)
    assert set(np.argsort(-plain.probs())[:5]) <= set(cmp["ids"].tolist())
    assert np.all(np.diff(cmp["before"]) <= 0)


# --- figures: numbers equal the Trace ---------------------------------------------------------


def test_pattern_and_steps_figures_show_the_trace():
    model = tiny_model()
    trace = gptviz.run(model, "<b>$x$</b> the cat & the hat")
    fig = fa.attention_pattern(trace, 1, 2)
    z = np.asarray(fig.data[0].z)
    p = trace["blocks.1.attn.hook_pattern"][2].astype(np.float32)
    T = trace.n_tokens
    assert np.isnan(z[np.triu_indices(T, 1)]).all()
    assert np.array_equal(z[np.tril_indices(T)], p[np.tril_indices(T)])
    ticks = " ".join(fig.layout.xaxis.ticktext)
    assert not any(c in ticks for c in "<>$") and "&lt;" in ticks and "&#36;" in ticks
    # hover names both tokens of a cell from the axes' categories "position: token" (escaped),
    # not from per-cell strings, so the JSON grows with T, not T²
    cats = [f"{i}: {fa.label(t)}" for i, t in enumerate(trace.tokens)]
    assert list(fig.data[0].x) == cats and list(fig.data[0].y) == cats and fig.data[0].customdata is None
    assert "query %{y}" in fig.data[0].hovertemplate and "key %{x}" in fig.data[0].hovertemplate
    assert fig.layout.xaxis.type == "category" and list(fig.layout.xaxis.tickvals) == cats[: len(ticks.split())]
    long = gptviz.run(model, " the" * 120)
    spec = json.loads(fa.attention_pattern(long, 0, 0).to_json())
    rest = len(json.dumps(spec)) - len(spec["data"][0]["z"]["bdata"])  # all but the T² weights
    assert "customdata" not in spec["data"][0] and rest < 20_000 + 150 * long.n_tokens
    q1, s2, s3, s4, z5 = fa.attention_steps(trace, 1, 2, n=6)
    q = trace["blocks.1.attn.hook_q"][:6, 2]
    k = trace["blocks.1.attn.hook_k"][:6, 2]
    assert np.array_equal(np.asarray(q1.data[0].z), q)
    scores = q @ k.T / np.sqrt(trace.config.d_head)  # independent of the trace's own product
    np.testing.assert_allclose(np.asarray(s2.data[0].z), scores, rtol=1e-5, atol=1e-6)
    masked = np.asarray(s3.data[0].z)
    assert np.isnan(masked[0, 1:]).all()
    soft = np.exp(np.where(np.isnan(masked), -np.inf, masked))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(np.nan_to_num(np.asarray(s4.data[0].z)), soft, atol=2e-3)
    np.testing.assert_allclose(np.asarray(z5.data[0].z), trace["blocks.1.attn.hook_z"][:6, 2])
    bars = fa.attention_from_token(trace, 1, 4)
    assert len(bars.data) == 4
    assert np.array_equal(np.asarray(bars.data[3].y), trace["blocks.1.attn.hook_pattern"][3, 4, :5].astype(np.float32))
    with pytest.raises(IndexError):
        fa.attention_pattern(trace, 2, 0)


def test_grid_cells_map_back_to_heads_and_long_prompts_are_pooled():
    torch.manual_seed(0)
    model = gptviz.GPT(gptviz.preset("gpt2", n_layer=2, n_head=4, d_model=32, d_mlp=64, n_ctx=1024)).eval()
    trace = gptviz.run(model, " the" * 1000)
    fig = fa.attention_grid(trace, (1, 3))
    assert len(fig.data) == 2 * 2 * 4
    assert all(np.asarray(d.z).shape[0] <= 32 for d in fig.data if d.type == "heatmap")
    dot = fig.data[2 * (1 * 4 + 2) + 1]
    assert list(dot.customdata[0]) == [1, 2]
    assert fa.grid_cell({"customdata": [1, 2]}, 4) == (1, 2)
    assert fa.grid_cell({"curve_number": 2 * (1 * 4 + 2)}, 4) == (1, 2)
    assert fig.layout.shapes[0].xref == "x8 domain"  # the selected head 1.3 is outlined
    assert len(fig.to_json()) < 500_000


def test_grid_json_stays_small_at_gpt2_small_shape():
    torch.manual_seed(0)
    model = gptviz.GPT(gptviz.preset("gpt2")).eval()
    ids = torch.randint(0, 50000, (1, 128))
    tok = gptviz.get_tokenizer("gpt2")
    trace = gptviz.run(model, tok.decode(ids[0].tolist()))
    assert trace.n_tokens >= 100
    fig = fa.attention_grid(trace, (0, 0))
    assert len(fig.data) == 2 * 144
    assert len(fig.to_json().encode()) < 3 * 2**20


# --- the page ---------------------------------------------------------------------------------


def _shape() -> tuple[int, int]:
    cfg = gptviz.load_model(MODEL).cfg
    return cfg.n_layer, cfg.n_head


def _pattern(at, key: str = "attn_pattern") -> np.ndarray:
    return decode(figures(at)[key]["data"][0]["z"])


def _expected(text: str, layer: int, head: int) -> np.ndarray:
    p = gptviz.run(gptviz.load_model(MODEL), text)["pattern", layer][head].astype(np.float32)
    return np.where(np.tril(np.ones_like(p, dtype=bool)), p, np.nan)


def test_page_heatmap_is_the_traced_pattern_and_follows_the_prompt():
    at = open_page("4_Attention.py", model=MODEL, prompt=PROMPT, attn_layer="1", attn_head="2")
    assert_ok(at)
    np.testing.assert_array_equal(_pattern(at), _expected(PROMPT, 1, 2))
    assert {"attn_grid", "attn_step1", "attn_step5", "attn_from_token"} <= set(figures(at))
    assert len(at.dataframe) == 1 and at.dataframe[0].value.shape[0] == np.prod(_shape())
    other = "First Citizen:\nWhat is the city but the people?"
    at.text_area(key="w_prompt").set_value(other).run()
    assert_ok(at)
    np.testing.assert_array_equal(_pattern(at), _expected(other, 1, 2))


def test_page_ablation_changes_the_output_and_undoing_it_restores_it():
    L, H = _shape()
    heads = ["0.0", f"{L - 2}.{H - 1}"]  # heads upstream of the head on screen, so its pattern changes
    at = open_page("4_Attention.py", model=MODEL, prompt=PROMPT, attn_layer=str(L - 1), attn_head="1")
    assert_ok(at)
    plain = _pattern(at)
    at.multiselect(key="w_attn_ablate").set_value(heads).run()
    assert_ok(at)
    assert at.query_params["ablate_heads"] == ",".join(heads)
    figs = figures(at)
    before, after = (decode(d["y"]) for d in figs["attn_ablation_next"]["data"])
    assert not np.allclose(before, after)
    ablated = _pattern(at, "attn_pattern_ablated")
    assert not np.allclose(np.nan_to_num(ablated), np.nan_to_num(plain))
    np.testing.assert_array_equal(_pattern(at), plain)  # the main chart still shows the plain model
    at.multiselect(key="w_attn_ablate").set_value([]).run()
    assert_ok(at)
    assert "attn_pattern_ablated" not in figures(at)
    np.testing.assert_array_equal(_pattern(at), plain)
    at.multiselect(key="w_attn_ablate").set_value(heads[::-1]).run()  # same set, other order: same result
    np.testing.assert_array_equal(_pattern(at, "attn_pattern_ablated"), ablated)


def test_page_out_of_range_layer_in_url_warns_instead_of_crashing():
    at = open_page("4_Attention.py", model=MODEL, prompt=PROMPT, attn_layer="99", attn_head="-1")
    assert_ok(at)
    text = " ".join(w.value for w in at.warning)
    assert "attn_layer" in text and "attn_head" in text
    np.testing.assert_array_equal(_pattern(at), _expected(PROMPT, 0, 0))
    assert json.loads(json.dumps(figures(at)["attn_pattern"]["layout"]["title"]))["text"].startswith("Layer 0, head 0")


def test_page_moving_the_sliders_changes_the_chart():
    at = open_page("4_Attention.py", model=MODEL, prompt=PROMPT)
    L, H = _shape()
    at.slider(key="w_attn_layer").set_value(L - 1).run()
    at.slider(key="w_attn_head").set_value(H - 1).run()
    assert_ok(at)
    np.testing.assert_array_equal(_pattern(at), _expected(PROMPT, L - 1, H - 1))
