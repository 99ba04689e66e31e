"""A tiny random GPT-2 written by Hugging Face loads through load_model and matches HF."""

import shutil

import numpy as np
import pytest
import torch

import gptviz
from gptviz.checkpoints import CheckpointError, cached_gpt2_models

transformers = pytest.importorskip("transformers")
TEXT = "Hello, world! The quick brown fox jumps over the lazy dog."


def make_hf_gpt2(folder, seed=0, safetensors=True):
    """Random tiny GPT-2 with perturbed LayerNorms (so a wrong mapping cannot hide)."""
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=50257, n_positions=64, n_embd=32, n_layer=3, n_head=4, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln_" in name:
                p.add_(torch.randn_like(p) * 0.3)
            elif name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(folder)
    if not safetensors:  # the legacy pickle-free-to-read layout: pytorch_model.bin
        (folder / "model.safetensors").unlink()
        torch.save(hf.state_dict(), folder / "pytorch_model.bin")
    return hf


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    make_hf_gpt2(folder)
    return folder


def hf_outputs(folder, attn):
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation=attn).eval()
    captured = {}
    handles = [
        b.attn.c_attn.register_forward_hook(lambda m, i, o, k=f"qkv{j}": captured.__setitem__(k, o))
        for j, b in enumerate(hf.transformer.h)
    ]
    handles += [
        b.mlp.act.register_forward_hook(lambda m, i, o, k=f"act{j}": captured.__setitem__(k, o))
        for j, b in enumerate(hf.transformer.h)
    ]
    ids = torch.tensor([gptviz.get_tokenizer("gpt2").encode(TEXT)])
    with torch.no_grad():
        out = hf(ids, output_attentions=attn == "eager", output_hidden_states=True)
    for h in handles:
        h.remove()
    return out, captured


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_logits_match_hugging_face(hf_folder, attn):
    out, _ = hf_outputs(hf_folder, attn)
    trace = gptviz.run(gptviz.load_model(hf_folder), TEXT, precision="full")
    np.testing.assert_allclose(trace["hook_logits"], out.logits[0].numpy(), atol=1e-4, rtol=0)


def test_every_activation_matches_hugging_face(hf_folder):
    out, captured = hf_outputs(hf_folder, "eager")
    model = gptviz.load_model(hf_folder)
    trace = gptviz.run(model, TEXT, precision="full")
    cfg = model.cfg
    assert len(out.attentions) == cfg.n_layer  # eager returns one pattern per layer
    T = trace.n_tokens
    for i in range(cfg.n_layer):
        np.testing.assert_allclose(trace["pattern", i], out.attentions[i][0].numpy(), atol=1e-4)
        np.testing.assert_allclose(trace["resid_pre", i], out.hidden_states[i][0].numpy(), atol=1e-4)
        q, k, v = captured[f"qkv{i}"][0].split(cfg.d_model, -1)
        for name, ref in (("q", q), ("k", k), ("v", v)):
            np.testing.assert_allclose(trace[name, i], ref.view(T, cfg.n_head, cfg.d_head).numpy(), atol=1e-4)
        np.testing.assert_allclose(trace["post", i], captured[f"act{i}"][0].numpy(), atol=1e-4)
    # HF's last hidden state is after the final LayerNorm
    np.testing.assert_allclose(trace["ln_final.hook_normalized"], out.hidden_states[-1][0].numpy(), atol=1e-4)


def test_loads_pytorch_bin_and_hf_cache_layout(tmp_path, monkeypatch, hf_folder):
    bin_folder = tmp_path / "bin"
    hf = make_hf_gpt2(bin_folder, seed=1, safetensors=False)
    assert (bin_folder / "pytorch_model.bin").exists()
    ids = torch.tensor([[15496, 11, 995, 0]])
    with torch.no_grad():
        ref = hf(ids).logits[0].numpy()
    ours = gptviz.load_model(bin_folder)
    with torch.no_grad():
        np.testing.assert_allclose(ours(ids)[0].numpy(), ref, atol=1e-4)

    # The same weights laid out as a Hugging Face cache snapshot, found by name.
    cache = tmp_path / "hf_home" / "hub"
    root = cache / "models--openai-community--gpt2"
    snap = root / "snapshots" / "abc123"
    shutil.copytree(hf_folder, snap)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert "gpt2" in cached_gpt2_models()
    by_name = gptviz.load_model("gpt2")
    by_folder = gptviz.load_model(hf_folder)
    assert by_name.name == "gpt2"
    for (ka, a), (kb, b) in zip(by_name.state_dict().items(), by_folder.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(a, b)


def test_unknown_name_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        gptviz.load_model("gpt2-nonexistent")
