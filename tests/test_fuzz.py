"""Fuzzed prompts: whatever a classroom pastes, gptviz runs it and shows it as text.

Over 1,000 generated prompts (hypothesis) go through ``gptviz.run`` and through the figure and
analysis functions of every page, on tiny random models (both recipes) and the bundled model.
Prompts mix empty and whitespace-only text, control characters, emoji, combining marks,
right-to-left text, lone surrogates, ``<|endoftext|>``, HTML and Markdown/LaTeX, and (as explicit
examples) 100,000 characters. What must hold:

- ``run`` raises nothing but ``EmptyPromptError`` (for a prompt with no tokens); long input is
  cut to the context with ``trace.truncated``; tokenization is lossless (lone surrogates read as
  U+FFFD, the same way in ``trace.text`` and in the ids);
- no string in any figure's JSON holds user text as markup: once the few tags our own code
  writes (``<br>``, ``<sub>``, ``<extra>``…) are removed, no ``<`` and no ``$`` is left, and the
  token text is there, escaped (``&lt;``, ``&#36;``), and unescapes back to the token exactly;
- DataFrames (token table, head statistics) hold the token text literally (no entities).

A few hostile prompts also go through every page of the real app (AppTest).
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gptviz
from gptviz import figures as F
from gptviz.analysis import (
    Ablation,
    direct_logit_attribution,
    embedding_pca,
    head_stats,
    induction_scores,
    layernorm_view,
    logit_lens,
    nearest_tokens,
    position_similarity,
    positional_table,
    tokenize_view,
)
from gptviz.analysis import generation as gen
from gptviz.analysis.attention import compare_next_token
from gptviz.analysis.lens import layernorm_names
from gptviz.checkpoints import BUNDLED, bundled_tokenizer_name
from gptviz.figures import attention as fa
from gptviz.figures import output as fo
from gptviz.figures import residual as fr
from gptviz.hooks import count_hooks
from gptviz.tokenizer import clean_text, get_tokenizer, show_bytes
from tests.apptest_utils import ROOT, assert_ok, figures, open_page
from tests.conftest import tiny_model

# --- prompts ---------------------------------------------------------------------------------

MARKER = "<zq>"  # a tag no code of ours writes: it must only ever reach a figure escaped
FRAGMENTS = [
    "",
    " ",
    "   \n\t ",
    "\r\n",
    "\x00",
    "\x1b[31mred\x1b[0m",
    "\x7f\x85\u2028\u2029",
    "\ufeff",
    "\u200b\u200d",
    "😀",
    "👩\u200d👩\u200d👧\u200d👦",
    "🇫🇷",
    "e\u0301\u0302\u0303",
    "Z\u0351\u0352\u0353\u0354\u0355",
    "שלום עולם",
    "مرحبا بالعالم",
    "\u202eevil\u202c",
    "\u200fRTL\u200e",
    "\ud800",
    "\udfff",
    "\ud83d\ude00",  # a surrogate pair spelled out: becomes 😀
    "<|endoftext|>",
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "<b>bold</b>",
    "<br>",
    "<i>it</i>",
    '<a href="javascript:alert(1)">link</a>',
    "<sub>2</sub>",
    "</extra>",
    "**bold**",
    "__under__",
    "$x$",
    "$$\\frac{1}{2}$$",
    "`code`",
    "[link](http://example.com)",
    "![img](http://example.com/a.png)",
    ":red[alert] :material/home:",
    "%{x}%{customdata[0]}",
    "&lt;b&gt; &amp; &#36;",
    "\\x00 \\n",
    MARKER,
    "$",
]
_chars = st.characters(codec=None, exclude_categories=())  # every code point, surrogates too
PROMPTS = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(_chars, max_size=12), st.text(max_size=30)), max_size=8
).map("".join)
HUGE = [
    "word " * 20_000,
    "😀" * 100_000,
    "<b>" * 33_334,
    "a" * 100_000,
    "e\u0301" * 50_000,
    ("\ud800x" * 50_000),
]
ALLOWED_TAGS = re.compile(r"</?(?:br|sub|extra)>")  # what our own figure code writes
FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- models (loaded once, shared, as st.cache_resource does) -----------------------------------


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@functools.cache
def model_named(name: str) -> gptviz.GPT:
    if name.startswith("tiny-"):
        return tiny_model(name.removeprefix("tiny-"))
    return gptviz.load_model(name)


MODELS = ["tiny-gpt2", "tiny-seed", "bundled:gpt2-style"]


@functools.cache
def induction(name: str) -> np.ndarray:
    return induction_scores(model_named(name))


# --- what each page draws, without Streamlit ----------------------------------------------------
# Each function returns (figure, the escaped token texts that figure must contain).


def shown(t, n: int = 20) -> list[str]:
    """The labels of the first ``n`` prompt tokens (every token figure names at least those)."""
    return [F.label(x) for x in t.tokens[: min(n, 20)]]


def page_tokenization(model, t, pos):
    tok = get_tokenizer(model.cfg.tokenizer)
    figs = [(F.token_chips(t.tokens, t.ids.tolist(), t.token_bytes, title="tokens"), shown(t))]
    for name in ("gpt2", bundled_tokenizer_name()):
        view = tokenize_view(get_tokenizer(name), t.text[:5000])
        figs.append((F.token_chips(view.tokens, view.ids, view.token_bytes, row_width=30), ()))
    words = list(dict.fromkeys(w for w in tok.pre_tokens(t.text[:5000]) if w.strip()))[:200]
    for word in words[:1] + words[-1:]:
        steps = tok.merge_steps(word)
        figs.append((F.bpe_merges(steps, len(steps) - 1), ()))
    return figs


def page_embeddings(model, t, pos):
    tok = get_tokenizer(model.cfg.tokenizer)
    near = nearest_tokens(model, np.array(t["hook_embed"][pos]), k=12, exclude=int(t.ids[pos]))
    pca = embedding_pca(model, t.ids.tolist()[:40], neighbours=4)
    names = [tok.token_str(int(i)) for i in pca["ids"]]
    return [
        (F.embedding_heatmap(t), shown(t)),
        (F.vector_norms(t), shown(t)),
        (F.nearest_tokens_bar([(tok.token_str(i), s) for i, s in near], t.tokens[pos]), [F.label(t.tokens[pos])]),
        (F.embedding_scatter(pca["coords"], names, pca["is_prompt"], pca["explained"]), ()),
    ]


def page_positions(model, t, pos):
    table = positional_table(model, min(model.cfg.n_ctx, max(8, t.n_tokens)))
    return [
        (F.positional_heatmap(table, model.cfg.pos), ()),
        (F.positional_curves(table, [0, 1, 4], model.cfg.pos), ()),
        (F.position_similarity_heatmap(position_similarity(table)), ()),
        (F.embedding_plus_position(t, pos), [F.esc(repr(t.tokens[pos]))]),
    ]


def page_attention(model, t, pos, name):
    tok = get_tokenizer(model.cfg.tokenizer)
    layer, head = model.cfg.n_layer - 1, model.cfg.n_head - 1
    figs = [(fa.attention_pattern(t, layer, head), shown(t)), (fa.attention_grid(t, (layer, head)), ())]
    figs += [(f, shown(t)) for f in fa.attention_steps(t, layer, head, min(t.n_tokens, 20))]
    figs.append((fa.attention_from_token(t, layer, pos), shown(t, pos + 1)))
    ab = Ablation(((0, 1),), (), "mean")
    after = gptviz.run(model, t.text, extra_hooks=ab.hooks())
    cmp = compare_next_token(t.probs(), after.probs(), k=8)
    words = [tok.token_str(int(i)) for i in cmp["ids"]]
    figs.append((fa.next_token_bars(words, cmp["before"], cmp["after"], cmp["kl"]), ()))
    figs.append((fa.attention_pattern(after, layer, head, title=f"after ({ab.describe()})"), shown(t)))
    stats = head_stats(t, induction(name))
    assert stats.shape[0] == model.cfg.n_layer * model.cfg.n_head
    assert np.isfinite(stats[["entropy", "induction"]].to_numpy()).all()
    return figs


def page_residual(model, t, pos):
    tok = get_tokenizer(model.cfg.tokenizer)
    acts = t["blocks.0.mlp.hook_post"]
    figs = [
        (fr.mlp_activation_heatmap(acts, t.tokens, 0, 64), shown(t)),
        (fr.top_neurons_bar(acts, pos, t.tokens, 0), [F.label(t.tokens[pos])]),
        (fr.residual_norm_heatmap(t), shown(t)),
        (fr.sublayer_norms(t), ()),
    ]
    ln = layernorm_names(model.cfg)[-1]
    figs.append((fr.layernorm_figure(layernorm_view(model, t, ln, pos), t.tokens[pos]), [F.label(t.tokens[pos])]))
    figs.append((fr.logit_lens_heatmap(logit_lens(model, t), t.tokens), shown(t)))
    target = int(np.argmax(t.probs()))
    attr = direct_logit_attribution(model, t, target)
    assert attr.total == pytest.approx(attr.logit, rel=1e-3, abs=1e-2)
    figs.append((fr.logit_attribution(attr, tok.token_str(target)), ()))
    after = gptviz.run(model, t.text, extra_hooks=Ablation((), ((0, 3),), "zero").hooks())
    cmp = compare_next_token(t.probs(), after.probs(), k=10)
    names = [tok.token_str(int(i)) for i in cmp["ids"]]
    figs.append((fa.next_token_bars(names, cmp["before"], cmp["after"], cmp["kl"], ids=cmp["ids"]), ()))
    return figs


def page_output(model, t, pos):
    tok = get_tokenizer(model.cfg.tokenizer)
    logits, probs = t.logits(pos), t.probs(pos)
    top = gen.top_ids(probs, 15)
    names = [tok.token_str(int(i)) for i in top]
    shaped = gen.reshape(logits, 0.8, 10, 0.9)
    ids = tok.encode(t.text)
    generated = gen.generate(model, tok, ids, 2, 1.0, seed=1)
    steps = gen.continuation_steps(model, tok, ids, generated)
    drawn, counts, other_p, other_n = gen.draw_summary(shaped.probs, 200, gen.rng_for(0, 200, 1), 15)
    return [
        (fo.next_token_distribution(names, probs[top], logits[top], top, t.tokens[pos]), [F.label(t.tokens[pos])]),
        (fo.reshaped_distribution(names, probs[top], shaped.probs[top], shaped.kept[top], "t 0.8"), ()),
        (fo.generation_timeline([s.rows() for s in steps]), ()),
        (
            fo.sampling_histogram(
                [tok.token_str(int(i)) for i in drawn], shaped.probs[drawn], counts, other_p, other_n
            ),
            (),
        ),
    ]


PAGES = {
    "tokenization": page_tokenization,
    "embeddings": page_embeddings,
    "positions": page_positions,
    "attention": page_attention,
    "residual": page_residual,
    "output": page_output,
}


# --- checks ------------------------------------------------------------------------------------


def strings(obj) -> Iterator[str]:
    """Every string value inside a figure's JSON (dict keys are ours, not user text)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from strings(v)
    elif isinstance(obj, np.ndarray) and obj.dtype.kind in "OUS":
        for v in obj.ravel():
            yield from strings(v)


