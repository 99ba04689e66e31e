"""Every page, the lesson, side by side and the exports with each model family (tiny random
Hugging Face folders), and the numbers behind them: lens and attribution identities for RMSNorm,
untied output and parallel blocks; RoPE's angles, rotations and relative-position property
against the model's own hooks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import gptviz
from gptviz import export
from gptviz.analysis import rotary as ra
from gptviz.analysis.lens import (
    direct_logit_attribution,
    layernorm_input,
    layernorm_names,
    layernorm_view,
    lens_logits,
    logit_lens,
    residual_stack,
)
from gptviz.figures import attention as fa
from gptviz.figures import residual as fres
from gptviz.figures import rotary as fr
from gptviz.model import rotate as model_rotate
from tests.apptest_utils import assert_ok, decode, figures, open_page
from tests.hf_families import make_family_model

KINDS = ("llama", "qwen3", "gpt_neox")  # GQA; qk-norm + head_dim; partial rotary + parallel + untied
TEXT = "Hello, world! The quick brown fox jumps over the lazy dog. Hello, world!"
PAGES = (
    "1_Tokenization.py",
    "2_Embeddings.py",
    "3_Positional_encoding.py",
    "4_Attention.py",
    "5_Feed-forward_and_residual.py",
    "6_Output.py",
    "7_Lesson.py",
    "8_Side_by_side.py",
    "9_Training_timeline.py",
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    out = {}
    for kind in (*KINDS, "llama3"):
        make_family_model(kind, root / kind)
        out[kind] = str(root / kind)
    return out


@pytest.fixture(scope="module")
def loaded(folders):
    """(model, full-precision trace) per family."""
    out = {}
    for kind, folder in folders.items():
        model = gptviz.load_model(folder)
        out[kind] = (model, gptviz.run(model, TEXT, precision="full"))
    return out


# --- every page opens ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_with_every_family(folders, kind, page):
    params = {"model": folders[kind], "prompt": TEXT}
    if page == "8_Side_by_side.py":
        params.update(sbs_left=folders[kind], sbs_right="bundled:gpt2-style")
    at = open_page(page, **params)
    assert_ok(at)
    assert at.sidebar.selectbox[0].value != "bundled:gpt2-style" or page == "8_Side_by_side.py"
    figs = figures(at)
    assert figs, f"{page} drew no chart for {kind}"
    if page == "3_Positional_encoding.py":
        assert {"rope_angles", "rope_curves", "rope_wavelengths", "rope_arrows", "rope_relative"} <= set(figs)
        assert "pos_heatmap" not in figs  # no position table: nothing is added
    if page == "4_Attention.py":
        assert "attn_gqa" in figs if kind != "gpt_neox" else "attn_gqa" not in figs
    if page == "8_Side_by_side.py":
        assert folders[kind] in figs["sbs_attn_0"]["layout"]["title"]["text"]
        captions = [c.value for c in at.caption]
        assert any(c.startswith("Positions: **rotary**") for c in captions)  # left: this family
        assert any(c.startswith("Positions: **learned**") for c in captions)  # right: GPT-2 style


@pytest.mark.parametrize("kind", KINDS)
def test_every_lesson_step_opens(folders, kind):
    from gptviz.lesson import LESSONS

    for key, lesson in LESSONS.items():
        for i in range(len(lesson.steps)):
            at = open_page("7_Lesson.py", model=folders[kind], lesson=key, lesson_step=str(i))
            assert_ok(at)
            assert figures(at)
            if lesson.steps[i].stage == "positions":
                text = " ".join(m.value for m in at.markdown)
                assert "rotat" in text and "is added" not in text


def test_positional_page_arrows_are_the_traces_q_before_and_after_rotation(folders, loaded):
    model, _ = loaded["llama"]
    at = open_page(
        "3_Positional_encoding.py", model=folders["llama"], prompt=TEXT, rope_layer="1", rope_head="5", pos_token="4"
    )
    assert_ok(at)
    trace = gptviz.run(model, TEXT)
    spec = figures(at)["rope_arrows"]
    before = [d for d in spec["data"] if d.get("name", "").startswith("before")][0]
    after = [d for d in spec["data"] if d.get("name", "").startswith("after")][0]
    i, j = ra.pair_dims(model.cfg, 0)
    q, rq = trace["q", 1][4, 5], trace["rot_q", 1][4, 5]
    np.testing.assert_allclose(decode(before["x"])[1], q[i], rtol=1e-5)
    np.testing.assert_allclose(decode(before["y"])[1], q[j], rtol=1e-5)
    np.testing.assert_allclose(decode(after["x"])[1], rq[i], rtol=1e-5)
    np.testing.assert_allclose(decode(after["y"])[1], rq[j], rtol=1e-5)


# --- exports ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_exports_work_for_every_family(loaded, kind, tmp_path):
    model, trace = loaded[kind]
    path = tmp_path / "trace.npz"
    path.write_bytes(export.npz_bytes(trace))
    back = gptviz.load_trace(path)
    assert back.config == trace.config
    np.testing.assert_array_equal(back["rot_q", 0], trace["rot_q", 0])
    figs = [
        fr.rotary_angle_heatmap(ra.rotary_angles(model.cfg, 32)),
        fr.rotary_pair_arrows(ra.query_pair(trace, 0, 0, 3, 0), trace.tokens[3]),
        fr.relative_position_curves(ra.relative_scores(trace, 0, 0, 5, 1), trace.tokens[5], trace.tokens[1]),
        fa.gqa_grid(trace.config),
        *fa.attention_steps(trace, 0, trace.config.n_head - 1, 8),
        fres.layernorm_figure(layernorm_view(model, trace, "blocks.1.ln2", 2), trace.tokens[2]),
        fres.logit_attribution(direct_logit_attribution(model, trace), "x"),
    ]
    if model.cfg.ffn == "gated":
        figs.append(
            fres.gated_neurons_bar(trace["pre", 0], trace["pre_linear", 0], trace["post", 0], 2, trace.tokens, 0)
        )
    for fig in figs:
        table = export.figure_table(fig)
        assert len(table) > 0
        assert export.read_csv(export.csv_bytes(table)).shape == table.shape
        assert export.html_bytes(fig).startswith(b"<html") or b"plotly" in export.html_bytes(fig)[:4000].lower()


# --- lens and attribution stay exact ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_residual_identity_holds_including_parallel_blocks(loaded, kind):
    model, t = loaded[kind]
    for i in range(model.cfg.n_layer):
        np.testing.assert_allclose(
            t["resid_post", i], t["resid_pre", i] + t["attn_out", i] + t["mlp_out", i], rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("kind", KINDS)
def test_logit_lens_last_row_is_the_models_own_output(loaded, kind):
    model, t = loaded[kind]
    np.testing.assert_allclose(lens_logits(model, residual_stack(t)[-1]), t["hook_logits"], rtol=1e-4, atol=1e-4)
    lens = logit_lens(model, t)
    np.testing.assert_array_equal(lens.top_ids[-1], t["hook_logits"].argmax(-1))


@pytest.mark.parametrize("kind", KINDS)
def test_direct_logit_attribution_adds_up_exactly(loaded, kind):
    model, t = loaded[kind]
    for target in np.argsort(-t.logits())[:3]:
        attr = direct_logit_attribution(model, t, int(target))
        assert attr.exact
        assert attr.labels[0] == "embed"  # a rotary model adds no position vector
        assert "RMSNorm" in attr.method if model.cfg.norm_kind == "rmsnorm" else "LayerNorm" in attr.method
        np.testing.assert_allclose(attr.total, t.logits()[target], rtol=1e-4, atol=1e-4)
    # the embedding bar by hand (RMSNorm: no centring, no shift)
    attr = direct_logit_attribution(model, t, int(np.argmax(t.logits())))
    if model.cfg.norm_kind == "rmsnorm" and model.unembed.bias is None:
        assert attr.bias == 0.0 and "none" in attr.bias_label
    ln = model.ln_final
    u = model.unembed.weight[attr.token_id].detach().double().numpy()
    e = t["hook_embed"][-1].astype(np.float64)
    scale = float(t["ln_final.hook_scale"][-1, 0])
    if model.cfg.norm_kind == "rmsnorm":
        expect = (e / scale * ln.weight.detach().double().numpy()) @ u
    else:
        expect = ((e - e.mean()) / scale * ln.weight.detach().double().numpy()) @ u
    np.testing.assert_allclose(attr.values[0], expect, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_norm_view_reproduces_the_hooks(loaded, kind):
    model, t = loaded[kind]
    rms = model.cfg.norm_kind == "rmsnorm"
    for name in layernorm_names(model.cfg):
        view = layernorm_view(model, t, name, 3)
        full = name if name == "ln_final" else name
        np.testing.assert_allclose(view.output, t[f"{full}.hook_normalized"][3], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(view.std, t[f"{full}.hook_scale"][3, 0], rtol=1e-5)
        assert view.kind == model.cfg.norm_kind
        if rms:
            assert view.mean == 0.0 and not view.bias.any()
            np.testing.assert_allclose((view.normalized**2).mean(), 1.0, rtol=1e-3)


def test_parallel_blocks_ln2_reads_the_block_input(loaded):
    model, t = loaded["gpt_neox"]
    assert model.cfg.parallel
    for i in range(model.cfg.n_layer):
        np.testing.assert_array_equal(layernorm_input(t, f"blocks.{i}.ln2"), t["resid_pre", i])
        assert not np.allclose(t["resid_pre", i], t["resid_mid", i])  # the distinction matters


# --- RoPE against the model -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", (*KINDS, "llama3"))
def test_rotary_frequencies_and_rotation_are_the_models(loaded, kind):
    model, t = loaded[kind]
    cfg = model.cfg
    angles = ra.rotary_angles(cfg, t.n_tokens)
    np.testing.assert_allclose(angles.freqs, model.rotary.inv_freq.double().numpy(), rtol=1e-6)
    assert (angles.base_freqs is not None) == (kind == "llama3")
    if kind == "llama3":
        assert (angles.freqs < angles.base_freqs - 1e-12).any()  # scaling slowed some pairs
    assert list(angles.still_dims) == list(range(cfg.rot_dim, cfg.d_head))
    assert (kind == "gpt_neox") == (cfg.rot_dim < cfg.d_head)
    for layer in range(cfg.n_layer):
        q, k = t["q", layer], t["k", layer]  # [T, H|K, Dh]
        pos = np.arange(t.n_tokens)[:, None]
        np.testing.assert_allclose(ra.rotate(q, pos, angles.freqs), t["rot_q", layer], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ra.rotate(k, pos, angles.freqs), t["rot_k", layer], rtol=1e-4, atol=1e-5)
    # numpy rotate == the model's rotate (an independent implementation of the same layout)
    cos, sin = model.rotary(0, t.n_tokens)
    x = torch.randn(1, t.n_tokens, 2, cfg.d_head)
    np.testing.assert_allclose(
        ra.rotate(x[0].numpy(), np.arange(t.n_tokens)[:, None], angles.freqs),
        model_rotate(x, cos, sin)[0].numpy(),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_query_pair_turns_by_position_times_speed_and_keeps_its_length(loaded, kind):
    model, t = loaded[kind]
    rot = ra.query_pair(t, 1, 1, 5, 1)
    assert rot.dims == (1, 1 + model.cfg.rot_dim // 2)
    np.testing.assert_allclose(np.hypot(*rot.before), np.hypot(*rot.after), rtol=1e-5)
    c, s = math.cos(rot.angle), math.sin(rot.angle)
    expect = np.array([c * rot.before[0] - s * rot.before[1], s * rot.before[0] + c * rot.before[1]])
    np.testing.assert_allclose(rot.after, expect, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(rot.angle, 5 * float(model.rotary.inv_freq[1]), rtol=1e-6)


@pytest.mark.parametrize("kind", (*KINDS, "llama3"))
def test_score_depends_only_on_the_distance_and_matches_the_models(loaded, kind):
    model, t = loaded[kind]
    H = model.cfg.n_head
    for head in (0, H - 1):  # the last query head reads the last shared K/V head (GQA)
        rel = ra.relative_scores(t, 2, head, 9, 2, max_offset=40, starts=(0, 7, 100))
        np.testing.assert_allclose(rel.scores[1], rel.scores[0], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(rel.scores[2], rel.scores[0], rtol=1e-6, atol=1e-9)
        assert rel.actual_offset == 7
        np.testing.assert_allclose(rel.scores[0][7], rel.actual_score, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rel.scores[0][0], rel.unrotated, rtol=1e-9)
        assert not np.allclose(rel.scores[0], rel.unrotated)  # rotation changes the score with distance


def test_rotary_analysis_refuses_models_with_added_positions():
    with pytest.raises(ValueError, match="not rotary"):
        ra.rotary_angles(gptviz.load_model("bundled:gpt2-style").cfg, 8)


# --- attention for grouped-query models ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_step_by_step_uses_rotated_q_k_and_the_shared_kv_head(loaded, kind):
    model, t = loaded[kind]
    cfg = model.cfg
    head = cfg.n_head - 1
    kh = head // (cfg.n_head // cfg.kv_heads)
    fig = fa.qkv_heatmaps(t, 1, head, 8)
    np.testing.assert_allclose(decode(fig.data[0].z), t["rot_q", 1][:8, head], rtol=1e-6)
    np.testing.assert_allclose(decode(fig.data[1].z), t["rot_k", 1][:8, kh], rtol=1e-6)
    np.testing.assert_allclose(decode(fig.data[2].z), t["v", 1][:8, kh], rtol=1e-6)
    # and the scores of step 2 are exactly those rotated vectors' products
    scores = fa.scores_heatmap(t, 1, head, 8)
    expect = t["rot_q", 1][:8, head] @ t["rot_k", 1][:8, kh].T / math.sqrt(cfg.d_head)
    np.testing.assert_allclose(decode(scores.data[0].z), expect, rtol=1e-4, atol=1e-5)


def test_gqa_grid_shows_which_query_heads_share_a_kv_head(loaded):
    model, _ = loaded["llama"]  # 8 query heads, 2 K/V heads
    fig = fa.gqa_grid(model.cfg)
    z = decode(fig.data[0].z)
    assert z.shape == (model.cfg.kv_heads, model.cfg.n_head)
    expect = np.zeros((2, 8))
    expect[0, :4] = expect[1, 4:] = 1
    np.testing.assert_array_equal(np.nan_to_num(z), expect)
    assert json.dumps(fig.to_plotly_json(), default=str)


# --- the sidebar ----------------------------------------------------------------------------------


def test_sidebar_lists_cached_models_of_every_family_and_opens_one(folders, tmp_path, monkeypatch):
    import shutil

    cache = tmp_path / "hub"
    for kind, repo in (("llama", "tiny/llama-test"), ("qwen3", "tiny/qwen3-test"), ("gpt_neox", "tiny/pythia-test")):
        snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
        shutil.copytree(folders[kind], snap)
        (snap.parent.parent / "refs").mkdir()
        (snap.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    at = open_page("1_Tokenization.py", model="tiny/qwen3-test", prompt=TEXT)
    assert_ok(at)
    box = at.sidebar.selectbox[0]
    assert {"tiny/llama-test", "tiny/qwen3-test", "tiny/pythia-test"} <= set(box.options)
    assert box.value == "tiny/qwen3-test"
    assert "GPT-2 " not in box.help and "Llama" in box.help


def test_home_page_describes_each_family(folders):
    for kind, words in (
        ("llama", ("rotary", "RMSNorm", "gated silu", "share 2 key/value heads")),
        ("gpt_neox", ("4 of 16 dims", "parallel blocks", "LayerNorm")),
        ("qwen3", ("q/k norm",)),
    ):
        at = open_page(model=folders[kind], prompt=TEXT)
        assert_ok(at)
        text = " ".join(m.value for m in at.markdown)
        for w in words:
            assert w in text, (kind, w)


# --- feed-forward and norm views ------------------------------------------------------------------


def test_gated_bars_are_act_gate_times_up_and_the_products_the_models(loaded):
    from gptviz.figures.residual import gated_neurons_bar

    model, t = loaded["llama"]
    assert model.cfg.ffn == "gated" and model.cfg.act == "silu"
    fig = gated_neurons_bar(t["pre", 1], t["pre_linear", 1], t["post", 1], 4, t.tokens, 1, model.cfg.act, k=10)
    gate, up, prod = (decode(d.y).astype(np.float64) for d in fig.data)
    np.testing.assert_allclose(gate * up, prod, rtol=1e-4, atol=1e-6)
    ids = [int(n[1:]) for n in fig.layout.xaxis.ticktext]
    np.testing.assert_allclose(prod, t["post", 1][4, ids], rtol=1e-6)
    silu = torch.nn.functional.silu(torch.tensor(t["pre", 1][4, ids])).numpy()
    np.testing.assert_allclose(gate, silu, rtol=1e-5, atol=1e-7)
    assert np.all(np.abs(prod[:-1]) >= np.abs(prod[1:]) - 1e-9)  # strongest first


def test_feed_forward_page_shows_gate_and_up_only_for_gated_models_and_rmsnorm_without_shift(folders):
    for kind, gated in (("llama", True), ("gpt_neox", False)):
        at = open_page("5_Feed-forward_and_residual.py", model=folders[kind], prompt=TEXT)
        assert_ok(at)
        figs = figures(at)
        assert ("ff_gated" in figs) == gated
        names = {d.get("name") for d in figs["ff_layernorm"]["data"]}
        assert ("shift β" in names) == (not gated)  # llama: RMSNorm, gpt_neox: LayerNorm
        title = figs["ff_layernorm"]["layout"]["title"]["text"]
        assert title.startswith("RMSNorm" if gated else "LayerNorm")


# --- the README's hook table ----------------------------------------------------------------------


def _readme_hooks() -> set[str]:
    """Hook names in the README's table, ``blocks.{i}.`` kept; "`a.hook_x`, `hook_y`" is expanded
    by replacing the first name's last components."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("## Hook names", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        first = row.split("|")[1]
        prev = None
        for tok in re.findall(r"`([^`]+)`", first):
            if prev is not None and not tok.startswith(("blocks.", "hook_tokens", "ln_final")):
                parts = prev.split(".")
                tok = ".".join(parts[: len(parts) - len(tok.split("."))] + tok.split("."))
            names.add(tok)
            prev = tok
    return names


