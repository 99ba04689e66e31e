"""Where a model runs, checked on the CPU: ``load_model``'s ``device`` and ``dtype`` (resolved and
refused before any weight is read), a half-precision model's traces still plain host numpy, the
app reading ``GPTVIZ_DEVICE``/``GPTVIZ_DTYPE``, and the CLI flags that set them. The GPU itself is
covered by tests/test_cuda.py, skipped where there is none."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import tiny_model

import gptviz
from gptviz.analysis import patching as pt
from gptviz.analysis.embeddings import embedding_pca, nearest_tokens, positional_table
from gptviz.analysis.flow import information_flow
from gptviz.analysis.generation import CachedGeneration, continuation_steps, generate, next_logits
from gptviz.analysis.lens import direct_logit_attribution, logit_lens
from gptviz.cache import ByteLRU, model_nbytes
from gptviz.checkpoints import CheckpointError, resolve_device, resolve_dtype, save_checkpoint
from gptviz.tokenizer import get_tokenizer

CUDA = torch.cuda.is_available()
TEXT = "To be, or not to be, that is the question"
IDS = [464, 3797, 290, 1757, 1816, 284]
CORRUPT = [464, 3797, 290, 4502, 1816, 284]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Tiny checkpoints of GPT-2's design, the seed's (sinusoidal, untied) and a Llama-style
    rotary one with grouped-query attention."""
    folder = tmp_path_factory.mktemp("devices")
    out = {}
    for kind, changes in (("gpt2", {}), ("seed", {}), ("llama", {"n_kv_heads": 2})):
        path = folder / f"{kind}.safetensors"
        save_checkpoint(tiny_model(kind, seed=1, **changes), path)
        out[kind] = str(path)
    return out


# --- resolving the device and the dtype ----------------------------------------------------------


@pytest.mark.skipif(CUDA, reason="this machine has CUDA: auto means cuda here")
def test_auto_resolves_to_the_cpu_without_cuda(checkpoints):
    assert resolve_device("auto") == torch.device("cpu")
    model = gptviz.load_model(checkpoints["gpt2"], device="auto")
    assert model.device == torch.device("cpu") == model.embed.weight.device


def test_cpu_and_float32_are_the_default(checkpoints):
    model = gptviz.load_model(checkpoints["gpt2"])
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert resolve_device(None) == resolve_device("CPU ") == torch.device("cpu")
    assert resolve_dtype(None) == resolve_dtype("float32") == resolve_dtype(torch.float32) == torch.float32


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_is_a_clear_error_before_loading(device):
    with pytest.raises(CheckpointError, match=f"device '{device}'.*CUDA is not available"):
        gptviz.load_model("no-such-model-anywhere", device=device)  # the device is checked first


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu0", "mps", ""])
def test_a_name_that_is_no_usable_device_is_refused(device):
    with pytest.raises(CheckpointError, match=f"device {device!r} is not"):
        gptviz.load_model("no-such-model-anywhere", device=device)


@pytest.mark.parametrize("dtype", ["int8", "float64", "bf17", torch.int64, torch.float64])
def test_an_unsupported_dtype_is_refused(dtype):
    with pytest.raises(CheckpointError, match="dtype .* is not supported"):
        gptviz.load_model("no-such-model-anywhere", dtype=dtype)


def test_dtype_spellings():
    assert resolve_dtype("bf16") == resolve_dtype("torch.bfloat16") == resolve_dtype(torch.bfloat16) == torch.bfloat16
    assert resolve_dtype("half") == resolve_dtype("Float16") == torch.float16