def assert_safe(fig, expected=()) -> str:
    """No user markup anywhere in ``fig``, and each ``expected`` (escaped) text is in it."""
    spec = fig.to_plotly_json()
    spec["layout"].pop("template", None)
    texts = set(strings(spec))
    for s in texts:
        bare = ALLOWED_TAGS.sub("", s)
        assert "<" not in bare, f"raw '<' in figure text: {s[:200]!r}"
        assert "$" not in bare, f"raw '$' in figure text: {s[:200]!r}"
        assert MARKER not in s
    blob = "\x00".join(texts)
    for text in expected:
        assert text in blob, f"{text!r} is not in the figure"
    return blob


def assert_trace_ok(model, text: str, trace) -> None:
    tok = get_tokenizer(model.cfg.tokenizer)
    clean = clean_text(text)
    all_ids = tok.encode(text)
    assert trace.text == clean
    trace.text.encode("utf-8")  # valid UTF-8: it can be sent to a browser
    assert trace.n_input_tokens == len(all_ids)
    assert trace.ids.tolist() == all_ids[: model.cfg.n_ctx]
    assert trace.truncated == (len(all_ids) > model.cfg.n_ctx)
    assert trace.n_tokens == min(len(all_ids), model.cfg.n_ctx) >= 1
    assert trace.tokens == tuple(show_bytes(b) for b in trace.token_bytes)
    if not trace.truncated:
        assert b"".join(trace.token_bytes) == clean.encode("utf-8")  # lossless
    assert all(0 <= i < model.cfg.vocab_size for i in trace.ids.tolist())
    assert np.isfinite(trace.logits(-1)).all()
    assert trace.probs(-1).sum() == pytest.approx(1.0, abs=1e-4)
    assert count_hooks(model) == 0
    for t in trace.tokens:
        shown = F.label(t)
        assert "<" not in shown and ">" not in shown and "$" not in shown
        assert html.unescape(shown) == F.visible(t)  # escaping loses nothing
    table = F.token_table(trace.tokens, trace.ids.tolist(), trace.token_bytes)
    assert table["token"].tolist() == [F.visible(t) for t in trace.tokens]  # literal, not escaped
    assert table["id"].tolist() == trace.ids.tolist()
    if hasattr(trace, "frame"):
        assert trace.frame("hook_embed")["token"].tolist() == list(trace.tokens)


