"""The GPU paths against the CPU: every test here is skipped unless ``torch.cuda.is_available()``.

The same checkpoint is loaded twice, on the CPU and on ``cuda``, and everything a page reads must
agree: traces within 1e-4 (float16 arrays within one float16 step as well), seeded generation
giving the CPU's tokens, ablation and patching giving the CPU's numbers. Tiny models of GPT-2's
design and of a Llama-style one (rotary, RMSNorm, SwiGLU, grouped-query attention), so a run takes
seconds. TF32 matmuls are switched off for the comparisons (PyTorch's default for matmuls, made
explicit): they would round float32 products to 10 bits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model

import gptviz
from gptviz.analysis import Ablation
from gptviz.analysis import patching as pt
from gptviz.analysis.attention import induction_scores
from gptviz.analysis.attribution import integrated_gradients
from gptviz.analysis.embeddings import embedding_pca, nearest_tokens
from gptviz.analysis.flow import information_flow
from gptviz.analysis.generation import continuation_steps, generate, generate_cached
from gptviz.analysis.lens import direct_logit_attribution, logit_lens
from gptviz.checkpoints import save_checkpoint
from gptviz.evaluate import sample, token_nll_per_token
from gptviz.tokenizer import get_tokenizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICE = "cuda"
ATOL = 1e-4
TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
CLEAN = [464, 3797, 290, 1757, 1816, 284]
CORRUPT = [464, 3797, 290, 4502, 1816, 284]
KINDS = ["gpt2", "llama-gqa"]


@pytest.fixture(scope="module", autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cuda")
    out = {}
    for kind, model in (("gpt2", tiny_model("gpt2", seed=2)), ("llama-gqa", tiny_model("llama", seed=2, n_kv_heads=2))):
        out[kind] = str(folder / f"{kind}.safetensors")
        save_checkpoint(model, out[kind])
    return out


@pytest.fixture(scope="module")
def pairs(paths) -> dict[str, tuple[gptviz.GPT, gptviz.GPT]]:
    """``kind -> (cpu model, cuda model)``, both loaded from one checkpoint."""
    out = {}
    for kind, path in paths.items():
        cpu, gpu = gptviz.load_model(path), gptviz.load_model(path, device=DEVICE)
        assert cpu.device.type == "cpu" and gpu.device.type == "cuda" and gpu.dtype == torch.float32
        out[kind] = (cpu, gpu)
    return out


def assert_same_trace(a: gptviz.Trace, b: gptviz.Trace) -> None:
    assert a.keys() == b.keys()
    np.testing.assert_array_equal(a.ids, b.ids)
    for name in a.keys():
        x, y = a[name], b[name]
        assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype == np.float16:  # a 1e-6 difference may round to the neighbouring float16
            np.testing.assert_allclose(y.astype(np.float32), x.astype(np.float32), atol=ATOL, rtol=2e-3, err_msg=name)
        elif name == "hook_logits" and a.precision == "compact":  # float16 offsets from a float32 maximum
            np.testing.assert_allclose(y, x, atol=ATOL + 2e-3 * np.abs(x).max(), rtol=0, err_msg=name)
        else:
            np.testing.assert_allclose(y, x, atol=ATOL, rtol=0, err_msg=name)


@pytest.mark.parametrize("precision", ["compact", "full"])
@pytest.mark.parametrize("kind", KINDS)
def test_trace_on_cuda_equals_the_cpu_trace(pairs, kind, precision):
    cpu, gpu = pairs[kind]
    assert_same_trace(gptviz.run(cpu, TEXT, precision=precision), gptviz.run(gpu, TEXT, precision=precision))


@pytest.mark.parametrize("kind", KINDS)
def test_a_bfloat16_model_on_cuda_traces_to_host_float32_and_float16(paths, pairs, kind):
    cpu, _ = pairs[kind]
    gpu = gptviz.load_model(paths[kind], device=DEVICE, dtype="bfloat16")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.bfloat16
    for precision in ("compact", "full"):
        t, ref = gptviz.run(gpu, TEXT, precision=precision), gptviz.run(cpu, TEXT, precision=precision)
        assert {t[k].dtype for k in t.keys()} <= {np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int64)}
        np.testing.assert_allclose(t.logits(), ref.logits(), atol=0.05 * np.abs(ref.logits()).max() + 0.02, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_generation_gives_the_cpu_tokens(pairs, kind):
    cpu, gpu = pairs[kind]
    tok = get_tokenizer(cpu.cfg.tokenizer)
    for settings in ({"temperature": 1.0}, {"temperature": 0.7, "top_k": 50, "top_p": 0.9}, {"temperature": 0.0}):
        want = generate(cpu, tok, CLEAN, 12, seed=7, **settings)
        assert generate(gpu, tok, CLEAN, 12, seed=7, **settings) == want, settings
        assert generate_cached(gpu, tok, CLEAN, 12, seed=7, **settings) == want, settings
    a, b = continuation_steps(cpu, tok, CLEAN, want), continuation_steps(gpu, tok, CLEAN, want)
    for x, y in zip(a, b, strict=True):
        assert [c.id for c in x.candidates] == [c.id for c in y.candidates]
        np.testing.assert_allclose([c.prob for c in y.candidates], [c.prob for c in x.candidates], atol=ATOL)
    assert sample(gpu, tok, "ROMEO:", 8, seed=3) == sample(cpu, tok, "ROMEO:", 8, seed=3)
    np.testing.assert_allclose(token_nll_per_token(gpu, CLEAN * 3), token_nll_per_token(cpu, CLEAN * 3), atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_ablation_runs_and_matches_the_cpu(pairs, kind):
    cpu, gpu = pairs[kind]
    for mode in ("zero", "mean"):
        ablation = Ablation(heads=((0, 1), (1, 3)), neurons=((0, 5),), mode=mode)
        a = gptviz.run(cpu, TEXT, extra_hooks=ablation.hooks())
        b = gptviz.run(gpu, TEXT, extra_hooks=ablation.hooks())
        assert_same_trace(a, b)
        assert not np.allclose(a.logits(), gptviz.run(cpu, TEXT).logits(), atol=1e-6)  # it did something


@pytest.mark.parametrize("kind", KINDS)
def test_patching_runs_and_matches_the_cpu(pairs, kind):
    cpu, gpu = pairs[kind]
    metric = pt.default_metric(cpu, CLEAN, CORRUPT)
    assert pt.default_metric(gpu, CLEAN, CORRUPT) == metric
    for patch_kind in ("resid_pre", "head", "head_pos"):
        for direction in ("denoise", "noise"):
            a = pt.patch(cpu, CLEAN, CORRUPT, patch_kind, metric, direction)
            b = pt.patch(gpu, CLEAN, CORRUPT, patch_kind, metric, direction)
            np.testing.assert_allclose(b.raw, a.raw, atol=ATOL, rtol=0)
            assert b.raw.dtype == np.float64 and isinstance(b.values, np.ndarray)
    a = pt.attribution_patching(cpu, CLEAN, CORRUPT, "head", metric)
    b = pt.attribution_patching(gpu, CLEAN, CORRUPT, "head", metric)
    np.testing.assert_allclose(b.raw, a.raw, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_the_other_analyses_match_the_cpu(pairs, kind):
    cpu, gpu = pairs[kind]
    ta, tb = gptviz.run(cpu, TEXT), gptviz.run(gpu, TEXT)
    la, lb = logit_lens(cpu, ta), logit_lens(gpu, tb)
    np.testing.assert_allclose(lb.top_probs, la.top_probs, atol=ATOL)
    da, db = direct_logit_attribution(cpu, ta), direct_logit_attribution(gpu, tb)
    np.testing.assert_allclose(db.values, da.values, atol=ATOL)
    fa, fb = information_flow(cpu, CLEAN), information_flow(gpu, CLEAN)
    for field in ("attn", "attn_resid", "attn_bias", "mlp", "mlp_resid"):
        np.testing.assert_allclose(getattr(fb, field), getattr(fa, field), atol=ATOL, err_msg=field)
    ia, ib = integrated_gradients(cpu, CLEAN, 1110, steps=16), integrated_gradients(gpu, CLEAN, 1110, steps=16)
    np.testing.assert_allclose(ib.scores, ia.scores, atol=ATOL)
    np.testing.assert_allclose(induction_scores(gpu, n=8, batch=2), induction_scores(cpu, n=8, batch=2), atol=ATOL)
    vec = np.asarray(ta["hook_embed"][2])
    assert [i for i, _ in nearest_tokens(gpu, vec, k=5)] == [i for i, _ in nearest_tokens(cpu, vec, k=5)]
    np.testing.assert_allclose(
        np.abs(embedding_pca(gpu, CLEAN, 3)["coords"]), np.abs(embedding_pca(cpu, CLEAN, 3)["coords"]), atol=1e-3
    )