# --- a half-precision model -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gpt2", "seed", "llama"])
def test_bfloat16_loads_runs_and_traces_are_float32_or_float16_numpy(checkpoints, kind):
    ref = gptviz.load_model(checkpoints[kind])
    model = gptviz.load_model(checkpoints[kind], dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and model.device == torch.device("cpu")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    if model.cfg.tie_weights:
        assert model.unembed.weight is model.embed.weight  # still one tensor
    if model.cfg.pos == "rotary":
        assert model.rotary.inv_freq.dtype == torch.float32  # angles are not rounded to bfloat16
    if model.cfg.pos == "sinusoidal":
        assert model.pe.dtype == torch.bfloat16  # added to the stream: its dtype
    for precision in ("compact", "full"):
        t32, t16 = gptviz.run(ref, TEXT, precision=precision), gptviz.run(model, TEXT, precision=precision)
        assert t16.keys() == t32.keys()
        for name in t16.keys():
            arr = t16[name]
            assert isinstance(arr, np.ndarray) and arr.dtype in (np.float32, np.float16, np.int64), name
            assert arr.dtype == t32[name].dtype and arr.shape == t32[name].shape, name
        scale = np.abs(t32["hook_logits"]).max()
        np.testing.assert_allclose(t16["hook_logits"], t32["hook_logits"], atol=0.05 * scale + 0.02, rtol=0)
        assert not np.allclose(t16["hook_logits"], t32["hook_logits"], atol=1e-6, rtol=0)  # it really ran in bf16


def test_float16_loads_and_runs(checkpoints):
    ref = gptviz.load_model(checkpoints["llama"])
    model = gptviz.load_model(checkpoints["llama"], dtype="float16")
    assert model.dtype == torch.float16
    t16, t32 = gptviz.run(model, TEXT), gptviz.run(ref, TEXT)
    assert {t16[k].dtype for k in t16.keys()} <= {np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int64)}
    np.testing.assert_allclose(t16.logits(), t32.logits(), atol=0.02, rtol=0)


def test_the_model_knows_its_device_and_dtype():
    model = tiny_model("gpt2")
    assert model.device == model.embed.weight.device == torch.device("cpu")
    assert model.dtype == torch.float32
    model.to(torch.bfloat16)
    assert model.dtype == torch.bfloat16


def test_analysis_runs_on_a_bfloat16_model_and_returns_float_numpy(checkpoints):
    """Every analysis that runs the model takes a half-precision one (what a GPU loads) and hands
    back host numpy; the numbers stay near float32's."""
    ref = gptviz.load_model(checkpoints["llama"])
    model = gptviz.load_model(checkpoints["llama"], dtype="bfloat16")
    tok = get_tokenizer(model.cfg.tokenizer)
    a, b = next_logits(model, IDS), next_logits(ref, IDS)
    assert a.dtype == np.float32 and np.abs(a - b).max() < 0.05
    run = CachedGeneration(model, IDS)
    np.testing.assert_allclose(run.next_logits(), a, atol=0.05)
    assert len(generate(model, tok, IDS, 3, seed=1)) == 3
    assert [s.chosen for s in continuation_steps(model, tok, IDS, [11, 12])] == [11, 12]
    metric = pt.default_metric(ref, IDS, CORRUPT)  # the same two tokens for both
    r16, r32 = pt.patch(model, IDS, CORRUPT, "resid_pre", metric), pt.patch(ref, IDS, CORRUPT, "resid_pre", metric)
    assert r16.raw.dtype == np.float64 and r16.raw.shape == r32.raw.shape
    assert np.abs(r16.raw - r32.raw).max() < 0.05 * max(1.0, np.abs(r32.raw).max())
    flow = information_flow(model, IDS)
    assert flow.attn.dtype == np.float32 and np.isfinite(flow.attn).all()
    trace = gptviz.run(model, TEXT)
    lens = logit_lens(model, trace)
    assert lens.top_probs.dtype == np.float32 and lens.top_ids.shape == (model.cfg.n_layer + 1, trace.n_tokens)
    dla = direct_logit_attribution(model, trace)
    assert abs(dla.total - dla.logit) < 0.05 * max(1.0, abs(dla.logit))
    near = nearest_tokens(model, np.asarray(trace["hook_embed"][0]), k=3)
    assert near[0][0] == int(trace.ids[0])  # a token's own embedding is its nearest
    assert embedding_pca(model, IDS, neighbours=2)["coords"].dtype == np.float32


def test_positional_table_of_a_bfloat16_model_is_float32_numpy(checkpoints):
    model = gptviz.load_model(checkpoints["gpt2"], dtype="bfloat16")
    table = positional_table(model, 8)
    assert table.dtype == np.float32 and table.shape == (8, model.cfg.d_model)


# --- the app: GPTVIZ_DEVICE / GPTVIZ_DTYPE reach load_model ----------------------------------------