def run_or_empty(model, text: str):
    """``gptviz.run``; an empty prompt is the one allowed error (and only for no tokens)."""
    if text == "":
        with pytest.raises(gptviz.EmptyPromptError):
            gptviz.run(model, text)
        return None
    trace = gptviz.run(model, text)
    assert_trace_ok(model, text, trace)
    return trace


# --- 1. gptviz.run: 940 prompts ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-gpt2", "bundled:gpt2-style"])
@settings(FAST, max_examples=470)
@given(text=PROMPTS)
@example(text="")
@example(text=" ")
@example(text="\ud800")
@example(text="<|endoftext|>")
@example(text=HUGE[0])
@example(text=HUGE[1])
@example(text=HUGE[5])
def test_run_takes_any_prompt(name, text):
    model = model_named(name)
    run_or_empty(model, text)


def test_huge_prompts_are_truncated_with_a_flag():
    for name in ("tiny-gpt2", "bundled:gpt2-style"):
        model = model_named(name)
        for text in HUGE:
            trace = run_or_empty(model, text)
            assert trace.truncated and trace.n_tokens == model.cfg.n_ctx
            assert trace.text == clean_text(text)


# --- 2. every page's figures: 6 × 6 prompts (+ 3 explicit each) ---------------------------------


@pytest.mark.parametrize("page", list(PAGES))
@settings(FAST, max_examples=6)
@given(text=PROMPTS.filter(bool), name=st.sampled_from(MODELS), first=st.booleans())
@example(text="<script>alert(1)</script> $x$ **b** <|endoftext|>", name="bundled:gpt2-style", first=True)
@example(text="\ud800 שלום 😀 e\u0301", name="tiny-seed", first=False)
@example(text="a" * 100_000, name="tiny-gpt2", first=False)
def test_every_page_figure_shows_text_escaped(page, text, name, first):
    model = model_named(name)
    trace = gptviz.run(model, text)
    pos = 0 if first else trace.n_tokens - 1
    args = (model, trace, pos, name) if page == "attention" else (model, trace, pos)
    for fig, expected in PAGES[page](*args):
        assert_safe(fig, expected)
    assert count_hooks(model) == 0


