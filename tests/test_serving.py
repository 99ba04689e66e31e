"""Served mode (gptviz.serving): a link or the sidebar can name only offered models; everything
else gets one refusal that reveals nothing about the server's files, and the loader never runs.

Also the byte-bounded model cache: it evicts by size, and eviction really drops the model."""

from __future__ import annotations

import gc
import json
import os
import weakref

import pytest
import torch

import gptviz
from gptviz import serving
from gptviz.cache import ByteLRU, model_nbytes
from gptviz.checkpoints import bundled_snapshots, save_checkpoint
from gptviz.config import preset
from gptviz.model import GPT
from tests.apptest_utils import open_page
from tests.conftest import tiny_model


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding one tiny GPT-2 under the name ``org/tiny-cached``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cache = tmp_path / "hub"
    snap = cache / "models--org--tiny-cached" / "snapshots" / "abc"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)).save_pretrained(snap)
    (cache / "models--org--tiny-cached" / "refs").mkdir()
    (cache / "models--org--tiny-cached" / "refs" / "main").write_text("abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def folder(tmp_path):
    """A real, loadable checkpoint folder outside any allowlist."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path / "secret-model"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)).save_pretrained(path)
    return path


def probes(folder) -> list[str]:
    return ["/etc", "/nonexistent", "../", "../../etc/passwd", str(folder), "someorg/not-cached-model", "~"]


# --- the policy, without Streamlit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "address", "mode"),
    [
        (None, None, "served"),  # streamlit run app.py: every interface
        (None, "", "served"),
        (None, "0.0.0.0", "served"),
        (None, "192.168.1.5", "served"),
        (None, "127.0.0.1", "local"),
        (None, "localhost", "local"),
        (None, "::1", "local"),
        ("local", "0.0.0.0", "local"),  # explicit wins
        ("served", "127.0.0.1", "served"),
    ],
)
def test_mode_follows_the_address_unless_set(env, address, mode):
    assert serving.resolve_mode(env, address) == mode


def test_a_bad_mode_is_an_error():
    with pytest.raises(ValueError, match="GPTVIZ_MODE"):
        serving.resolve_mode("public", None)


def test_every_refused_spec_gets_the_same_message(folder, hf_cache):
    messages = set()
    for spec in probes(folder):
        with pytest.raises(serving.RefusedSpec) as err:
            serving.resolve_spec(spec, serving.SERVED, ())
        messages.add(str(err.value))
    assert messages == {serving.REFUSAL}
    for part in ("/etc", "secret-model", "exist", "folder", "config"):
        assert part not in serving.REFUSAL


def test_offered_specs_pass_served_mode(folder, hf_cache):
    allow = serving.parse_allowlist(f"bundled:*, {folder} ,org/tiny-cached")
    for spec in ["bundled:gpt2-style", "bundled:seed", "org/tiny-cached", str(folder), f"{folder}/"]:
        assert serving.resolve_spec(spec, serving.SERVED, allow) == spec
    snaps = bundled_snapshots("gpt2-style")
    if snaps:
        assert (
            serving.resolve_spec(f"bundled:gpt2-style@{snaps[0]}", serving.SERVED) == f"bundled:gpt2-style@{snaps[0]}"
        )
    with pytest.raises(serving.RefusedSpec):
        serving.resolve_spec("bundled:gpt2-style@123456789", serving.SERVED)


def test_cached_models_are_offered_by_default_but_not_past_an_allowlist(hf_cache):
    assert "org/tiny-cached" in serving.offered(())
    assert serving.resolve_spec("org/tiny-cached", serving.SERVED, ()) == "org/tiny-cached"
    assert "org/tiny-cached" not in serving.offered(("bundled:*",))
    with pytest.raises(serving.RefusedSpec):
        serving.resolve_spec("org/tiny-cached", serving.SERVED, ("bundled:*",))
    assert serving.resolve_spec("org/tiny-cached", serving.SERVED, ("cached:*",)) == "org/tiny-cached"


def test_local_mode_passes_everything_through(folder):
    for spec in probes(folder):
        assert serving.resolve_spec(spec, serving.LOCAL, ()) == spec


# --- the app, as a visitor's link ----------------------------------------------------------------


@pytest.fixture
def loader_calls(monkeypatch):
    """Every spec handed to the model loader (the app's cache calls ``gptviz.load_model``)."""
    from gptviz.ui import caching

    calls: list[str] = []
    real = gptviz.load_model

    def spy(spec):
        calls.append(str(spec))
        return real(spec)

    monkeypatch.setattr(gptviz, "load_model", spy)
    caching._model_cache().clear()
    yield calls
    caching._model_cache().clear()


def _sidebar_errors(at) -> list[str]:
    return [e.value for e in at.sidebar.error]


def test_served_links_to_other_models_are_refused_alike_and_load_nothing(folder, hf_cache, loader_calls, monkeypatch):
    monkeypatch.setenv("GPTVIZ_MODE", "served")
    seen = set()
    for spec in probes(folder):
        at = open_page(model=spec)
        assert not at.exception, [e.value for e in at.exception]
        errors = _sidebar_errors(at)
        assert len(errors) == 1, (spec, errors)
        seen.add(errors[0])
        assert at.query_params["model"] == "bundled:gpt2-style"
        assert "Other: a folder or file…" not in at.sidebar.selectbox[0].options
        assert not [b for b in at.sidebar.button if "Hugging Face" in b.label]  # no download offer
    assert len(seen) == 1, seen
    assert all(part not in next(iter(seen)) for part in ("No such", "config.json", "not a checkpoint"))
    assert set(loader_calls) == {"bundled:gpt2-style"}  # the refused specs never reached it


def test_served_mode_loads_the_cached_and_allowlisted(folder, hf_cache, loader_calls, monkeypatch):
    monkeypatch.setenv("GPTVIZ_MODE", "served")
    monkeypatch.setenv("GPTVIZ_MODELS", f"bundled:*,cached:*,{folder}")
    for spec in ["org/tiny-cached", str(folder)]:
        at = open_page(model=spec)
        assert not at.exception and not _sidebar_errors(at), _sidebar_errors(at)
        assert at.query_params["model"] == spec
        assert spec in at.sidebar.selectbox[0].options
    assert loader_calls == ["org/tiny-cached", str(folder)]


def test_without_a_mode_apptest_is_served(folder, loader_calls, monkeypatch):
    """AppTest, like ``streamlit run app.py`` without an address, has no ``server.address``."""
    monkeypatch.delenv("GPTVIZ_MODE")
    at = open_page(model=str(folder))
    assert len(_sidebar_errors(at)) == 1
    assert str(folder) not in loader_calls


def test_local_mode_still_opens_a_folder_by_link(folder, loader_calls):
    at = open_page(model=str(folder))
    assert not _sidebar_errors(at)
    assert at.query_params["model"] == str(folder)
    assert loader_calls == [str(folder)]


# --- the byte-bounded model cache ----------------------------------------------------------------


def test_model_nbytes_counts_parameters_and_buffers_once():
    model = tiny_model("gpt2")
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in model.state_dict().values()}
    assert model_nbytes(model) == sum(storages.values())
    params = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights once
    assert params <= model_nbytes(model)


def test_model_cache_evicts_by_size_and_frees_the_model():
    models = [tiny_model("gpt2", seed=s) for s in range(4)]
    size = model_nbytes(models[0])
    cache: ByteLRU = ByteLRU(int(2.5 * size), model_nbytes)  # room for two
    refs = [weakref.ref(m) for m in models]
    for i, m in enumerate(models):
        assert cache.get_or_compute(f"m{i}", lambda m=m: m) is m
    assert cache.keys() == ["m2", "m3"]
    assert cache.total_bytes == 2 * size <= cache.max_bytes
    del models, m
    gc.collect()
    assert [r() is None for r in refs] == [True, True, False, False]  # evicted models are gone


def test_one_model_over_the_budget_stays_alone():
    small = tiny_model("gpt2")
    big = GPT(preset("gpt2", n_layer=4, n_head=4, d_model=32, d_mlp=64, n_ctx=64))
    assert model_nbytes(big) > model_nbytes(small)
    cache: ByteLRU = ByteLRU(model_nbytes(small) + 1, model_nbytes)
    cache.get_or_compute("small", lambda: small)
    cache.get_or_compute("big", lambda: big)
    assert cache.keys() == ["big"]


def test_app_model_cache_is_bounded_by_bytes(tmp_path, monkeypatch):
    """Through the app's own loader: a budget of two tiny models keeps the last two."""
    from gptviz.ui import caching

    paths = []
    for s in range(3):
        save_checkpoint(tiny_model("gpt2", seed=s), tmp_path / f"m{s}.safetensors")
        paths.append(str(tmp_path / f"m{s}.safetensors"))
    size = model_nbytes(gptviz.load_model(paths[0]))
    cache = ByteLRU(int(2.5 * size), model_nbytes)
    monkeypatch.setattr(caching, "_model_cache", lambda: cache)
    first = weakref.ref(caching.load_model(paths[0]))
    for p in paths[1:]:
        caching.load_model(p)
    gc.collect()
    assert cache.keys() == paths[1:] and first() is None
    assert json.dumps(cache.keys())  # plain specs as keys


# --- the launchers ---------------------------------------------------------------------------------


def test_gptviz_serve_is_served_mode_with_the_allowlist(monkeypatch):
    import gptviz.launch
    from gptviz.__main__ import main

    ran = []
    monkeypatch.setattr(gptviz.launch, "_exec", lambda cmd: ran.append(cmd) or 0)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the launcher's variables stay in this test
    assert main(["serve", "--models", "bundled:*,gpt2", "--server.port", "8601"]) == 0
    assert ran[0][1:3] == ["-m", "gptviz.launch"] and ran[0][-2:] == ["--server.port", "8601"]
    assert os.environ["GPTVIZ_MODE"] == "served" and os.environ["GPTVIZ_MODELS"] == "bundled:*,gpt2"
    assert os.environ["GPTVIZ_NO_DOWNLOADS"] == "1"


def test_gptviz_app_binds_loopback_unless_told(monkeypatch):
    import gptviz.launch

    monkeypatch.setattr(gptviz.launch, "_exec", lambda cmd: 0)
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "STREAMLIT_SERVER_ADDRESS"})
    gptviz.launch.run_app([])
    assert os.environ["STREAMLIT_SERVER_ADDRESS"] == "127.0.0.1"
    assert serving.resolve_mode(None, os.environ["STREAMLIT_SERVER_ADDRESS"]) == serving.LOCAL
    del os.environ["STREAMLIT_SERVER_ADDRESS"]
    gptviz.launch.run_app(["--server.address", "0.0.0.0"])
    assert "STREAMLIT_SERVER_ADDRESS" not in os.environ


