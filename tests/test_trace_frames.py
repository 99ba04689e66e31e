"""The Trace's pandas views for notebooks: frame(), pattern_frame() and top_tokens()."""

from __future__ import annotations

import numpy as np
import pytest

import gptviz

TEXT = "Hello, world! Hello again."


@pytest.fixture
def trace(model):
    return gptviz.run(model, TEXT)


def test_frame_is_one_row_per_token_and_one_column_per_dimension(trace):
    df = trace.frame("hook_embed")
    D = trace.config.d_model
    assert list(df.columns) == ["position", "token", *range(D)]
    assert df["position"].tolist() == list(range(trace.n_tokens))
    assert df["token"].tolist() == list(trace.tokens)
    np.testing.assert_array_equal(df[list(range(D))].to_numpy(), trace["hook_embed"])


def test_frame_of_token_ids_has_a_value_column(trace):
    df = trace.frame("hook_tokens")
    assert list(df.columns) == ["position", "token", "value"]
    assert df["value"].tolist() == trace.ids.tolist()


def test_frame_of_a_per_head_hook_has_a_row_per_position_and_head(trace):
    name = "blocks.1.attn.hook_q"
    q = trace[name]  # [T, H, Dh]
    T, H, Dh = q.shape
    df = trace.frame(name)
    assert list(df.columns) == ["position", "token", "head", *range(Dh)] and len(df) == T * H
    row = df[(df["position"] == 2) & (df["head"] == 3)]
    np.testing.assert_array_equal(row[list(range(Dh))].to_numpy()[0], q[2, 3])
    one = trace.frame(name, head=1)
    assert one["head"].unique().tolist() == [1] and len(one) == T
    np.testing.assert_array_equal(one[list(range(Dh))].to_numpy(), q[:, 1])
    with pytest.raises(IndexError):
        trace.frame(name, head=H)
    with pytest.raises(ValueError, match="no head axis"):
        trace.frame("hook_embed", head=0)


def test_tidy_frame_is_one_row_per_number_and_pivots_back(trace):
    name = "blocks.0.mlp.hook_post"  # float16 in a compact trace
    df = trace.frame(name, tidy=True)
    acts = trace[name]
    assert list(df.columns) == ["position", "token", "dim", "value"] and len(df) == acts.size
    assert df["value"].dtype == np.float32
    wide = df.pivot(index="position", columns="dim", values="value").to_numpy()
    np.testing.assert_array_equal(wide, acts.astype(np.float32))
    heads = trace.frame("blocks.0.attn.hook_v", tidy=True)
    assert list(heads.columns) == ["position", "token", "head", "dim", "value"]
    assert len(heads) == trace["blocks.0.attn.hook_v"].size


def test_frame_refuses_what_is_not_per_token(trace):
    with pytest.raises(ValueError, match="pattern_frame"):
        trace.frame("blocks.0.attn.hook_pattern")
    with pytest.raises(KeyError):
        trace.frame("blocks.99.hook_resid_post")


def test_pattern_frame_lists_each_visible_query_key_pair(trace):
    T = trace.n_tokens
    df = trace.pattern_frame(1, 2)
    assert list(df.columns) == ["query", "query_token", "key", "key_token", "weight", "score"]
    assert len(df) == T * (T + 1) // 2 and (df["key"] <= df["query"]).all()
    np.testing.assert_allclose(df.groupby("query")["weight"].sum(), 1.0, atol=3e-3)  # float16 patterns
    pattern, scores = trace.pattern(1, 2), trace["blocks.1.attn.hook_attn_scores"][2]
    np.testing.assert_array_equal(df["weight"], pattern[df["query"], df["key"]])
    np.testing.assert_allclose(df["score"], scores[df["query"], df["key"]], rtol=1e-6)
    assert df["query_token"].tolist() == [trace.tokens[i] for i in df["query"]]
    assert df["key_token"].tolist() == [trace.tokens[i] for i in df["key"]]
    with pytest.raises(IndexError):
        trace.pattern_frame(trace.config.n_layer, 0)
    with pytest.raises(IndexError):
        trace.pattern_frame(0, -1)


def test_pattern_frame_scores_agree_between_compact_and_full(model):
    compact, full = gptviz.run(model, TEXT), gptviz.run(model, TEXT, precision="full")
    a, b = compact.pattern_frame(0, 1), full.pattern_frame(0, 1)
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a["weight"], b["weight"], atol=1e-3)


def test_top_tokens_are_the_most_likely_next_tokens(trace):
    tok = gptviz.get_tokenizer(trace.config.tokenizer)
    for pos in (-1, 0, 3):
        df = trace.top_tokens(pos, k=7)
        probs = trace.probs(pos)
        assert list(df.columns) == ["rank", "id", "token", "prob", "logit"]
        assert df["rank"].tolist() == list(range(1, 8))
        assert df["id"].tolist() == np.argsort(-probs, kind="stable")[:7].tolist()
        assert df["prob"].is_monotonic_decreasing
        np.testing.assert_array_equal(df["prob"], probs[df["id"]])
        np.testing.assert_array_equal(df["logit"], trace.logits(pos)[df["id"]])
        assert df["token"].tolist() == [tok.token_str(int(i)) for i in df["id"]]
    assert len(trace.top_tokens(k=10**9)) == trace.config.vocab_size
    with pytest.raises(IndexError):
        trace.top_tokens(trace.n_tokens)


def test_views_of_a_saved_trace_match(tmp_path, gpt2_tiny):
    trace = gptviz.run(gpt2_tiny, TEXT)
    again = gptviz.load_trace(trace.save(tmp_path / "t.npz"))
    assert again.frame("blocks.1.hook_resid_post").equals(trace.frame("blocks.1.hook_resid_post"))
    assert again.pattern_frame(1, 0).equals(trace.pattern_frame(1, 0))
    assert again.top_tokens(k=5).equals(trace.top_tokens(k=5))
