import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import gptviz
from gptviz.hooks import count_hooks, hook_name


def test_run_gives_ids_tokens_and_arrays(gpt2_tiny):
    trace = gptviz.run(gpt2_tiny, "Hello, world!")
    assert trace.ids.tolist() == [15496, 11, 995, 0]
    assert trace.tokens == ("Hello", ",", " world", "!")
    assert trace["hook_embed"].shape == (4, 32)
    assert trace["blocks.1.attn.hook_q"].shape == (4, 4, 8)
    assert trace["hook_logits"].shape == (4, 50257)
    assert not trace.truncated
    np.testing.assert_allclose(trace.probs().sum(), 1.0, atol=1e-5)


def test_empty_prompt_is_a_clear_error_and_whitespace_runs(gpt2_tiny):
    with pytest.raises(gptviz.EmptyPromptError, match="empty"):
        gptviz.run(gpt2_tiny, "")
    assert gptviz.run(gpt2_tiny, "   \n\t").n_tokens >= 1
    with pytest.raises(TypeError):
        gptviz.run(gpt2_tiny, None)


def test_long_input_is_truncated_with_a_flag(gpt2_tiny):
    trace = gptviz.run(gpt2_tiny, "word " * 20_000)  # 100k characters
    assert trace.truncated
    assert trace.n_tokens == gpt2_tiny.cfg.n_ctx
    assert trace.n_input_tokens == 20_001  # "word" + 19,999 " word" + the trailing space
    assert count_hooks(gpt2_tiny) == 0


def test_trace_arrays_are_read_only_and_picklable(gpt2_tiny):
    trace = gptviz.run(gpt2_tiny, "Hello, world!")
    with pytest.raises(ValueError):
        trace["hook_embed"][0, 0] = 1.0
    again = pickle.loads(pickle.dumps(trace))
    np.testing.assert_array_equal(again["blocks.0.attn.hook_pattern"], trace["blocks.0.attn.hook_pattern"])
    assert again.tokens == trace.tokens


def test_positions_are_copied_not_aliased(gpt2_tiny):
    trace = gptviz.run(gpt2_tiny, "Hello, world!")
    weight = gpt2_tiny.pos_embed.weight.detach().numpy()
    assert not np.shares_memory(trace["hook_pos_embed"], weight)


def test_npz_round_trip(tmp_path, gpt2_tiny):
    for precision in ("compact", "full"):
        trace = gptviz.run(gpt2_tiny, "Héllo 😀 <b>world</b>", precision=precision)
        path = trace.save(tmp_path / f"t-{precision}.npz")
        back = gptviz.load_trace(path)
        assert back.tokens == trace.tokens and back.token_bytes == trace.token_bytes
        assert back.config == trace.config and back.precision == precision
        assert set(back.keys()) == set(trace.keys())
        for name in trace.keys():
            np.testing.assert_array_equal(back[name], trace[name])


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The gptviz modules ``path`` imports anywhere in it (inside functions too: a lazy import
    is still a cycle for a reader)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names
            }
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & modules


def test_package_modules_import_one_way():
    root = Path(gptviz.__file__).parent
    files = {}
    for f in root.rglob("*.py"):
        parts = f.relative_to(root.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph = {m: _imports(f, set(files)) - {m} for m, f in files.items()}
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            assert m != start, f"{start} imports itself through {sorted(seen)}"
            if m not in seen:
                seen.add(m)
                todo += graph[m]
    assert "gptviz.io" not in files  # shadowed the standard library's io
    assert "gptviz.trace" not in graph["gptviz.trace_npz"]


def test_unknown_hook_name_is_a_key_error(gpt2_tiny):
    trace = gptviz.run(gpt2_tiny, "Hi")
    with pytest.raises(KeyError, match="trace.keys"):
        trace["blocks.9.hook_nothing"]


def test_concurrent_runs_on_one_model_never_mix_captures(gpt2_tiny):
    """Streamlit runs each session in its own thread over one cached model."""
    from concurrent.futures import ThreadPoolExecutor

    def zero_head(h):
        def fn(z, name):
            z = z.clone()
            z[:, :, h] = 0
            return z

        return fn

    jobs = [(f"prompt number {i} " * (i + 1), i % 4 if i % 2 else None) for i in range(8)]

    def work(job):
        text, head = job
        extra = [("blocks.1.attn.hook_z", zero_head(head))] if head is not None else []
        return gptviz.run(gpt2_tiny, text, precision="full", extra_hooks=extra)

    expected = [work(j) for j in jobs]
    before = {k: v.clone() for k, v in gpt2_tiny.state_dict().items()}
    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(work, jobs * 2))
        for i, trace in enumerate(got):
            ref = expected[i % len(jobs)]
            assert trace.tokens == ref.tokens
            np.testing.assert_array_equal(trace["hook_logits"], ref["hook_logits"])
            np.testing.assert_array_equal(trace["blocks.1.attn.hook_z"], ref["blocks.1.attn.hook_z"])
    assert count_hooks(gpt2_tiny) == 0
    for k, v in gpt2_tiny.state_dict().items():
        assert torch.equal(v, before[k])


