"""Generation with a KV cache gives what recomputing the whole prompt gives: the same tokens for
the same seed, and the same logits (<= 1e-4) at every step, for a GPT-2-style model (learned
positions) and a rotary one (Llama recipe, grouped-query attention), across the context edge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gptviz
from gptviz.analysis import generation as gen
from gptviz.hooks import count_hooks
from tests.conftest import tiny_model, written_out

PROMPT = "ROMEO:\nBut, soft! what light through yonder window breaks?"


@pytest.fixture(scope="module")
def bundled():
    return gptviz.load_model("bundled:gpt2-style")


def _models(bundled):
    return {"gpt2-style": bundled, "llama-gqa": tiny_model("llama", n_kv_heads=2)}


@pytest.mark.parametrize("name", ["gpt2-style", "llama-gqa"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_generation_equals_recomputing(bundled, name, temperature):
    model = _models(bundled)[name]
    tok = gptviz.get_tokenizer(model.cfg.tokenizer)
    ids = tok.encode(PROMPT)
    logits: list[np.ndarray] = []
    cached = gen.generate_cached(model, tok, ids, 12, temperature, top_k=40, seed=7, logits_out=logits)
    recomputed = gen.generate(model, tok, ids, 12, temperature, top_k=40, seed=7)
    assert cached == recomputed
    # the reference: the explicit (non-fused, no cache) forward pass on the whole sequence
    full = ids + cached
    with torch.no_grad(), written_out(model):
        whole = model(torch.tensor([full]))[0, len(ids) - 1 : -1].numpy()
    np.testing.assert_allclose(np.stack(logits), whole, atol=1e-4)
    assert count_hooks(model) == 0


def test_each_step_runs_only_the_new_token(bundled):
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    ids = tok.encode(PROMPT)
    run = gen.CachedGeneration(bundled, ids)
    for s in range(5):
        run.step(tok, 1.0, rng=gen.rng_for(0, s))
    run.next_logits()
    assert run.computed == len(ids) + 5  # the prompt once, then one position per new token
    assert run.cache.length == len(ids) + 5
    assert [k.shape[1] for k in run.cache.keys] == [len(ids) + 5] * bundled.cfg.n_layer


def test_past_the_context_the_cache_is_rebuilt_on_the_window():
    """Beyond n_ctx positions the model reads the last n_ctx tokens (from position 0 again): the
    cached generator must give the same tokens and logits as recomputing that window."""
    torch.manual_seed(0)
    model = gptviz.GPT(gptviz.preset("llama", n_layer=2, n_head=4, n_kv_heads=2, d_model=32, d_mlp=64, n_ctx=24)).eval()
    tok = gptviz.get_tokenizer(model.cfg.tokenizer)
    ids = tok.encode(PROMPT)[:20]
    logits: list[np.ndarray] = []
    cached = gen.generate_cached(model, tok, ids, 10, 1.0, seed=3, logits_out=logits)
    assert cached == gen.generate(model, tok, ids, 10, 1.0, seed=3)
    full = ids + cached
    ref = [gen.next_logits(model, full[: len(ids) + s]) for s in range(10)]
    np.testing.assert_allclose(np.stack(logits), np.stack(ref), atol=1e-4)


def test_two_sequences_on_one_model_do_not_mix(bundled):
    """The cache is a value per sequence: interleaving two generations on the shared model gives
    each what it gives alone."""
    tok = gptviz.get_tokenizer(bundled.cfg.tokenizer)
    a_ids, b_ids = tok.encode("To be, or not"), tok.encode("First Citizen:\nWhat")
    a, b = gen.CachedGeneration(bundled, a_ids), gen.CachedGeneration(bundled, b_ids)
    for s in range(6):
        a.step(tok, 1.0, rng=gen.rng_for(1, s))
        b.step(tok, 1.0, rng=gen.rng_for(2, s))
    assert a.ids[len(a_ids) :] == gen.generate(bundled, tok, a_ids, 6, 1.0, seed=1)
    assert b.ids[len(b_ids) :] == gen.generate(bundled, tok, b_ids, 6, 1.0, seed=2)
