"""Stage 5: the sampling transform, generation, and the Output page with the real model."""

import numpy as np
import pytest
import torch

import gptviz
from gptviz.analysis import generation as gen
from gptviz.figures import label
from gptviz.figures import output as figs
from gptviz.tokenizer import get_tokenizer
from tests.apptest_utils import assert_ok, decode, figures, open_page
from tests.conftest import tiny_model

MODEL = "bundled:gpt2-style"
PROMPT = "ROMEO:\nBut soft, what light"


# --- the sampling transform, against independent computations ---------------------------------


def _logits(seed: int = 0, V: int = 500, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, scale, V).astype(np.float32)


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1, 0, 1), (0.7, 10, 1), (1.3, 0, 0.9), (2, 50, 0.5)])
def test_distribution_sums_to_one_after_cuts(temperature, top_k, top_p):
    p = gen.sampling_distribution(_logits(), temperature, top_k, top_p)
    assert p.min() >= 0
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 17])
def test_top_k_keeps_exactly_the_k_largest(k):
    z = _logits(1)
    for temperature in (0.5, 1.0, 2.0):
        p = gen.sampling_distribution(z, temperature, top_k=k)
        assert set(np.flatnonzero(p > 0)) == set(np.argsort(z)[-k:])
        want = torch.softmax(torch.tensor(z[np.argsort(z)[-k:]], dtype=torch.float64) / temperature, 0).numpy()
        np.testing.assert_allclose(p[np.argsort(z)[-k:]], want, rtol=1e-9)


def test_top_p_keeps_the_smallest_set_reaching_p():
    z = np.log([0.05, 0.5, 0.15, 0.3])  # sorted: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05)
    kept = {p: set(np.flatnonzero(gen.sampling_distribution(z, top_p=p) > 0)) for p in (0.3, 0.5, 0.7, 0.9, 0.99)}
    assert kept == {0.3: {1}, 0.5: {1}, 0.7: {1, 3}, 0.9: {1, 3, 2}, 0.99: {1, 3, 2, 0}}
    for seed in range(5):  # any distribution: a top prefix, reaches p, one fewer would not
        z, top_p = _logits(seed), 0.2 + 0.15 * seed
        full, p = gen.softmax(z), gen.sampling_distribution(z, top_p=top_p)
        n = int((p > 0).sum())
        order = np.argsort(-full)
        assert set(np.flatnonzero(p > 0)) == set(order[:n])
        assert full[order[:n]].sum() >= top_p - 1e-9 > full[order[: n - 1]].sum()


def test_temperature_zero_is_argmax_and_small_temperature_tends_to_it():
    z = _logits(2)
    np.testing.assert_array_equal(gen.sampling_distribution(z, 0.0), np.eye(len(z))[np.argmax(z)])
    assert gen.sampling_distribution(z, 1e-3)[np.argmax(z)] == pytest.approx(1.0)


def test_temperature_one_no_cut_is_softmax_and_large_logits_are_stable():
    z = _logits(3)
    want = torch.softmax(torch.tensor(z, dtype=torch.float64), 0).numpy()
    np.testing.assert_allclose(gen.sampling_distribution(z, 1.0, 0, 1.0), want, rtol=1e-10)
    big = gen.sampling_distribution(np.array([1e4, 1e4 - 1, -1e4, -np.inf]), 0.5, 0, 0.95)
    assert np.isfinite(big).all() and big.sum() == pytest.approx(1.0)


def test_sampling_never_draws_cut_tokens_and_matches_the_probabilities():
    p = gen.sampling_distribution(_logits(4, V=50, scale=1.0), 1.0, top_k=6)
    counts = gen.sample_counts(p, 20_000, gen.rng_for(0, 0))
    assert counts[p == 0].sum() == 0 and counts.sum() == 20_000
    assert gen.rng_for(0, 0).random() != gen.rng_for(0, 1).random() != gen.rng_for(1, 1).random()
    np.testing.assert_allclose(counts / 20_000, p, atol=0.015)


# --- generation with a tiny model -------------------------------------------------------------


def test_generation_is_deterministic_for_a_seed_and_greedy_takes_the_argmax():
    model, tok = tiny_model(), get_tokenizer("gpt2")
    ids = tok.encode("The cat sat on the")
    a = gen.generate(model, tok, ids, 6, temperature=1.5, top_k=40, seed=7)
    assert a == gen.generate(model, tok, ids, 6, temperature=1.5, top_k=40, seed=7)
    assert a != gen.generate(model, tok, ids, 6, temperature=1.5, top_k=40, seed=8)
    one_by_one = []  # the page's button: one step at a time with rng_for(seed, step)
    for s in range(6):
        chosen, cands = gen.generate_step(model, tok, ids + one_by_one, 1.5, 40, 1.0, gen.rng_for(7, s))
        assert chosen in [c.id for c in cands]
        one_by_one.append(chosen)
    assert one_by_one == a
    with torch.inference_mode():
        logits = model(torch.tensor([ids]))[0, -1]  # the hooked (non-fused) path
    chosen, cands = gen.generate_step(model, tok, ids, temperature=0.0)
    assert chosen == int(logits.argmax()) == cands[0].id
    assert cands[0].sample_prob == 1.0
    assert cands[0].prob == pytest.approx(float(torch.softmax(logits.double(), 0).max()), rel=1e-4)