# --- 3. the marker: 50 prompts starting with "<zq>$" -------------------------------------------


@settings(FAST, max_examples=50)
@given(text=PROMPTS, name=st.sampled_from(MODELS))
def test_marker_reaches_token_figures_only_escaped(text, name):
    model = model_named(name)
    trace = gptviz.run(model, MARKER + "$" + text)
    blob = assert_safe(F.token_chips(trace.tokens, trace.ids.tolist(), trace.token_bytes), shown(trace, 5))
    assert "&lt;" in blob and "&#36;" in blob


# --- 4. every vocabulary token (what the analysis pages name) ------------------------------------


@pytest.mark.parametrize("name", sorted({"gpt2", *(bundled_tokenizer_name(b) for b in BUNDLED)}))
def test_every_vocabulary_token_is_escaped_losslessly(name):
    tok = get_tokenizer(name)
    for i in range(tok.vocab_size):
        t = tok.token_str(i)
        shown = F.label(t)
        assert "<" not in shown and ">" not in shown and "$" not in shown, (i, t)
        assert html.unescape(shown) == F.visible(t), (i, t)


# --- 5. long words and long prompts stay small figures ---------------------------------------------


def test_long_words_and_prompts_give_bounded_figures():
    tok = get_tokenizer("gpt2")
    for word in ("e" * 5000, "ꙮ" * 5000):
        steps = tok.merge_steps(word)
        assert len(steps[0]) <= 64
        spec = F.bpe_merges(steps).to_plotly_json()
        assert len(spec["layout"]["shapes"]) <= 64 * 64
    steps = tok.merge_steps("e" * 1000, max_bytes=None)  # a caller may replay a whole word...
    assert len(steps[0]) == 1000 and len(steps) > 64
    spec = F.bpe_merges(steps).to_plotly_json()  # ...and the figure still draws a bounded part
    assert len(spec["layout"]["shapes"]) <= 64 * 64 and "from merge" in spec["layout"]["title"]["text"]
    view = tokenize_view(tok, "😀" * 1000)
    fig = F.token_chips(view.tokens, view.ids, view.token_bytes, title="gpt2")
    assert len(fig.data[0].text) == len(fig.data[1].x) == 1024 and "of 2,000 tokens" in fig.layout.title.text


