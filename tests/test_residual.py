"""Stage 4b: LayerNorm view, logit lens, direct logit attribution, and the page itself."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gptviz
from gptviz.analysis.lens import (
    direct_logit_attribution,
    layernorm_names,
    layernorm_view,
    lens_logits,
    logit_lens,
    residual_stack,
)
from gptviz.figures.residual import mlp_activation_heatmap
from gptviz.hooks import hook_name
from tests.apptest_utils import assert_ok, decode, figures, open_page
from tests.conftest import tiny_model

TEXT = "The cat sat on the mat. The cat sat"
PROMPT = "ROMEO: what light through yonder window"
MODEL = "bundled:gpt2-style"
PAGE = "5_Feed-forward_and_residual.py"


def randomized(kind: str, **changes):
    """A tiny model whose LayerNorm weights/biases (and output bias) are not 1/0, so that a
    formula that forgets the scale, the shift or the centring gives a different number."""
    model = tiny_model(kind, **changes)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln" in f".{name}" and name.endswith("weight"):
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g))
            elif (".ln" in f".{name}" and name.endswith("bias")) or name == "unembed.bias":
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module", params=["gpt2", "gpt2-untied", "seed"])
def run(request):
    model = randomized(request.param.removesuffix("-untied"), tie_weights=not request.param.endswith("-untied"))
    return model, gptviz.run(model, TEXT, precision="full")


def test_logit_lens_at_the_last_layer_is_the_models_own_output(run):
    model, trace = run
    logits = trace["hook_logits"]
    np.testing.assert_allclose(lens_logits(model, residual_stack(trace)[-1]), logits, atol=1e-4)
    lens = logit_lens(model, trace)
    assert lens.top_ids.shape == lens.top_probs.shape == (model.cfg.n_layer + 1, trace.n_tokens)
    np.testing.assert_array_equal(lens.top_ids[-1], logits.argmax(-1))
    np.testing.assert_allclose(lens.top_probs[-1], torch.tensor(logits).softmax(-1).amax(-1).numpy(), atol=1e-5)
    assert lens.top_tokens[-1][0] == gptviz.get_tokenizer(model.cfg.tokenizer).token_str(int(logits[0].argmax()))
    # an earlier stage decodes through the final norm with its *own* statistics (pre-LN) or directly
    mid = residual_stack(trace)[1]
    if model.ln_final is not None:
        ln = model.ln_final
        mid_t = F.layer_norm(torch.tensor(mid), mid.shape[-1:], ln.weight, ln.bias, ln.eps)
    else:
        mid_t = torch.tensor(mid)
    want = (mid_t @ model.unembed.weight.T + (model.unembed.bias if model.unembed.bias is not None else 0)).detach()
    np.testing.assert_allclose(lens_logits(model, mid), want.numpy(), atol=1e-4)


def test_direct_logit_attribution_adds_up_to_the_logit(run):
    model, trace = run
    top = int(trace.logits().argmax())
    for token, pos in ((None, -1), (7, 2)):
        attr = direct_logit_attribution(model, trace, token, pos)
        want = float(trace["hook_logits"][pos, attr.token_id])
        assert attr.token_id == (top if token is None else token)
        assert len(attr.values) == 1 + 2 * model.cfg.n_layer
        assert abs(attr.bias) > 1e-3  # the randomized shifts matter
        assert abs(attr.values.sum() + attr.bias - want) <= 1e-4
        assert attr.exact == (model.cfg.norm == "pre")
    if model.cfg.norm == "pre":  # embed + pos component by hand: centre, / final scale, * w, · W_U
        c = trace["hook_embed"][-1] + trace["hook_pos_embed"][-1]
        s = trace["ln_final.hook_scale"][-1, 0]
        w, u = model.ln_final.weight.detach().numpy(), model.unembed.weight[top].detach().numpy()
        attr = direct_logit_attribution(model, trace)
        assert attr.values[0] == pytest.approx(((c - c.mean()) / s * w) @ u, abs=1e-4)


def test_layernorm_view_reproduces_the_hooks(run):
    model, trace = run
    names = layernorm_names(model.cfg)
    assert ("ln_final" in names) == (model.cfg.norm == "pre")
    for name in names:
        for pos in (0, trace.n_tokens - 1):
            v = layernorm_view(model, trace, name, pos)
            np.testing.assert_allclose(v.std, trace[hook_name("scale", norm=name)][pos, 0], rtol=1e-5)
            np.testing.assert_allclose(v.output, trace[hook_name("normalized", norm=name)][pos], atol=1e-5)
            np.testing.assert_allclose(v.output, (v.x - v.mean) / v.std * v.weight + v.bias, atol=1e-9)
            assert abs(v.normalized.mean()) < 1e-6 and abs(v.normalized.std() - 1) < 1e-2


def test_mlp_heatmap_keeps_gpt2_size_small_and_shows_the_most_active_neurons():
    acts = np.random.default_rng(0).standard_normal((1024, 3072)).astype(np.float16)
    acts[5, 2000] = 40.0  # the most active neuron must be among those shown
    fig = mlp_activation_heatmap(acts, [" word"] * 1024, layer=3, top_n=256)  # the page's largest choice
    assert len(fig.to_json()) < 3_000_000
    shown = [int(y) for y in fig.data[0].y]
    assert len(shown) == 256 and 2000 in shown
    np.testing.assert_allclose(fig.data[0].z, acts[:, shown].T.astype(np.float32))
    assert "256 most active of 3072" in fig.layout.title.text
    small = mlp_activation_heatmap(acts[:8, :20], ["a", "<b>"] * 4, layer=0, top_n=64)
    assert "all 20" in small.layout.title.text and list(small.data[0].x)[1] == "1: &lt;b&gt;"


@pytest.fixture(scope="module")
def bundled():
    return gptviz.load_model(MODEL)


def norms(model, text):
    return np.linalg.norm(residual_stack(gptviz.run(model, text)), axis=-1)


def test_page_shows_the_traces_numbers_and_follows_the_prompt(bundled):
    at = open_page(PAGE, model=MODEL, ff_layer="1", prompt=PROMPT)
    assert_ok(at)
    figs = figures(at)
    np.testing.assert_allclose(decode(figs["ff_resid_norm"]["data"][0]["z"]), norms(bundled, PROMPT), rtol=1e-5)
    assert figs["ff_mlp"]["layout"]["title"]["text"].startswith("Layer 1 ")
    hostile = "<b>bold</b> $x$ <script>x</script>"
    at.sidebar.text_area[0].set_value(hostile).run()
    assert_ok(at)
    figs = figures(at)
    np.testing.assert_allclose(decode(figs["ff_resid_norm"]["data"][0]["z"]), norms(bundled, hostile), rtol=1e-5)
    blob = json.dumps({k: v for k, v in figs.items() if k.startswith("ff_")})
    assert "<script" not in blob and "<b>" not in blob and "&lt;" in blob


def test_neuron_ablation_changes_the_output_and_undoing_it_restores_it(bundled):
    at = open_page(PAGE, model=MODEL, ff_layer="1", prompt=PROMPT)
    assert_ok(at)
    assert "ff_ablation" not in figures(at) and not at.metric  # nothing ablated yet: no comparison to show
    top = list(figures(at)["ff_top_neurons"]["data"][0]["y"])[-8:]  # the 8 most active on the last token
    top = [n.replace("L", "").replace(" n", ".") for n in top]  # bar labels "L1 n77" -> the option "1.77"
    at.multiselect(key="ff_ablate_pick").set_value(top).run()
    assert_ok(at)
    assert float(at.metric[0].value.split()[0]) > 1e-4
    bars = figures(at)["ff_ablation"]["data"]
    before, after = decode(bars[0]["y"]), decode(bars[1]["y"])
    ticks = figures(at)["ff_ablation"]["layout"]["xaxis"]["ticktext"]
    ids = [int(x.rsplit("(", 1)[1].rstrip(")")) for x in ticks]  # "token (id)"
    np.testing.assert_allclose(before, gptviz.run(bundled, PROMPT).probs()[ids], rtol=1e-5)  # before = the plain model
    assert not np.allclose(after, before, rtol=1e-3, atol=0)
    url = at.query_params["ablate_neurons"]
    assert sorted((url if isinstance(url, str) else url[0]).split(",")) == sorted(top)  # kept in the link
    at.multiselect(key="ff_ablate_pick").set_value([]).run()
    assert_ok(at)
    assert "ff_ablation" not in figures(at) and not at.metric  # undone: back to the plain model


def test_out_of_range_layer_in_the_url_warns_instead_of_crashing():
    at = open_page(PAGE, model=MODEL, ff_layer="99", prompt=PROMPT)
    assert_ok(at)
    assert any("99" in w.value for w in at.warning)
    assert figures(at)["ff_mlp"]["layout"]["title"]["text"].startswith("Layer 0 ")


def test_moving_the_layer_slider_changes_the_chart():
    at = open_page(PAGE, model=MODEL, prompt=PROMPT)
    at.slider(key="w_ff_layer").set_value(2).run()
    assert_ok(at)
    assert figures(at)["ff_mlp"]["layout"]["title"]["text"].startswith("Layer 2 ")


def test_undoing_an_ablation_that_came_from_the_link():
    at = open_page(PAGE, model=MODEL, prompt=PROMPT, ablate_neurons="1.3,1.5")
    assert at.multiselect(key="ff_ablate_pick").value == ["1.3", "1.5"]
    at.multiselect(key="ff_ablate_pick").set_value([]).run()
    assert_ok(at)
    assert at.multiselect(key="ff_ablate_pick").value == []


def test_logit_lens_in_vocabulary_blocks_equals_one_stage_at_a_time(run, monkeypatch):
    """The lens takes every stage and position at once, a block of vocabulary columns at a time
    (tiny blocks here): the same top tokens and probabilities as a full softmax per stage."""
    from gptviz.analysis import lens as lens_module

    model, t = run
    monkeypatch.setattr(lens_module, "LENS_BLOCK_ELEMENTS", 1)  # 256-column blocks
    lens = logit_lens(model, t)
    for s, resid in enumerate(residual_stack(t)):
        logp = torch.from_numpy(lens_logits(model, resid)).log_softmax(-1)
        np.testing.assert_array_equal(lens.top_ids[s], logp.argmax(-1).numpy())
        np.testing.assert_allclose(lens.top_probs[s], logp.max(-1).values.exp().numpy(), rtol=1e-5, atol=1e-6)


def test_logit_lens_of_a_window_equals_those_columns_of_the_whole_lens(run):
    """A window of positions decodes exactly the columns it names (the page decodes only the
    positions it shows), and its figure numbers the columns as in the prompt."""
    from gptviz.figures.residual import logit_lens_heatmap

    model, t = run
    whole = logit_lens(model, t)
    part = logit_lens(model, t, positions=range(2, 6))
    assert part.first == 2 and part.positions == range(2, 6)
    np.testing.assert_array_equal(part.top_ids, whole.top_ids[:, 2:6])
    np.testing.assert_allclose(part.top_probs, whole.top_probs[:, 2:6], rtol=1e-5, atol=1e-7)
    assert part.top_tokens == [row[2:6] for row in whole.top_tokens]
    assert (
        list(logit_lens_heatmap(part, t.tokens).data[0].x) == list(logit_lens_heatmap(whole, t.tokens).data[0].x)[2:6]
    )
    for bad in (range(0, 0), range(3, t.n_tokens + 1), range(0, 4, 2)):
        with pytest.raises(ValueError, match="positions"):
            logit_lens(model, t, positions=bad)


def test_lens_window_ends_at_the_chosen_position_and_stays_inside_the_prompt():
    from gptviz.analysis.lens import lens_window

    assert lens_window(100, 99, 40) == range(60, 100)
    assert lens_window(100, 50, 40) == range(11, 51)
    assert lens_window(100, 3, 40) == range(0, 40)  # near the start: the first 40
    assert lens_window(10, 9, 40) == range(0, 10)  # a short prompt: all of it
    assert lens_window(1, 0, 40) == range(0, 1)


def test_page_decodes_a_window_of_a_long_prompt_and_all_of_it_on_request(bundled):
    long = " ".join(["The cat sat on the mat."] * 12)  # more tokens than the window
    n = gptviz.run(bundled, long).n_tokens
    assert n > 40
    at = open_page(PAGE, model=MODEL, prompt=long, ff_pos=str(n - 11))
    assert_ok(at)
    x = figures(at)["ff_lens"]["data"][0]["x"]
    assert [int(c.split(":")[0]) for c in x] == list(range(n - 50, n - 10))  # the 40 up to the chosen position
    whole = logit_lens(bundled, gptviz.run(bundled, long))
    z = decode(figures(at)["ff_lens"]["data"][0]["z"])
    np.testing.assert_allclose(z, whole.top_probs[:, n - 50 : n - 10], rtol=1e-4, atol=1e-6)
    at.toggle(key="w_ff_lens_all").set_value(True).run()
    assert_ok(at)
    assert len(figures(at)["ff_lens"]["data"][0]["x"]) == n
    short = open_page(PAGE, model=MODEL, prompt=PROMPT)
    assert_ok(short)
    assert not [w for w in short.toggle if w.key == "w_ff_lens_all"]  # nothing to choose: every position is shown