@pytest.fixture
def app_cache(monkeypatch):
    from gptviz.ui import caching

    cache: ByteLRU = ByteLRU(10**9, model_nbytes)
    monkeypatch.setattr(caching, "_model_cache", lambda: cache)
    monkeypatch.delenv("GPTVIZ_DEVICE", raising=False)
    monkeypatch.delenv("GPTVIZ_DTYPE", raising=False)
    return caching, cache


def test_the_app_loads_where_the_environment_says(checkpoints, app_cache, monkeypatch):
    caching, cache = app_cache
    spec = checkpoints["gpt2"]
    plain = caching.load_model(spec)
    assert plain.dtype == torch.float32 and cache.keys() == [spec]  # the default keys as before
    monkeypatch.setenv("GPTVIZ_DTYPE", "bfloat16")
    monkeypatch.setenv("GPTVIZ_DEVICE", "auto" if not CUDA else "cpu")
    half = caching.load_model(spec)
    assert half.dtype == torch.bfloat16 and half.device == torch.device("cpu")
    assert half is not plain and cache.keys() == [spec, (spec, "cpu", "bfloat16")]
    assert caching.load_model(spec) is half  # cached under its placement
    monkeypatch.delenv("GPTVIZ_DTYPE")
    assert caching.load_model(spec) is plain  # never a model placed another way


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
def test_the_app_reports_a_missing_gpu_as_a_loading_error(checkpoints, app_cache, monkeypatch):
    caching, cache = app_cache
    monkeypatch.setenv("GPTVIZ_DEVICE", "cuda")
    with pytest.raises(CheckpointError, match="'cuda'.*CUDA is not available"):
        caching.load_model(checkpoints["gpt2"])
    assert cache.keys() == []


def test_the_app_keys_traces_by_placement_too(checkpoints, app_cache, monkeypatch):
    caching, _ = app_cache
    spec = checkpoints["gpt2"]
    monkeypatch.setattr(caching, "_trace_cache", lambda cache=ByteLRU(10**9, lambda t: 1): cache)
    a = caching.get_trace(spec, TEXT, special=False)
    monkeypatch.setenv("GPTVIZ_DTYPE", "bfloat16")
    b = caching.get_trace(spec, TEXT, special=False)
    assert a is not b and not np.array_equal(a.logits(), b.logits())
    assert caching.get_trace(spec, TEXT, special=False) is b


# --- the command line --------------------------------------------------------------------------------


@pytest.fixture
def launched(monkeypatch):
    """What ``gptviz app/serve`` would exec, and the environment it would hand on (nothing starts)."""
    import gptviz.launch

    ran: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("GPTVIZ_D")})
    monkeypatch.setattr(gptviz.launch, "_exec", lambda cmd: ran.append((cmd, dict(os.environ))) or 0)
    return ran


@pytest.mark.parametrize("command", ["app", "serve"])
def test_device_flags_set_the_environment_of_the_streamlit_process(launched, command):
    from gptviz.__main__ import main

    assert main([command, "--device", "cpu", "--dtype", "bfloat16", "--server.port", "8600"]) == 0
    (cmd, env), *_ = launched
    assert env["GPTVIZ_DEVICE"] == "cpu" and env["GPTVIZ_DTYPE"] == "bfloat16"
    assert "--server.port" in cmd and "--device" not in cmd and "--dtype" not in cmd  # ours, not streamlit's


def test_no_flag_sets_no_variable(launched):
    from gptviz.__main__ import main

    assert main(["app"]) == 0
    (_, env), *_ = launched
    assert "GPTVIZ_DEVICE" not in env and "GPTVIZ_DTYPE" not in env


@pytest.mark.parametrize("flags", [["--device", "gpu"], ["--dtype", "int8"]] + ([["--device", "cuda"]] * (not CUDA)))
@pytest.mark.parametrize("command", ["app", "serve"])
def test_a_bad_device_stops_before_streamlit_starts(launched, command, flags, capsys):
    from gptviz.__main__ import main

    assert main([command, *flags]) == 2
    assert launched == [] and flags[1] in capsys.readouterr().err


def test_eval_takes_the_flags_and_refuses_a_bad_device(capsys):
    from gptviz.__main__ import build_parser, main

    args = build_parser().parse_args(["eval", "--device", "auto", "--dtype", "bf16"])
    assert (args.device, args.dtype) == ("auto", "bf16")
    assert main(["eval", "--device", "gpu"]) == 2
    assert "'gpu'" in capsys.readouterr().err
