import re

import numpy as np
import pytest
import torch

import gptviz
from gptviz.hooks import count_hooks, hooks
from gptviz.model import GPT, positional_encoding
from tests.conftest import tiny_model, written_out

TEXT = "The cat sat on the mat. The cat sat on the"


def test_hook_names_are_pinned(gpt2_tiny):
    per_block = [
        "hook_resid_pre",
        "ln1.hook_scale",
        "ln1.hook_normalized",
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_attn_scores",
        "attn.hook_pattern",
        "attn.hook_z",
        "hook_attn_out",
        "hook_resid_mid",
        "ln2.hook_scale",
        "ln2.hook_normalized",
        "mlp.hook_pre",
        "mlp.hook_post",
        "hook_mlp_out",
        "hook_resid_post",
    ]
    expected = {"hook_tokens", "hook_embed", "hook_pos_embed", "hook_logits"}
    expected |= {"ln_final.hook_scale", "ln_final.hook_normalized"}
    expected |= {f"blocks.{i}.{n}" for i in range(2) for n in per_block}
    assert set(gpt2_tiny.hook_names()) == expected
    seed = tiny_model("seed")
    assert set(seed.hook_names()) == expected - {"ln_final.hook_scale", "ln_final.hook_normalized"}


def test_attention_equals_torch_multihead_attention():
    """Our explicit attention against the seed's nn.MultiheadAttention, same weights and mask."""
    model = tiny_model("seed")
    attn = model.blocks[0].attn
    D, H = model.cfg.d_model, model.cfg.n_head
    mha = torch.nn.MultiheadAttention(D, H, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.c_attn.weight)
        mha.in_proj_bias.copy_(attn.c_attn.bias)
        mha.out_proj.weight.copy_(attn.c_proj.weight)
        mha.out_proj.bias.copy_(attn.c_proj.bias)
    x = torch.randn(2, 10, D)
    mask = torch.ones(10, 10, dtype=torch.bool).triu(1)
    expected, weights = mha(x, x, x, attn_mask=mask, average_attn_weights=False)
    captured = {}
    with hooks(attn, [("hook_pattern", lambda t, n: captured.setdefault("p", t))]), torch.no_grad():
        ours = attn(x)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(captured["p"], weights, atol=1e-6, rtol=1e-5)


def test_patterns_are_causal_distributions(model):
    trace = gptviz.run(model, TEXT, precision="full")
    T = trace.n_tokens
    for layer in range(model.cfg.n_layer):
        p = trace["pattern", layer]
        assert p.shape == (model.cfg.n_head, T, T)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
        assert np.all(p[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)


def test_changing_a_later_token_leaves_earlier_positions_unchanged(model):
    a = gptviz.run(model, "one two three four five six", precision="full")
    b = gptviz.run(model, "one two three four five seven", precision="full")
    t = a.n_tokens - 2  # last position shared by both
    assert a.n_tokens == b.n_tokens and (a.ids[:-1] == b.ids[:-1]).all() and a.ids[-1] != b.ids[-1]
    changed = 0
    for name in a.keys():
        x, y = a[name], b[name]
        if re.search(r"hook_(attn_scores|pattern)$", name):
            x, y = x[:, : t + 1, : t + 1], y[:, : t + 1, : t + 1]  # queries and keys ≤ t
        else:
            x, y = x[: t + 1], y[: t + 1]
        np.testing.assert_allclose(x, y, atol=1e-6, err_msg=name)
        changed += not np.allclose(a[name][-1:], b[name][-1:])
    assert changed > 10  # the last position itself did change


def test_residual_identities_and_attention_steps(model):
    trace = gptviz.run(model, TEXT, precision="full")
    cfg = model.cfg
    np.testing.assert_allclose(
        trace["blocks.0.hook_resid_pre"], trace["hook_embed"] + trace["hook_pos_embed"], atol=1e-6
    )
    for i in range(cfg.n_layer):
        pre, mid, post = (trace[f"resid_{s}", i] for s in ("pre", "mid", "post"))
        attn_out, mlp_out = trace["attn_out", i], trace["mlp_out", i]
        if cfg.norm == "pre":
            np.testing.assert_allclose(mid, pre + attn_out, atol=1e-5)
            np.testing.assert_allclose(post, mid + mlp_out, atol=1e-5)
        else:  # post-LN: the LayerNorm output is the residual stream
            np.testing.assert_allclose(mid, trace["normalized", i, "ln1"], atol=1e-6)
            np.testing.assert_allclose(post, trace["normalized", i, "ln2"], atol=1e-6)
        scores = trace["attn_scores", i]
        T = scores.shape[-1]
        masked = np.where(np.triu(np.ones((T, T), bool), 1), -np.inf, scores)
        softmax = np.exp(masked - masked.max(-1, keepdims=True))
        softmax /= softmax.sum(-1, keepdims=True)
        pattern = trace["pattern", i]
        np.testing.assert_allclose(pattern, softmax, atol=1e-6)
        z = np.einsum("hqk,khd->qhd", pattern, trace["v", i])
        np.testing.assert_allclose(trace["z", i], z, atol=1e-5)
        q, k = trace["q", i], trace["k", i]
        np.testing.assert_allclose(scores, np.einsum("qhd,khd->hqk", q, k) / np.sqrt(cfg.d_head), atol=1e-5)


def test_compact_trace_matches_full(model):
    full = gptviz.run(model, TEXT, precision="full")
    compact = gptviz.run(model, TEXT)
    assert set(full.keys()) == set(compact.keys())
    for name in full.keys():
        np.testing.assert_allclose(compact[name].astype(np.float32), full[name], atol=2e-3, rtol=2e-3, err_msg=name)
    np.testing.assert_allclose(compact.probs(), full.probs(), atol=1e-4)
    assert compact["blocks.0.attn.hook_pattern"].dtype == np.float32  # derived, not stored
    assert "blocks.0.attn.hook_pattern" not in compact.store


def test_no_hook_left_behind_even_when_the_forward_fails(gpt2_tiny):
    gptviz.run(gpt2_tiny, TEXT)
    assert count_hooks(gpt2_tiny) == 0

    def boom(t, name):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError), hooks(gpt2_tiny, [("blocks.0.hook_resid_pre", boom)]):
        gpt2_tiny(torch.tensor([[1, 2, 3]]))
    assert count_hooks(gpt2_tiny) == 0
    with pytest.raises(KeyError), hooks(gpt2_tiny, [("blocks.0.hook_typo", boom)]):
        pass
    assert count_hooks(gpt2_tiny) == 0