def test_run_on_token_ids(gpt2_tiny):
    by_text = gptviz.run(gpt2_tiny, "Hello, world!", precision="full")
    by_ids = gptviz.run(gpt2_tiny, token_ids=[15496, 11, 995, 0], precision="full")
    assert by_ids.text == "Hello, world!" and by_ids.tokens == by_text.tokens
    np.testing.assert_array_equal(by_ids["hook_logits"], by_text["hook_logits"])
    with pytest.raises(ValueError, match="token ids"):
        gptviz.run(gpt2_tiny, token_ids=[50257])


def test_hook_name_helper_and_tuple_keys(gpt2_tiny):
    from gptviz.hooks import hook_name

    assert hook_name("pattern", 0) == "blocks.0.attn.hook_pattern"
    assert hook_name("resid_post", 1) == "blocks.1.hook_resid_post"
    assert hook_name("post", 1) == "blocks.1.mlp.hook_post"
    assert hook_name("scale", 1, "ln2") == "blocks.1.ln2.hook_scale"
    assert hook_name("scale", norm="ln_final") == "ln_final.hook_scale"
    assert hook_name("embed") == "hook_embed"
    assert hook_name("blocks.0.hook_resid_pre") == "blocks.0.hook_resid_pre"
    with pytest.raises(ValueError):
        hook_name("nonsense", 0)
    t = gptviz.run(gpt2_tiny, "Hello there")
    names = set(gpt2_tiny.hook_names())
    for kind in ("q", "k", "v", "pattern", "z", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
        assert hook_name(kind, 0) in names
    np.testing.assert_array_equal(t["pattern", 1], t["blocks.1.attn.hook_pattern"])
    np.testing.assert_array_equal(t["attn_scores", 0], t["blocks.0.attn.hook_attn_scores"])


def test_an_intervention_on_a_pattern_is_kept_as_it_flowed(gpt2_tiny):
    """A compact trace derives patterns from q and k, except in a layer whose pattern an extra hook
    replaces: that layer keeps what flowed (uniform attention here) and later layers see it."""

    def uniform(p: torch.Tensor, name: str) -> torch.Tensor:
        causal = torch.ones(p.shape[-2:]).tril()
        return (causal / causal.sum(-1, keepdim=True)).expand_as(p)

    hook = [(hook_name("pattern", 0), uniform)]
    base = gptviz.run(gpt2_tiny, "the cat sat on the mat and the dog")
    hooked = gptviz.run(gpt2_tiny, "the cat sat on the mat and the dog", extra_hooks=hook)
    full = gptviz.run(gpt2_tiny, "the cat sat on the mat and the dog", precision="full", extra_hooks=hook)
    T = hooked.n_tokens
    assert hook_name("pattern", 0) in hooked.store and hook_name("pattern", 1) not in hooked.store
    np.testing.assert_allclose(
        hooked["pattern", 0][1], np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None], atol=1e-3
    )
    np.testing.assert_allclose(hooked.pattern_row(0, 2), full["pattern", 0][:, 2, :3], atol=1e-3)
    np.testing.assert_allclose(hooked["pattern", 1], full["pattern", 1], atol=1e-5)  # derived, after the change
    assert not np.allclose(hooked["attn_out", 0], base["attn_out", 0], atol=1e-4)  # the change flowed on
    assert np.abs(hooked["pattern", 1] - base["pattern", 1]).max() > 0  # layer 1 read the changed stream
    assert not np.array_equal(hooked.logits(), base.logits())


def test_compact_logits_in_column_blocks_equal_the_full_logits(gpt2_tiny, monkeypatch):
    """Compact logits are built a block of vocabulary columns at a time (uneven blocks here),
    each row offset from its maximum within each block: read back, they are the model's logits."""
    from gptviz import trace as trace_module

    monkeypatch.setattr(trace_module, "LOGIT_COLUMNS", 7)
    full = gptviz.run(gpt2_tiny, "the cat sat on the mat", precision="full")
    compact = gptviz.run(gpt2_tiny, "the cat sat on the mat")
    V = gpt2_tiny.cfg.vocab_size
    assert compact.store["_logits_max"].shape == (compact.n_tokens, -(-V // 7))
    assert np.abs(compact.store["_logits_offset"].astype(np.float32)).max() > 0
    np.testing.assert_allclose(compact["hook_logits"], full["hook_logits"], atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(compact.logits(2), full["hook_logits"][2], atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(compact.probs(), full.probs(), atol=1e-5)
