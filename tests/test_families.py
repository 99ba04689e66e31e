"""Every supported family loads through load_model and matches Hugging Face's eager forward.

Tiny random checkpoints (tests/hf_families.py): grouped- and multi-query attention, Llama 3's
rope_scaling, Qwen2's q/k/v biases, Qwen3's q/k norms and head_dim != d_model / n_head,
GPT-NeoX's partial rotary and parallel blocks. HF applies rotary positions in a function, not a
module, so the test wraps ``modeling_<family>.apply_rotary_pos_emb`` to see the rotated q/k.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

import gptviz
from gptviz.hooks import hook_name
from tests.conftest import written_out
from tests.hf_families import FAMILY_KINDS, TEXT, make_family_model

transformers = pytest.importorskip("transformers")
MODULE = {"llama3": "llama"}


@pytest.fixture(scope="module", params=FAMILY_KINDS)
def family(request, tmp_path_factory):
    kind = request.param
    folder = tmp_path_factory.mktemp(kind)
    hf = make_family_model(kind, folder)
    return kind, folder, hf


def hf_reference(kind, hf, ids):
    """HF's eager outputs, plus the rotated q and k of every layer ([H, T, Dh] each)."""
    module = importlib.import_module(f"transformers.models.{MODULE.get(kind, kind)}.modeling_{MODULE.get(kind, kind)}")
    original, rotated = module.apply_rotary_pos_emb, []

    def spy(q, k, *args, **kwargs):
        out = original(q, k, *args, **kwargs)
        rotated.append((out[0][0].detach().clone(), out[1][0].detach().clone()))
        return out

    module.apply_rotary_pos_emb = spy
    try:
        with torch.no_grad():
            out = hf(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    finally:
        module.apply_rotary_pos_emb = original
    return out, rotated


def test_matches_hugging_face_eager(family):
    kind, folder, hf = family
    model = gptviz.load_model(folder)
    trace = gptviz.run(model, TEXT, precision="full")
    ids = [int(i) for i in trace.ids]
    assert ids == gptviz.get_tokenizer(str(folder)).encode(TEXT)
    out, rotated = hf_reference(kind, hf, ids)
    cfg = model.cfg
    np.testing.assert_allclose(trace["hook_logits"], out.logits[0].numpy(), atol=1e-4, rtol=0)
    assert len(rotated) == cfg.n_layer and len(out.attentions) == cfg.n_layer
    for i in range(cfg.n_layer):
        np.testing.assert_allclose(trace["resid_pre", i], out.hidden_states[i][0].numpy(), atol=1e-4)
        np.testing.assert_allclose(trace["pattern", i], out.attentions[i][0].numpy(), atol=1e-4)
        q, k = rotated[i]  # [H, T, Dh], [K, T, Dh]
        np.testing.assert_allclose(trace["rot_q", i], q.transpose(0, 1).numpy(), atol=1e-4)
        np.testing.assert_allclose(trace["rot_k", i], k.transpose(0, 1).numpy(), atol=1e-4)
        assert trace["k", i].shape == (len(ids), cfg.kv_heads, cfg.d_head)
    np.testing.assert_allclose(trace["ln_final.hook_normalized"], out.hidden_states[-1][0].numpy(), atol=1e-4)
    assert "hook_pos_embed" not in trace


def test_family_config_is_read(family):
    kind, folder, hf = family
    cfg = gptviz.load_model(folder).cfg
    expect = {
        "llama": dict(n_kv_heads=2, norm_kind="rmsnorm", ffn="gated", qk_norm=False, parallel=False),
        "llama3": dict(n_kv_heads=1, tie_weights=True),
        "mistral": dict(n_kv_heads=2),
        "qwen2": dict(qkv_bias=True, bias=False),
        "qwen3": dict(qk_norm=True, head_dim=24),
        "gpt_neox": dict(rotary_dim=4, parallel=True, norm_kind="layernorm", ffn="mlp", tie_weights=False),
    }[kind]
    assert {k: getattr(cfg, k) for k in expect} == expect
    assert cfg.pos == "rotary"
    assert (cfg.rope_scaling is not None) == (kind == "llama3")


def test_compact_trace_equals_full(family):
    """Every hook of the compact trace (float16 sets, scores and patterns derived from q and k,
    the forward's attention fused) equals the full one's (attention written out)."""
    _, folder, _ = family
    model = gptviz.load_model(folder)
    full = gptviz.run(model, TEXT, precision="full")
    compact = gptviz.run(model, TEXT, precision="compact")
    assert sorted(compact.keys()) == sorted(full.keys())
    for name in full.keys():
        a, b = np.asarray(compact[name], dtype=np.float32), np.asarray(full[name], dtype=np.float32)
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, atol=2e-3 * scale, rtol=0, err_msg=name)
    half = ["pre", "post"] + (["pre_linear"] if model.cfg.ffn == "gated" else [])
    assert all(compact[kind, 0].dtype == np.float16 for kind in half)
    for layer in range(model.cfg.n_layer):  # derived from q and k in float32, not stored
        assert hook_name("pattern", layer) not in compact.store
        np.testing.assert_allclose(compact["pattern", layer], full["pattern", layer], atol=1e-5, rtol=0)
        np.testing.assert_allclose(compact["scores", layer], full["scores", layer], atol=1e-4, rtol=1e-5)
        z = np.einsum(
            "hqk,khd->qhd",
            compact["pattern", layer],
            np.repeat(compact["v", layer], model.cfg.n_head // model.cfg.kv_heads, 1),
        )
        np.testing.assert_allclose(compact["z", layer], z, atol=1e-5)  # what the fused kernel summed
        for h in range(model.cfg.n_head):
            np.testing.assert_array_equal(compact.pattern(layer, h), compact["pattern", layer][h])
        np.testing.assert_allclose(compact.pattern_row(layer, 3), full["pattern", layer][:, 3, :4], atol=1e-5)


def test_kv_cache_equals_recomputing(family):
    """Feeding tokens one by one through a KVCache gives the logits of the whole prompt at once."""
    _, folder, _ = family
    model = gptviz.load_model(folder)
    ids = torch.tensor([gptviz.get_tokenizer(str(folder)).encode(TEXT)])
    with torch.no_grad():
        whole = model(ids)
        cache = gptviz.model.KVCache()
        first = model(ids[:, :5], cache=cache)
        steps = [model(ids[:, t : t + 1], cache=cache) for t in range(5, ids.shape[1])]
    np.testing.assert_allclose(torch.cat([first, *steps], 1).numpy(), whole.numpy(), atol=1e-4)
    assert cache.length == ids.shape[1]


def test_fused_path_equals_explicit(family):
    """The training path (SDPA with grouped K/V heads, fused norms) and the unhooked forward
    (SDPA, written-out norms) compute the written-out attention's logits."""
    _, folder, _ = family
    model = gptviz.load_model(folder)
    ids = torch.tensor([gptviz.get_tokenizer(str(folder)).encode(TEXT)])
    with torch.no_grad(), written_out(model):
        explicit = model(ids).numpy()
    with torch.no_grad():
        np.testing.assert_allclose(model(ids, fused=True).numpy(), explicit, atol=1e-4)
        np.testing.assert_allclose(model(ids).numpy(), explicit, atol=1e-4)  # unhooked: fused attention


def _config_folder(tmp_path, **fields):
    import json

    from tests.hf_families import tokenizer_json

    base = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "vocab_size": 512,
        "max_position_embeddings": 64,
    }
    base.update(fields)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in base.items() if v is not None}))
    (tmp_path / "tokenizer.json").write_text(tokenizer_json())
    return tmp_path


