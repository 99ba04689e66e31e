"""The shared figure cache: keyed by every input (projector mode, ablation, selection, chart key,
the trace's model and prompt), built once for the same inputs, thread-safe, bounded in bytes."""

from __future__ import annotations

import gc
import json
import threading

import numpy as np
import pytest

import gptviz
from gptviz.analysis.ablation import Ablation
from gptviz.figcache import TRACE_KEYS, FigureCache, Uncacheable, input_key
from gptviz.figures import attention as fa
from tests.apptest_utils import figures, open_page
from tests.conftest import tiny_model


@pytest.fixture
def traces():
    model = tiny_model("gpt2")
    a, b = gptviz.run(model, "The cat sat on the mat."), gptviz.run(model, "A dog ran.")
    TRACE_KEYS.register(a, ("tiny", a.text, None))
    TRACE_KEYS.register(b, ("tiny", b.text, None))
    return a, b


def counting(fn):
    calls = []

    def wrapped(*args, **kw):
        calls.append(1)
        return fn(*args, **kw)

    wrapped.__module__, wrapped.__qualname__ = fn.__module__, fn.__qualname__
    return wrapped, calls


def test_same_inputs_hit_and_every_input_changes_the_figure(traces):
    a, b = traces
    cache = FigureCache(10 * 2**20)
    fn, calls = counting(fa.attention_pattern)
    first = cache.json(fn, "attn", a, 1, 0, projector=False)
    assert cache.json(fn, "attn", a, 1, 0, projector=False) == first
    assert len(calls) == 1 and cache.lru.hits == 1
    variants = [
        cache.json(fn, "attn", a, 1, 0, projector=True),  # projector mode only
        cache.json(fn, "attn", a, 1, 1, projector=False),  # selection (head)
        cache.json(fn, "attn", a, 0, 0, projector=False),  # selection (layer)
        cache.json(fn, "attn", b, 1, 0, projector=False),  # another prompt
        cache.json(fn, "attn", a, 1, 0, projector=False, title="x"),
    ]
    assert len(calls) == 6
    assert len({first, *variants}) == 6  # each a different figure
    assert cache.json(fn, "other_chart", a, 1, 0, projector=False) == first  # same figure, own entry
    assert len(calls) == 7


def test_ablation_and_model_are_part_of_the_key(traces):
    a, _ = traces
    assert input_key(Ablation(((0, 1),))) != input_key(Ablation(((0, 2),)))
    assert input_key(Ablation(((0, 1),), mode="mean")) != input_key(Ablation(((0, 1),)))
    assert input_key(Ablation(((0, 1),))) == input_key(Ablation(((0, 1),)))
    ablated = gptviz.run(tiny_model("gpt2"), a.text, extra_hooks=Ablation(((0, 1),)).hooks())
    TRACE_KEYS.register(ablated, ("tiny", a.text, Ablation(((0, 1),)).key))
    assert input_key(ablated) != input_key(a)
    other_model = gptviz.run(tiny_model("gpt2", seed=1), a.text)
    TRACE_KEYS.register(other_model, ("tiny-seed1", a.text, None))
    assert input_key(other_model) != input_key(a)


def test_arrays_count_by_value_and_unknown_inputs_are_not_cached(traces):
    a, _ = traces
    x = np.arange(6.0)
    assert input_key(x) == input_key(x.copy()) != input_key(x + 1)
    stray = gptviz.run(tiny_model("gpt2"), "not from the trace cache")
    with pytest.raises(Uncacheable):
        input_key(stray)
    with pytest.raises(Uncacheable):
        input_key(lambda i: str(i))
    cache = FigureCache(2**20)
    fn, calls = counting(fa.attention_pattern)
    cache.json(fn, "k", stray, 0, 0)
    cache.json(fn, "k", stray, 0, 0)
    assert len(calls) == 2 and cache.uncacheable == 2 and len(cache.lru) == 0


def test_a_freed_trace_forgets_its_key():
    t = gptviz.run(tiny_model("gpt2"), "short")
    TRACE_KEYS.register(t, ("gone", "short", None))
    tid = id(t)
    del t
    gc.collect()
    assert TRACE_KEYS._keys.get(tid) is None


def test_threads_build_each_figure_once_and_the_cache_stays_in_budget(traces):
    a, _ = traces
    one = len(fa.attention_pattern(a, 0, 0).to_json())
    cache = FigureCache(10 * one)
    fn, calls = counting(fa.attention_pattern)
    results: list[str] = []
    lock = threading.Lock()

    def session(head: int) -> None:
        out = cache.json(fn, "attn", a, 0, head)
        with lock:
            results.append((head, out))

    threads = [threading.Thread(target=session, args=(i % 4,)) for i in range(24)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(calls) == 4  # four distinct inputs, each built once
    by_head = {}
    for head, out in results:
        by_head.setdefault(head, set()).add(out)
    assert all(len(v) == 1 for v in by_head.values()) and len({next(iter(v)) for v in by_head.values()}) == 4
    small = FigureCache(int(2.5 * one))
    for head in range(4):
        small.json(fn, "attn", a, 0, head)
        assert small.lru.total_bytes <= small.lru.max_bytes
    assert len(small.lru) == 2


# --- the app: two sessions differing only in projector mode, or only in ablation ------------


def _fresh_cache():
    from gptviz.ui import caching

    cache = caching._figure_cache()
    cache.lru.clear()
    return cache


def test_app_sessions_share_figures_but_not_across_projector_or_ablation():
    cache = _fresh_cache()
    plain = figures(open_page("4_Attention.py", attn_layer="1", attn_head="0"))
    misses, hits = cache.lru.misses, cache.lru.hits
    again = figures(open_page("4_Attention.py", attn_layer="1", attn_head="0"))
    assert cache.lru.misses == misses and cache.lru.hits - hits >= 2  # the second session built nothing
    assert json.dumps(again["attn_pattern"]) == json.dumps(plain["attn_pattern"])
    big = figures(open_page("4_Attention.py", attn_layer="1", attn_head="0", projector="1"))
    assert json.dumps(big["attn_pattern"]) != json.dumps(plain["attn_pattern"])
    assert json.dumps(big["attn_grid"]) != json.dumps(plain["attn_grid"])

    one = figures(open_page("4_Attention.py", attn_layer="1", attn_head="0", ablate_heads="0.0"))
    two = figures(open_page("4_Attention.py", attn_layer="1", attn_head="0", ablate_heads="0.1"))
    assert json.dumps(one["attn_ablation_next"]) != json.dumps(two["attn_ablation_next"])
    assert json.dumps(one["attn_pattern_ablated"]) != json.dumps(two["attn_pattern_ablated"])


def test_a_room_on_the_same_lesson_step_builds_its_chart_once():
    import gptviz.lesson as L

    cache = _fresh_cache()
    key = next(iter(L.LESSONS))
    misses, hits, uncacheable = cache.lru.misses, cache.lru.hits, cache.uncacheable
    first = figures(open_page("7_Lesson.py", lesson=key, lesson_step="0"))
    assert (cache.lru.misses - misses, cache.uncacheable - uncacheable) == (1, 0)
    second = figures(open_page("7_Lesson.py", lesson=key, lesson_step="0"))
    assert (cache.lru.misses - misses, cache.lru.hits - hits) == (1, 1)
    assert json.dumps(first["lesson_before"]) == json.dumps(second["lesson_before"])
