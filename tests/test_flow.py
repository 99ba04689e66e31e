"""The information-flow graph against contributions and weights computed by hand (loops over
heads and positions, the proximity formula written out), a planted copying head, and the
pruning rules (tau = 0 keeps every edge)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model

import gptviz
from gptviz.analysis import flow as fl
from gptviz.config import preset
from gptviz.hooks import hook_name, hooks
from gptviz.model import GPT

IDS = [464, 3797, 290, 4502, 1816, 284]


def small(kind: str = "gpt2") -> GPT:
    torch.manual_seed(7)
    model = GPT(preset(kind, n_layer=1, n_head=2, d_model=8, d_mlp=16, n_ctx=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)  # large weights: the contributions are far from uniform
    return model


def by_hand(model: GPT, ids: list[int]) -> dict[str, np.ndarray]:
    t = gptviz.run(model, token_ids=ids, precision="full")
    cfg = model.cfg
    H, Dh, T = cfg.n_head, cfg.d_head, len(ids)
    W_O = model.blocks[0].attn.c_proj.weight.detach().numpy().astype(np.float64)
    b_O = model.blocks[0].attn.c_proj.bias.detach().numpy().astype(np.float64)
    A, v = t["pattern", 0].astype(np.float64), t["v", 0].astype(np.float64)
    x, a_out = t["resid_pre", 0].astype(np.float64), t["attn_out", 0].astype(np.float64)
    mid, m_out = t["resid_mid", 0].astype(np.float64), t["mlp_out", 0].astype(np.float64)

    def prox(e, y):
        return max(0.0, sum(abs(a) for a in y) - sum(abs(a - b) for a, b in zip(y, e, strict=True)))

    e = np.zeros((H, T, T, cfg.d_model))
    for h in range(H):
        for i in range(T):
            for j in range(T):
                e[h, i, j] = A[h, i, j] * (W_O[:, h * Dh : (h + 1) * Dh] @ v[j, h])
    out = {"e": e, "attn": np.zeros((H, T, T)), "attn_resid": np.zeros(T), "attn_bias": np.zeros(T)}
    out["mlp"], out["mlp_resid"] = np.zeros(T), np.zeros(T)
    for i in range(T):
        y = x[i] + a_out[i]
        p = {(h, j): prox(e[h, i, j], y) for h in range(H) for j in range(T)}
        pr, pb = prox(x[i], y), prox(b_O, y)
        z = sum(p.values()) + pr + pb
        for (h, j), w in p.items():
            out["attn"][h, i, j] = w / z
        out["attn_resid"][i], out["attn_bias"][i] = pr / z, pb / z
        y2 = mid[i] + m_out[i]
        q1, q2 = prox(mid[i], y2), prox(m_out[i], y2)
        out["mlp_resid"][i], out["mlp"][i] = q1 / (q1 + q2), q2 / (q1 + q2)
    out["a_out"], out["b_O"] = a_out, b_O
    return out


@pytest.mark.parametrize("kind", ["gpt2", "seed"])
@pytest.mark.parametrize("rows", [None, 3, 1])
def test_contributions_and_weights_equal_the_hand_computation(kind, rows, monkeypatch):
    """``rows``: query rows per block of contributions (None: the default, all 4 at once; 3:
    a block that does not divide the prompt; 1: one row at a time)."""
    model, ids = small(kind), IDS[:4]
    if rows is not None:
        monkeypatch.setattr(fl, "_CHUNK_ELEMENTS", rows * len(ids) * model.cfg.d_model)
    want = by_hand(model, ids)
    # the hand decomposition is the attention output: heads x sources, plus the bias once
    np.testing.assert_allclose(want["e"].sum(axis=(0, 2)) + want["b_O"], want["a_out"], atol=1e-5)
    got_e = fl.head_contributions(model, ids, 0).numpy()
    np.testing.assert_allclose(got_e, want["e"], atol=1e-5)
    g = fl.information_flow(model, ids)
    for name in ("attn", "attn_resid", "attn_bias", "mlp", "mlp_resid"):
        np.testing.assert_allclose(getattr(g, name)[0], want[name], atol=1e-5, err_msg=name)
    assert want["attn"].max() > 0.1 and (want["attn"] == 0).any()  # not a uniform graph
    total = g.attn.sum(axis=(1, 3)) + g.attn_resid + g.attn_bias
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    np.testing.assert_allclose(g.mlp + g.mlp_resid, 1.0, atol=1e-6)


def test_tau_zero_keeps_every_edge_and_pruning_keeps_a_connected_graph():
    model = tiny_model("gpt2")
    g = fl.information_flow(model, IDS)
    L, H, T = 2, 4, len(IDS)
    every = L * (H * T * (T + 1) // 2 + 3 * T)
    assert len(g.edges(0.0)) == every
    assert (np.triu(g.attn, 1) == 0).all()  # no head reads a later position
    # pruned from the last prediction: every edge below the last layer, and in the last layer
    # the edges into its last position (H heads x T sources + residual, then residual + FFN)
    assert len(g.graph(-1, 0.0)) == (L - 1) * (H * T * (T + 1) // 2 + 3 * T) + H * T + 3
    pruned = g.graph(-1, 0.05)
    assert 0 < len(pruned) < every and (pruned.weight >= 0.05).all()
    reached = {("resid", L, T - 1)} | set(zip(pruned.src_stage, pruned.src_layer, pruned.src_pos, strict=True))
    for dst in zip(pruned.dst_stage, pruned.dst_layer, pruned.dst_pos, strict=True):
        assert dst in reached  # every kept edge leads on toward the prediction
    early = g.graph(2, 0.0)
    assert early.dst_pos.max() == 2 and early.src_pos.max() == 2


def test_a_planted_copying_head_carries_the_strongest_path():
    """Head 0.2 copies position 1 into the last position, loudly (its values x50): the route
    to the last prediction must run through it, from the token it copies."""
    model = tiny_model("gpt2", seed=4)
    cfg = model.cfg
    D, Dh, head, src = cfg.d_model, cfg.d_head, 2, 1
    with torch.no_grad():
        model.blocks[0].attn.c_attn.weight[2 * D + head * Dh : 2 * D + (head + 1) * Dh] *= 50.0
    T = len(IDS)

    def plant(p: torch.Tensor, _name: str) -> torch.Tensor:
        p = p.clone()
        p[:, head, T - 1] = 0.0
        p[:, head, T - 1, src] = 1.0
        return p

    with hooks(model, [(hook_name("pattern", 0), plant)]):
        g = fl.information_flow(model, IDS)
    path = g.strongest_path(-1)
    assert path.iloc[0].src_pos == src and path.iloc[0].src_layer == 0
    heads = path[path.kind == "head"]
    assert [(r.layer, r.head, r.src_pos, r.dst_pos) for r in heads.itertuples()][0] == (0, head, src, T - 1)
    assert path.iloc[-1].dst_stage == "resid" and path.iloc[-1].dst_layer == cfg.n_layer
    assert path.iloc[-1].dst_pos == T - 1
    # each step starts where the last one ended
    for a, b in zip(path.itertuples(), path.iloc[1:].itertuples(), strict=False):
        assert (a.dst_stage, a.dst_layer, a.dst_pos) == (b.src_stage, b.src_layer, b.src_pos)
    # without the plant, the path does not start at that token through that head
    plain = fl.information_flow(tiny_model("gpt2", seed=4), IDS).strongest_path(-1)
    assert not ((plain.kind == "head") & (plain["head"] == head) & (plain.src_pos == src)).any()


def test_progress_is_reported_after_each_layer():
    model, calls = small("gpt2"), []
    fl.information_flow(model, IDS[:4], progress=lambda d, n: calls.append((d, n)))
    L = model.cfg.n_layer
    assert calls == [(i + 1, L) for i in range(L)]


def test_token_cap():
    with pytest.raises(fl.FlowError, match="at most 4"):
        fl.information_flow(tiny_model("gpt2"), IDS, max_tokens=4)
