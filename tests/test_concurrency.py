"""Concurrent users: a classroom on one server, one cached model, many sessions at once.

Streamlit runs every browser session's script in its own thread over the *same* cached model
(``st.cache_resource``) and the same trace cache. These tests run 8 sessions at once as threads
over the page code paths (``gptviz.run`` with ablation hooks, the analysis and figure functions
the pages call) on the two bundled models, and check that:

- each session gets exactly its own result (equal to a sequential reference, bit for bit);
- a hook added in one thread is never seen by another (hooks live in a ContextVar);
- the cached models' weights are byte-identical afterwards and no hook is left on them;
- the trace cache stays within its byte budget over 200 prompt changes, under 8 threads too,
  and memory (RSS, and Python objects via tracemalloc) stops growing once it is full;
- in the real app (AppTest), two sessions with different models, prompts and ablations never
  see each other's view, and the app's own trace cache stays within its budget over 30 prompt
  changes.

AppTest itself swaps process-wide globals on every run (``Runtime._instance``, a patched config
getter), so AppTest sessions cannot run in parallel threads; the threaded tests drive the same
library code the pages run instead, and the AppTest tests interleave sessions one run at a time.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import threading
import tracemalloc
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import gptviz
from gptviz import figures as F
from gptviz.analysis import Ablation, direct_logit_attribution, head_stats, logit_lens, nearest_tokens
from gptviz.analysis import generation as gen
from gptviz.analysis.ablation import kl_divergence
from gptviz.cache import ByteLRU
from gptviz.figures import attention as fa
from gptviz.figures import residual as fr
from gptviz.hooks import count_hooks, hooks
from gptviz.tokenizer import get_tokenizer
from gptviz.trace import trace_nbytes
from tests.apptest_utils import assert_ok, decode, figures, open_page

SPECS = ("bundled:gpt2-style", "bundled:seed")
N_SESSIONS = 8
JOBS = [  # (model, prompt, ablation): what 8 students might have open at once
    ("bundled:gpt2-style", "ROMEO:\nBut, soft! what light through yonder window breaks?", Ablation()),
    ("bundled:seed", "ROMEO:\nBut, soft! what light through yonder window breaks?", Ablation()),
    ("bundled:gpt2-style", "The cat sat on the mat. The dog sat on the rug. The cat sat on the", Ablation(((0, 1),))),
    ("bundled:gpt2-style", "The cat sat on the mat. The dog sat on the rug. The cat sat on the", Ablation(((3, 2),))),
    ("bundled:seed", "First Citizen:\nWhat is the city but the people?", Ablation(((1, 0), (2, 3)), (), "mean")),
    ("bundled:seed", "<b>bold</b> $x$ 😀 שלום", Ablation((), ((0, 5), (3, 17)))),
    ("bundled:gpt2-style", "word " * 400, Ablation((), ((1, 7),), "mean")),  # truncated to the context
    (
        "bundled:seed",
        "KING HENRY:\nOnce more unto the breach, dear friends, once more;",
        Ablation(((0, 0),), ((2, 2),)),
    ),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@functools.cache
def shared(spec: str) -> gptviz.GPT:
    """One model object per spec for the whole process, as ``st.cache_resource`` keeps it."""
    return gptviz.load_model(spec)


def fingerprint(model: gptviz.GPT) -> dict[str, str]:
    return {k: hashlib.sha256(v.detach().numpy().tobytes()).hexdigest() for k, v in model.state_dict().items()}


def session(job) -> dict[str, np.ndarray]:
    """What the attention, feed-forward and output pages compute for one session."""
    spec, text, ab = job
    model = shared(spec)
    tok = get_tokenizer(model.cfg.tokenizer)
    plain = gptviz.run(model, text)
    after = gptviz.run(model, text, extra_hooks=ab.hooks()) if ab else plain
    assert count_hooks(model) == 0  # nothing left behind in this thread's context either
    L, H = model.cfg.n_layer - 1, model.cfg.n_head - 1
    pattern = fa.attention_pattern(after, L, H)
    lens = logit_lens(model, after)
    target = int(np.argmax(after.probs()))
    attr = direct_logit_attribution(model, after, target)
    stats = head_stats(after)
    near = nearest_tokens(model, np.array(after["hook_embed"][-1]), k=8)
    steps = gen.generate(model, tok, tok.encode(text)[-32:], 3, temperature=0.0)
    mlp = fr.mlp_activation_heatmap(after["blocks.1.mlp.hook_post"], after.tokens, 1, 32)
    return {
        "ids": after.ids,
        "tokens": np.asarray(after.tokens, dtype=object),
        "logits": after["hook_logits"],
        "z": after["z", L],
        "mlp_post": after["blocks.2.mlp.hook_post"],
        "pattern_fig": np.asarray(pattern.data[0].z, dtype=np.float32),
        "pattern_ticks": np.asarray(pattern.layout.xaxis.ticktext, dtype=object),
        "mlp_fig": np.asarray(mlp.data[0].z, dtype=np.float32),
        "lens": lens.top_ids,
        "dla": attr.values,
        "stats": stats.to_numpy(dtype=np.float64),
        "near": np.asarray(near),
        "generated": np.asarray(steps),
        "kl": np.asarray(kl_divergence(plain.probs(), after.probs())),
    }


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_eight_sessions_at_once_each_get_exactly_their_own_view():
    before = {spec: fingerprint(shared(spec)) for spec in SPECS}
    reference = [session(job) for job in JOBS]
    # the jobs differ: equal results would prove nothing
    assert not np.array_equal(reference[2]["logits"], reference[3]["logits"])
    assert not np.array_equal(reference[0]["logits"][:5], reference[1]["logits"][:5])
    start = threading.Barrier(N_SESSIONS)

    def student(i: int, rnd: int) -> tuple[int, dict]:
        j = (i + rnd) % len(JOBS)  # each round, each thread plays another student
        start.wait()
        return j, session(JOBS[j])

    with ThreadPoolExecutor(N_SESSIONS) as pool:
        for rnd in range(2):
            for j, got in pool.map(student, range(N_SESSIONS), [rnd] * N_SESSIONS):
                assert_same(got, reference[j])
    for spec in SPECS:
        model = shared(spec)
        assert fingerprint(model) == before[spec], "a session changed the shared weights"
        assert count_hooks(model) == 0
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_hook_in_one_session_is_invisible_to_another():
    model = shared("bundled:gpt2-style")
    text = "To be, or not to be, that is the question:"
    want = gptviz.run(model, text)["hook_logits"]
    inside, done = threading.Event(), threading.Event()
    seen = {}

    def zero(x, name):
        return torch.zeros_like(x)

    def ablating_student():
        with hooks(model, [("blocks.0.hook_resid_pre", zero)]):
            inside.set()
            seen["ablated"] = gptviz.run(model, text)["hook_logits"]  # its own hook applies...
            assert done.wait(60)  # ...and is still active while the other session runs
        seen["after"] = count_hooks(model)

    def other_student():
        assert inside.wait(60)
        seen["other"] = gptviz.run(model, text)["hook_logits"]
        seen["other_hooks"] = count_hooks(model)
        done.set()

    threads = [threading.Thread(target=ablating_student), threading.Thread(target=other_student)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    np.testing.assert_array_equal(seen["other"], want)
    assert not np.allclose(seen["ablated"], want)
    assert seen["other_hooks"] == 0 and seen["after"] == 0 and count_hooks(model) == 0


# --- memory: the trace cache is bounded -----------------------------------------------------------


def rss_bytes() -> int:
    statm = Path("/proc/self/statm")
    if not statm.exists():
        pytest.skip("RSS is read from /proc (Linux)")
    import os

    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def prompt(i: int) -> str:
    words = ["king", "queen", "sword", "love", "night", "crown", "ghost", "storm", "rose", "blood"]
    return f"Prompt {i}: " + " ".join(words[(i * 7 + k * 3) % 10] for k in range(40 + i % 25))


def test_trace_cache_stays_within_budget_over_200_prompt_changes():
    model = shared("bundled:gpt2-style")
    budget = 24 * 2**20
    cache: ByteLRU = ByteLRU(budget, trace_nbytes)
    spec = "bundled:gpt2-style"

    def change(i: int):
        text = prompt(i)
        return cache.get_or_compute((spec, text, None), lambda: gptviz.run(model, text))

    for i in range(20):  # fill the cache and warm everything up
        change(i)
    first = weakref.ref(change(10_000))
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    py0 = tracemalloc.get_traced_memory()[0]
    computed = 0
    for i in range(20, 220):
        misses = cache.misses
        trace = change(i if i % 10 else i - 3)  # every 10th change goes back to a recent prompt
        assert trace.text == prompt(i if i % 10 else i - 3)
        computed += trace_nbytes(trace) if cache.misses > misses else 0
        assert cache.total_bytes <= budget, (i, cache.total_bytes)
        del trace
    gc.collect()
    py_growth = tracemalloc.get_traced_memory()[0] - py0
    tracemalloc.stop()
    rss_growth = rss_bytes() - rss0
    assert cache.hits >= 15  # going back to a recent prompt is served from the cache
    assert computed > 10 * budget  # an unbounded cache would have grown by all of this...
    assert rss_growth < budget + 64 * 2**20, f"RSS grew by {rss_growth / 2**20:.0f} MB"  # ...a bounded one did not
    assert py_growth < 4 * 2**20, f"Python objects grew by {py_growth / 2**20:.1f} MB"
    gc.collect()
    assert first() is None  # an evicted trace is really freed


def test_trace_cache_is_thread_safe_and_bounded():
    model = shared("bundled:seed")
    texts = [prompt(i) for i in range(6)]
    one = max(trace_nbytes(gptviz.run(model, t)) for t in texts)
    cache: ByteLRU = ByteLRU(3 * one, trace_nbytes)  # room for half of the prompts
    start = threading.Barrier(N_SESSIONS)
    seen = []

    def student(i: int) -> None:
        start.wait()
        for k in range(12):
            text = texts[(i + k * (1 + i % 3)) % len(texts)]
            trace = cache.get_or_compute(("bundled:seed", text, None), lambda text=text: gptviz.run(model, text))
            assert trace.text == text  # never someone else's prompt
            seen.append(cache.total_bytes)

    with ThreadPoolExecutor(N_SESSIONS) as pool:
        list(pool.map(student, range(N_SESSIONS)))
    assert len(seen) == N_SESSIONS * 12
    assert max(seen) <= cache.max_bytes and cache.total_bytes <= cache.max_bytes
    assert cache.hits + cache.misses == N_SESSIONS * 12 and len(cache) <= 3


def test_the_same_prompt_at_the_same_moment_is_computed_once():
    """The teacher says "type this": 8 sessions ask for one new trace at once."""
    model = shared("bundled:gpt2-style")
    cache: ByteLRU = ByteLRU(64 * 2**20, trace_nbytes)
    start, lock, calls = threading.Barrier(N_SESSIONS), threading.Lock(), []

    def compute():
        with lock:
            calls.append(threading.get_ident())
        return gptviz.run(model, "Now is the winter of our discontent")

    def student(_):
        start.wait()
        return cache.get_or_compute(("bundled:gpt2-style", "winter"), compute)

    with ThreadPoolExecutor(N_SESSIONS) as pool:
        got = list(pool.map(student, range(N_SESSIONS)))
    assert len(calls) == 1 and all(t is got[0] for t in got)
    assert cache.misses == 1 and cache.hits == N_SESSIONS - 1

    def empty():  # an error reaches every waiting session, and nothing is cached
        start.wait()
        return cache.get_or_compute("empty", lambda: gptviz.run(model, ""))

    with ThreadPoolExecutor(N_SESSIONS) as pool:
        futures = [pool.submit(empty) for _ in range(N_SESSIONS)]
        for f in futures:
            with pytest.raises(gptviz.EmptyPromptError):
                f.result()
    assert "empty" not in cache._items and not cache._pending


# --- the real app -----------------------------------------------------------------------------------


def test_two_app_sessions_interleaved_never_mix():
    """Session A ablates two heads of the GPT-2-style model; session B looks at the seed model."""
    a_text, b_text = "The cat sat on the mat. The cat", "First Citizen:\nWhat is the city?"
    a = open_page("4_Attention.py", model="bundled:gpt2-style", prompt=a_text, ablate_heads="0.1,0.2", attn_layer="1")
    b = open_page("4_Attention.py", model="bundled:seed", prompt=b_text, attn_layer="2", attn_head="3")
    gpt2, seed = shared("bundled:gpt2-style"), shared("bundled:seed")
    plain_a, plain_b = gptviz.run(gpt2, a_text), gptviz.run(seed, b_text)
    ablated_a = gptviz.run(gpt2, a_text, extra_hooks=Ablation(((0, 1), (0, 2))).hooks())
    assert not np.allclose(plain_a.pattern(1, 0), ablated_a.pattern(1, 0))  # the ablation shows at layer 1

    def pattern(figs: dict, key: str) -> np.ndarray:
        return np.nan_to_num(decode(figs[key]["data"][0]["z"]))

    for _ in range(2):
        for at, spec, want in ((a, "bundled:gpt2-style", plain_a), (b, "bundled:seed", plain_b)):
            at.run()
            assert_ok(at)
            assert at.sidebar.selectbox[0].value == spec
            assert at.sidebar.text_area[0].value == want.text
            figs = figures(at)
            layer, head = (1, 0) if at is a else (2, 3)
            np.testing.assert_allclose(pattern(figs, "attn_pattern"), np.tril(want.pattern(layer, head)), atol=1e-3)
            step = max(1, int(np.ceil(want.n_tokens / 64)))
            assert list(figs["attn_pattern"]["layout"]["xaxis"]["ticktext"]) == [
                F.label(t) for t in want.tokens[::step]
            ]
            if at is a:  # only session A ablates, and its ablated chart is its own
                np.testing.assert_allclose(
                    pattern(figs, "attn_pattern_ablated"), np.tril(ablated_a.pattern(1, 0)), atol=1e-3
                )
            else:
                assert "attn_pattern_ablated" not in figs


def test_app_trace_cache_stays_within_budget_over_30_prompt_changes():
    from gptviz import ui

    at = open_page(None, prompt="warm up")
    assert_ok(at)
    cache = ui._trace_cache()  # the process-wide cache the sessions share
    assert len(cache) >= 1, "the test must see the app's own cache"
    saved = cache.max_bytes
    one = trace_nbytes(gptviz.run(shared("bundled:gpt2-style"), prompt(0)))
    cache.clear()
    cache.max_bytes = 4 * one  # a small budget: a handful of traces
    try:
        for i in range(30):
            at.sidebar.text_area[0].set_value(prompt(i)).run()
            assert_ok(at)
            assert cache.total_bytes <= cache.max_bytes, (i, cache.total_bytes, cache.max_bytes)
            assert len(cache) <= 8
        assert at.sidebar.text_area[0].value == prompt(29)
    finally:
        cache.max_bytes = saved
