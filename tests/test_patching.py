"""Activation patching against what must hold whatever the implementation: a full patch of the
first residual stream restores the clean run, nothing patched changes nothing, a planted model
whose answer only one head can move, batching that changes no number, and the gradient preview
exact where the metric is linear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model

from gptviz.analysis import patching as pt

CLEAN = [464, 3797, 290, 1757, 1816, 284]
CORRUPT = [464, 3797, 290, 4502, 1816, 284]  # one name replaced (a swap would cancel under
# near-uniform random attention), the same last token


def planted(kind: str = "gpt2", head: tuple[int, int] = (0, 1)):
    """A random model in which every head but ``head`` reads a constant value vector (its W_V
    rows zeroed, the bias kept): those heads' outputs are the same on every prompt, however
    they attend, so only ``head`` carries information between positions. The last token is
    the same in both prompts, so that head alone moves the answer."""
    model = tiny_model(kind, seed=3)
    cfg = model.cfg
    D, Dh = cfg.d_model, cfg.d_head
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            for h in range(cfg.n_head):
                rows = slice(2 * D + h * Dh, 2 * D + (h + 1) * Dh)
                if (layer, h) != head:
                    block.attn.c_attn.weight[rows] = 0.0
                else:  # loud enough to move the answer after the seed's post-LayerNorms too
                    block.attn.c_attn.weight[rows] *= 30.0
                    block.attn.c_proj.weight[:, h * Dh : (h + 1) * Dh] *= 30.0
    return model


def metric_for(model) -> pt.LogitDiff:
    """The answer pair that the two prompts separate most (so the gap is far from zero)."""
    logits = pt._forward(model, torch.tensor([CLEAN, CORRUPT]))[:, -1]
    d = logits[0] - logits[1]
    return pt.LogitDiff(int(d.argmax()), int(d.argmin()))


@pytest.mark.parametrize("kind", ["gpt2", "seed"])
def test_full_residual_patch_at_layer_0_restores_clean_and_nothing_changes_nothing(kind):
    model = tiny_model(kind)
    m = metric_for(model)
    full = pt.Patch("resid_pre", 0, None, None)  # every position
    r = pt.run_patches(model, CLEAN, CORRUPT, [full], metric=m)
    assert r.values[0] == pytest.approx(1.0, abs=1e-6)
    assert r.raw[0] == pytest.approx(r.clean, abs=1e-5)
    r = pt.run_patches(model, CLEAN, CORRUPT, [], metric=m)
    assert r.values.shape == (0,)
    # patching an unchanged position (the last token is the same in both prompts) at layer 0 is no patch
    same = pt.run_patches(model, CLEAN, CORRUPT, [pt.Patch("resid_pre", 0, None, (0,))], metric=m)
    assert same.values[0] == pytest.approx(0.0, abs=1e-6)
    assert r.clean != pytest.approx(r.corrupt)


def test_residual_map_at_layer_0_sums_over_changed_positions():
    """At layer 0 only the replaced position differs: patching any other position is 0; at
    layer 1, position 0 has seen only its own (unchanged) token."""
    model = tiny_model("gpt2")
    r = pt.patch(model, CLEAN, CORRUPT, "resid_pre", metric=metric_for(model))
    assert r.values.shape == (2, 6)
    for p in (0, 1, 2, 4, 5):
        assert r.values[0, p] == pytest.approx(0.0, abs=1e-6)
    assert r.values[1, 0] == pytest.approx(0.0, abs=1e-6)  # position 0 has only seen itself
    assert r.values[0, 3] == pytest.approx(1.0, abs=1e-5)  # the one difference, restored


@pytest.mark.parametrize("kind", ["gpt2", "seed"])
def test_planted_head_alone_moves_the_answer_and_noising_mirrors_denoising(kind):
    model = planted(kind, head=(0, 1))
    m = metric_for(model)
    den = pt.patch(model, CLEAN, CORRUPT, "head", metric=m)
    noi = pt.patch(model, CLEAN, CORRUPT, "head", metric=m, direction="noise")
    want = np.zeros((2, 4))
    want[0, 1] = 1.0
    np.testing.assert_allclose(den.values, want, atol=1e-5)
    np.testing.assert_allclose(noi.values, want, atol=1e-5)
    # each is within 1e-5 of the answer; fused attention's float32 rounding differs with the batch
    # size, so the two directions may sit on opposite sides of it
    np.testing.assert_allclose(noi.values, den.values, atol=2e-5)
    assert abs(den.clean - den.corrupt) > 1e-3  # the planted head does move the answer
    # per position: only the planted head, and only where the prompts differ, can matter at layer 0
    hp = pt.patch(model, CLEAN, CORRUPT, "head_pos", metric=m)
    assert hp.values.shape == (2, 4, 6)
    others = np.ones_like(hp.values, dtype=bool)
    others[0, 1] = False
    np.testing.assert_allclose(hp.values[others], 0.0, atol=1e-5)
    assert np.abs(hp.values[0, 1]).max() > 0.05


@pytest.mark.parametrize("kind", pt.KINDS)
def test_batched_equals_one_at_a_time(kind):
    model = tiny_model("gpt2", seed=1)
    m = metric_for(model)
    calls = []
    batched = pt.patch(model, CLEAN, CORRUPT, kind, metric=m, batch_size=7, progress=lambda d, t: calls.append((d, t)))
    single = pt.patch(model, CLEAN, CORRUPT, kind, metric=m, batch_size=1)
    np.testing.assert_allclose(batched.raw, single.raw, atol=1e-5, rtol=0)
    np.testing.assert_allclose(batched.values, single.values, atol=1e-5, rtol=0)
    n = batched.values.size
    assert calls[-1] == (n, n) and len(calls) == -(-n // 7)
    assert batched.work == n + 2


def test_different_token_counts_say_both_counts():
    model = tiny_model("gpt2")
    with pytest.raises(pt.TokenCountMismatch, match=r"6 tokens .* 5"):
        pt.patch(model, CLEAN, CORRUPT[:5])


def test_work_cap_refuses_big_requests():
    model = tiny_model("gpt2")
    need = pt.work("head_pos", 2, 4, 6)
    assert need == 2 * 4 * 6 + 2
    with pytest.raises(pt.WorkCapError, match="cap of 10"):
        pt.patch(model, CLEAN, CORRUPT, "head_pos", max_work=10)
    assert pt.work("head_pos", 12, 12, 20) <= pt.MAX_WORK < pt.work("head_pos", 12, 12, 64)


def test_attribution_patching_is_exact_where_the_metric_is_linear():
    """Patching a head's output on the planted post-LN-free path: at the last layer, the logit
    difference of a model without final LayerNorm is linear in the last residual stream, so
    the gradient estimate of a last-layer residual patch equals the exact patch."""
    model = tiny_model("gpt2", seed=2)
    model.ln_final = None  # the logits are then linear in the last layer's mlp_out
    m = metric_for(model)
    exact = pt.patch(model, CLEAN, CORRUPT, "mlp_out", metric=m)
    approx = pt.attribution_patching(model, CLEAN, CORRUPT, "mlp_out", metric=m)
    np.testing.assert_allclose(approx.values[-1], exact.values[-1], atol=1e-4)
    agree = pt.agreement(exact, approx)
    assert agree["pearson"] > 0.5
    for kind in pt.KINDS:
        a = pt.attribution_patching(tiny_model("gpt2"), CLEAN, CORRUPT, kind)
        assert a.values.shape == pt.grid_shape(kind, 2, 4, 6)
        assert np.isfinite(a.values).all()


def test_frame_has_one_row_per_patch():
    model = tiny_model("gpt2")
    r = pt.patch(model, CLEAN, CORRUPT, "head", metric=metric_for(model))
    df = r.frame()
    assert list(df.columns) == ["layer", "head", "value", "raw"]
    assert len(df) == 8 and df.loc[5, "value"] == pytest.approx(r.values[1, 1])