def test_generation_keeps_the_last_n_ctx_tokens_and_steps_replay_the_logits():
    model, tok = tiny_model(), get_tokenizer("gpt2")
    ids = list(range(100, 100 + 90))  # longer than n_ctx = 64
    np.testing.assert_allclose(gen.next_logits(model, ids), gen.next_logits(model, ids[-64:]), atol=1e-6)
    generated = gen.generate(model, tok, ids[:20], 3, temperature=0.0)
    steps = gen.continuation_steps(model, tok, ids[:20], generated)
    assert [s.chosen for s in steps] == generated
    assert all(s.chosen_candidate.id == s.candidates[0].id for s in steps)  # greedy: always rank 1
    fig = figs.generation_timeline([s.rows() for s in steps])
    assert fig.data[0].z.shape == (5, 3) and list(fig.data[1].y) == [0, 0, 0]
    hot = gen.generate(model, tok, ids[:20], 3, temperature=5.0, seed=1)  # picks far down the list
    for s, step in enumerate(gen.continuation_steps(model, tok, ids[:20], hot)):
        p = gen.softmax(gen.next_logits(model, ids[:20] + hot[:s]))
        assert step.chosen_candidate.rank == int((p > p[step.chosen]).sum()) + 1
        assert step.chosen_candidate.prob == pytest.approx(p[step.chosen], rel=1e-3)
    fig = figs.generation_timeline([s.rows() for s in gen.continuation_steps(model, tok, ids[:20], hot)])
    assert fig.layout.yaxis.ticktext == ("1", "2", "3", "4", "5", "lower")
    long = figs.generation_timeline([steps[0].rows()] * 40)  # only the last 30 steps, numbered 11..40
    assert long.data[0].z.shape == (5, 30) and long.layout.xaxis.tickvals[0] == 11


# --- the page, with the bundled model ---------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return gptviz.load_model(MODEL)


def test_probability_chart_carries_the_traces_probabilities(model):
    at = open_page("6_Output.py", model=MODEL, prompt=PROMPT, out_n="12")
    assert_ok(at)
    trace, tok = gptviz.run(model, PROMPT), get_tokenizer(model.cfg.tokenizer)
    bars = figures(at)["out_probs"]["data"][0]
    top = np.argsort(-trace.probs(), kind="stable")[:12]
    np.testing.assert_allclose(decode(bars["x"]), trace.probs()[top], atol=1e-6)
    assert figures(at)["out_probs"]["layout"]["yaxis"]["ticktext"] == [label(tok.token_str(int(i))) for i in top]
    np.testing.assert_allclose([c[2] for c in bars["customdata"]], trace.logits()[top], atol=1e-4)


def test_reshaped_probabilities_after_top_k_and_top_p_sum_to_one(model):
    at = open_page("6_Output.py", model=MODEL, prompt=PROMPT, out_temperature="1.5", out_top_k="5", out_top_p="0.9")
    assert_ok(at)
    fig = figures(at)["out_reshaped"]
    solid = decode(fig["data"][1]["x"])
    assert solid.sum() == pytest.approx(1.0, abs=1e-6)
    assert 1 <= (solid > 0).sum() <= 5
    assert len(decode(fig["data"][2]["y"])) == len(solid) - (solid > 0).sum()  # every cut token marked
    logits = gptviz.run(model, PROMPT).logits()
    want = gen.sampling_distribution(logits, 1.5, 5, 0.9)
    np.testing.assert_allclose(solid, want[np.argsort(-logits, kind="stable")[: len(solid)]], atol=1e-6)
    hist = figures(at)["out_samples"]["data"]
    assert decode(hist[0]["x"]).sum() == pytest.approx(1.0, abs=1e-6)


def test_next_token_grows_the_timeline_and_a_new_prompt_starts_over(model):
    at = open_page("6_Output.py", model=MODEL, prompt=PROMPT, out_seed="3")
    assert_ok(at)
    assert "out_timeline" not in figures(at)
    before = decode(figures(at)["out_probs"]["data"][0]["x"])
    for n in (1, 2):
        at.button(key="out_next").click().run()
        assert_ok(at)
        assert len(decode(figures(at)["out_timeline"]["data"][1]["x"])) == n
    tok = get_tokenizer(model.cfg.tokenizer)
    want = gen.generate(model, tok, tok.encode(PROMPT), 2, 1.0, 0, 1.0, seed=3)  # same seed, same tokens
    kept = at.query_params["out_generated"]
    assert (kept[0] if isinstance(kept, list) else kept) == ",".join(map(str, want))
    assert at.code[0].value.rstrip() == tok.decode(want).rstrip()
    at.button(key="out_use").click().run()
    assert at.sidebar.text_area(key="w_prompt").value == PROMPT + tok.decode(want)
    assert "out_timeline" not in figures(at)
    at.sidebar.text_area(key="w_prompt").set_value("The king is dead.").run()
    assert_ok(at)
    after = decode(figures(at)["out_probs"]["data"][0]["x"])
    np.testing.assert_allclose(after, np.sort(gptviz.run(model, "The king is dead.").probs())[::-1][:15], atol=1e-6)
    assert not np.allclose(before, after)