@pytest.mark.parametrize("kind", (*KINDS, "bundled"))
def test_readme_hook_table_names_every_hook_of_every_family(loaded, kind):
    import re

    model = gptviz.load_model("bundled:gpt2-style") if kind == "bundled" else loaded[kind][0]
    table = _readme_hooks()
    missing = {re.sub(r"^blocks\.\d+\.", "blocks.{i}.", n) for n in model.hook_names()} - table
    assert not missing, f"{kind}: hooks missing from the README's table: {sorted(missing)}"


# --- head statistics and ablation of query heads ---------------------------------------------------


def test_head_stats_name_the_shared_kv_head(loaded):
    from gptviz.analysis.attention import head_stats

    _, t = loaded["llama"]  # 8 query heads, 2 K/V heads
    stats = head_stats(t)
    assert len(stats) == 3 * 8
    assert stats.loc["1.3", "K/V head"] == 0 and stats.loc["1.4", "K/V head"] == 1
    assert "K/V head" not in head_stats(loaded["gpt_neox"][1]).columns  # one K/V head per query head


@pytest.mark.parametrize("kind", KINDS)
def test_ablating_a_query_head_leaves_its_group_and_its_layers_patterns(loaded, kind):
    from gptviz.analysis.ablation import Ablation

    model, t = loaded[kind]
    G = model.cfg.n_head // model.cfg.kv_heads
    after = gptviz.run(model, TEXT, precision="full", extra_hooks=Ablation(heads=((1, 1),)).hooks())
    assert not after["z", 1][:, 1].any()
    others = [h for h in range(model.cfg.n_head) if h != 1]
    np.testing.assert_array_equal(after["z", 1][:, others], t["z", 1][:, others])  # incl. heads sharing K/V
    assert G == 1 or (1 // G) == (0 // G)  # head 0 shares head 1's K/V head in the GQA families
    np.testing.assert_array_equal(after["pattern", 1], t["pattern", 1])
    assert not np.allclose(after.logits(), t.logits())


def test_projector_mode_keeps_the_cyclic_angle_scale_and_the_gqa_colours(loaded):
    model, _ = loaded["llama"]
    fig = fr.rotary_angle_heatmap(ra.rotary_angles(model.cfg, 16), projector=True)
    assert fig.data[0].colorscale == fr.rotary_angle_heatmap(ra.rotary_angles(model.cfg, 16)).data[0].colorscale
    assert fig.data[0].colorscale[0][1] == fig.data[0].colorscale[-1][1]  # cyclic: 0 and 2π alike
    grid = fa.gqa_grid(model.cfg, projector=True)
    assert grid.data[0].colorscale[0][1] == "#f2f2f2"


def test_positional_page_relative_chart_is_the_models_score_and_the_curves_coincide(folders, loaded):
    model, _ = loaded["gpt_neox"]
    at = open_page(
        "3_Positional_encoding.py", model=folders["gpt_neox"], prompt=TEXT, rope_layer="2", rope_head="3",
        rope_qpos="10", rope_kpos="4",
    )  # fmt: skip
    assert_ok(at)
    trace = gptviz.run(model, TEXT)
    spec = figures(at)["rope_relative"]
    curves = [d for d in spec["data"] if d.get("name", "").startswith("key at position")]
    star = [d for d in spec["data"] if d.get("name", "").startswith("in the prompt")][0]
    assert len(curves) == 2
    a, b = decode(curves[0]["y"]), decode(curves[1]["y"])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert decode(star["x"])[0] == 6
    np.testing.assert_allclose(decode(star["y"])[0], trace["scores", 2][3, 10, 4], rtol=1e-5)
    np.testing.assert_allclose(a[6], decode(star["y"])[0], rtol=1e-4, atol=1e-6)
    # every offset stays inside the context (64 positions here)
    assert int(decode(curves[1]["x"])[-1]) + int(curves[1]["name"].split()[3].rstrip(",")) < model.cfg.n_ctx
    at = open_page("3_Positional_encoding.py", model=folders["gpt_neox"], prompt=TEXT, rope_qpos="2", rope_kpos="5")
    assert_ok(at)
    assert not [d for d in figures(at)["rope_relative"]["data"] if d.get("name", "").startswith("in the prompt")]
    assert "no star" in " ".join(m.value for m in at.markdown)


def test_relative_span_keeps_both_placements_inside_the_context(loaded):
    cfg = loaded["llama"][0].cfg  # a 64-position context
    for T, offset in ((9, 0), (9, 8), (60, 40)):
        span, (first, second) = ra.relative_span(cfg, T, offset)
        assert first == 0 and span >= offset and second >= 1
        assert second + span < cfg.n_ctx or span == offset  # only a real pair's distance may push past
    assert ra.relative_span(cfg.replace(n_ctx=1024), 20) == (64, (0, 100))
    assert ra.relative_span(cfg.replace(n_ctx=1024), 500, 300) == (300, (0, 100))