def test_replacing_hook_ablates_without_touching_weights(gpt2_tiny):
    before = {k: v.clone() for k, v in gpt2_tiny.state_dict().items()}
    base = gptviz.run(gpt2_tiny, TEXT, precision="full")

    def zero_head0(z, name):
        z = z.clone()
        z[:, :, 0] = 0
        return z

    ablated = gptviz.run(gpt2_tiny, TEXT, precision="full", extra_hooks=[("blocks.0.attn.hook_z", zero_head0)])
    assert np.all(ablated["blocks.0.attn.hook_z"][:, 0] == 0)
    assert not np.allclose(base["hook_logits"], ablated["hook_logits"], atol=1e-4)
    for k, v in gpt2_tiny.state_dict().items():
        assert torch.equal(v, before[k]), k
    again = gptviz.run(gpt2_tiny, TEXT, precision="full")
    np.testing.assert_array_equal(again["hook_logits"], base["hook_logits"])


def test_fused_training_path_equals_explicit_path(model):
    ids = torch.randint(0, model.cfg.vocab_size, (3, 40))
    with torch.no_grad(), written_out(model):
        explicit = model(ids)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, fused=True), explicit, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(ids), explicit, atol=1e-5, rtol=1e-5)


def test_positional_encoding_is_the_sinusoid():
    pe = positional_encoding(50, 16)
    assert pe.shape == (50, 16)
    pos, i = 7, 3
    assert pe[pos, 2 * i].item() == pytest.approx(np.sin(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(np.cos(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert positional_encoding(5, 7).shape == (5, 7)  # odd widths work too


def test_seed_preset_is_the_seeds_design():
    cfg = gptviz.preset("seed")
    assert (cfg.pos, cfg.norm, cfg.act, cfg.tie_weights) == ("sinusoidal", "post", "relu", False)
    model = GPT(cfg.replace(n_layer=1, vocab_size=100))
    assert model.ln_final is None and model.unembed.bias is not None
    gpt2 = gptviz.preset("gpt2")
    assert (gpt2.pos, gpt2.norm, gpt2.act, gpt2.tie_weights) == ("learned", "pre", "gelu_new", True)
    with pytest.raises(ValueError):
        gptviz.GPTConfig(d_model=10, n_head=3)


def test_dropout_matches_nn_dropout_in_expectation_and_is_off_in_eval():
    from gptviz.model import Dropout

    x = torch.ones(200_000)
    drop = Dropout(0.2).train()
    y = drop(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.8, abs=0.005)  # share zeroed ~ p
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.8))  # survivors scaled like nn.Dropout
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # same expectation
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    assert torch.equal(a, drop(x))  # masks follow torch's seed (training is reproducible)
    assert drop.eval()(x) is x and Dropout(0.0).train()(x) is x


def test_attention_dropout_can_be_turned_off_alone():
    from gptviz.config import GPTConfig

    cfg = GPTConfig(vocab_size=50, n_layer=1, n_head=2, d_model=8, d_mlp=16, n_ctx=16, dropout=0.3)
    assert cfg.attn_p == 0.3  # default: same as dropout (older cards have no attn_dropout)
    off = GPTConfig.from_dict({**cfg.to_dict(), "attn_dropout": 0.0})
    assert off.attn_p == 0.0 and off.dropout == 0.3
    model = GPT(off.replace(dropout=0.0)).train()  # no residual dropout either: training is exact
    ids = torch.randint(0, 50, (2, 16))
    with written_out(model):
        explicit = model(ids)
    torch.testing.assert_close(model(ids, fused=True), explicit, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="attn_dropout"):
        GPTConfig(attn_dropout=1.0)