@pytest.fixture
def nothing_built(monkeypatch):
    """Fails the test if a model is built anywhere but on the meta device (no allocation)."""
    from gptviz import checkpoints

    real = checkpoints.GPT

    def spy(cfg):
        assert torch.empty(0).device.type == "meta", "a model was allocated"
        return real(cfg)

    monkeypatch.setattr(checkpoints, "GPT", spy)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(model_type="mistral", sliding_window=16), "sliding_window = 16 is in effect and shorter than the 64"),
        (
            dict(model_type="qwen2", use_sliding_window=True, sliding_window=32, max_window_layers=0),
            "sliding_window = 32",
        ),
        (dict(model_type="qwen3", layer_types=["sliding_attention"] * 2, sliding_window=8), "sliding_window = 8"),
        (dict(model_type="qwen2_moe"), "model_type 'qwen2_moe' is not supported; supported: gpt2"),
        (dict(model_type="mixtral"), "model_type 'mixtral' is not supported"),
        (dict(num_local_experts=8), "mixture of experts \\(num_local_experts = 8\\)"),
        (
            dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}),
            "rope_type 'yarn' is not supported",
        ),
        (dict(model_type="gpt_neox", rotary_pct=0.1), "rotary dimension 1 .* must be even"),
        (dict(hidden_act="gelu_fast"), "activation 'gelu_fast'"),
        (dict(hidden_size=65536, intermediate_size=262144, num_hidden_layers=64), "over this server's model budget"),
    ],
)
def test_unsupported_configs_are_refused_before_allocating(tmp_path, nothing_built, fields, message):
    folder = _config_folder(tmp_path, **fields)
    with pytest.raises(gptviz.CheckpointError, match=message):
        gptviz.load_model(folder)