def test_a_link_asking_for_a_huge_continuation_is_cut_to_the_cap():
    """A link naming thousands of generated tokens must not hold the server for minutes."""
    cap = serving.MAX_GENERATED_TOKENS
    at = open_page("6_Output.py", out_generated=",".join(["42"] * (cap * 20)), timeout=60)
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"first {cap} tokens" in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.query_params["out_generated"].count(",") == cap - 1
    assert at.button(key="out_next").disabled


def test_the_launched_server_skips_streamlits_gc_after_every_run_and_watches_no_files(monkeypatch):
    """``gc.collect(2)`` after every script run was 46% of the served app's CPU under load: the
    launchers turn it off (and the file watcher) through the variables Streamlit's command line
    reads for those options, which hold wherever the server starts; the repository's
    config.toml turns it off for a bare ``streamlit run app.py``."""
    import tomllib
    from pathlib import Path

    from streamlit import config

    import gptviz.launch

    options = {"runner.postScriptGC": "false", "server.fileWatcherType": "none"}
    names = {config._config_options_template[o].env_var: v for o, v in options.items()}
    for name in names:  # absent before, and removed again after the test
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    gptviz.launch.streamlit_env()
    assert {n: os.environ.get(n) for n in names} == names
    toml = tomllib.loads((Path(__file__).parents[1] / ".streamlit" / "config.toml").read_text())
    assert toml["runner"]["postScriptGC"] is False