# --- 6. the real app: hostile prompts through every page ------------------------------------------

HOSTILE = (
    '<script>alert(1)</script><img src=x onerror="alert(1)"> <b>b</b><br><i>i</i><a href="x">a</a> '
    "**bold** $x^2$ `tick` ![img](http://example.com/a.png) <|endoftext|>\n"
    "\x00\x1b[31m\u202eevil\u202c שלום 👩\u200d👩\u200d👧 e\u0301\u0302 <zq> $ %{x}"
)
APP_PAGES = [None, *sorted(p.name for p in (ROOT / "pages").glob("*.py"))]  # home and every page


@pytest.mark.parametrize("page", APP_PAGES)
def test_hostile_prompt_through_every_page(page):
    at = open_page(page, prompt=HOSTILE, ablate_heads="0.1", ablate_neurons="0.3")
    assert_ok(at)
    assert at.sidebar.text_area[0].value == HOSTILE
    specs = figures(at)
    assert specs or page is None
    for key, spec in specs.items():
        spec["layout"].pop("template", None)
        for s in strings(spec):
            bare = ALLOWED_TAGS.sub("", s)
            assert "<" not in bare and "$" not in bare, (page, key, s[:200])
    if page == "1_Tokenization.py":
        chips = json.dumps(specs["chips"])
        assert "&lt;" in chips and "&#36;" in chips
        tables = [d.value for d in at.dataframe if "token" in d.value.columns]
        assert tables and "<" in "".join(tables[0]["token"])  # the table holds the text as it is