def test_windows_not_in_effect_load(tmp_path, nothing_built, monkeypatch):
    """Qwen2.5's window is off (use_sliding_window false); Mistral's is longer than analysed."""
    from gptviz.checkpoints import _hf_config

    qwen = _config_folder(tmp_path / "q", model_type="qwen2", sliding_window=32768, use_sliding_window=False)
    mistral = _config_folder(tmp_path / "m", model_type="mistral", sliding_window=4096)
    for folder in (qwen, mistral):
        assert _hf_config(folder)[0].n_ctx == 64


def test_context_is_capped_by_max_tokens(tmp_path, monkeypatch):
    from gptviz.checkpoints import _hf_config

    folder = _config_folder(tmp_path, max_position_embeddings=131072)
    assert _hf_config(folder)[0].n_ctx == 1024
    monkeypatch.setenv("GPTVIZ_MAX_TOKENS", "200")
    assert _hf_config(folder)[0].n_ctx == 200
    monkeypatch.setenv("GPTVIZ_MAX_TOKENS", "lots")
    with pytest.raises(gptviz.CheckpointError, match="GPTVIZ_MAX_TOKENS must be a positive integer"):
        _hf_config(folder)


REAL_CONFIGS = sorted(
    p.name for p in (Path(__file__).parent / "fixtures" / "hf_configs").glob("*.json") if ".original" not in p.name
)


@pytest.mark.parametrize("name", REAL_CONFIGS)
def test_shrunk_real_configs_load_in_their_hub_spelling(tmp_path, name):
    """The real config.json of SmolLM2-135M, Llama-3.2-1B, Qwen2.5-0.5B, Qwen3-0.6B and Pythia-70m
    (every field kept, sizes shrunk; tests/fixtures/hf_configs/SOURCES.md) in the Hub's spelling
    (rope_theta, rope_scaling, rotary_pct...), with random weights: our logits equal HF's."""
    import json

    from tests.hf_families import tokenizer_json

    text = (Path(__file__).parent / "fixtures" / "hf_configs" / name).read_text()
    hf_cfg = transformers.AutoConfig.for_model(**json.loads(text))
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * (0.3 if p.dim() == 1 else 0.05))
    hf.save_pretrained(tmp_path)  # in the config's torch_dtype (bfloat16 / float16): loaded as float32
    hf = hf.float()
    (tmp_path / "config.json").write_text(text)  # the Hub's spelling, not transformers 5's
    (tmp_path / "tokenizer.json").write_text(tokenizer_json())
    model = gptviz.load_model(tmp_path)
    ids = torch.tensor([gptviz.get_tokenizer(str(tmp_path)).encode(TEXT)])
    with torch.no_grad():
        np.testing.assert_allclose(model(ids).numpy(), hf(ids).logits.numpy(), atol=1e-4, rtol=0)
    raw = json.loads(text)
    assert model.cfg.n_ctx == min(raw["max_position_embeddings"], 1024)
    assert model.cfg.rope_theta == float(raw.get("rope_theta", raw.get("rotary_emb_base", 0)))
    assert (model.cfg.rope_scaling is not None) == bool(raw.get("rope_scaling"))
