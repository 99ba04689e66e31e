"""Classroom content as data: guided lessons through the five stages, the chart of each step
(built with ``gptviz.figures``), and the checkers of the "predict, then reveal" questions. No
Streamlit: ``pages/7_Lesson.py`` draws a ``Lesson`` step by step, and a test can check a verdict
against the trace by hand.

A lesson is a prompt, an optional selection (URL keys the other pages read too, such as
``attn_layer``), and steps in the order of the pipeline. A step names the stage whose chart it
shows, a short text (``str.format`` fields from ``facts``), and optionally a question.

A lesson with ``models`` compares several models on its prompt instead of walking the sidebar's
one: its steps are ``gen_*`` stages, drawn by ``compare_view`` from every model's own weights and
trace (``runs``: spec -> (model, trace)), their texts filled by ``compare_facts``, and their
questions multiple choice (``Question``), each answer computed from the same runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gptviz import figures, site
from gptviz.analysis import generation as gen
from gptviz.analysis import generations as gens
from gptviz.analysis import rotary
from gptviz.analysis.attention import head_stats, previous_token_score
from gptviz.analysis.embeddings import position_similarity, positional_table
from gptviz.figures import attention as fa
from gptviz.figures._base import visible
from gptviz.model import GPT
from gptviz.trace import Trace

_STAGE_PAGES = {
    "tokens": "pages/1_Tokenization.py",
    "embeddings": "pages/2_Embeddings.py",
    "positions": "pages/3_Positional_encoding.py",
    "attention": "pages/4_Attention.py",
    "heads": "pages/4_Attention.py",
    "residual": "pages/5_Feed-forward_and_residual.py",
    "output": "pages/6_Output.py",
    "temperature": "pages/6_Output.py",
    # the stages of a lesson comparing models (``Lesson.models``): where to explore each on one model
    "gen_positions": "pages/3_Positional_encoding.py",
    "gen_norm_place": "pages/5_Feed-forward_and_residual.py",
    "gen_norm_kind": "pages/5_Feed-forward_and_residual.py",
    "gen_ffn": "pages/5_Feed-forward_and_residual.py",
    "gen_attention": "pages/4_Attention.py",
    "gen_params": "pages/8_Side_by_side.py",
}
STAGES = {stage: (site.page(path).title, path) for stage, path in _STAGE_PAGES.items()}  # the titles: gptviz.site
QUIZZES = ("tokens", "attention", "next", "choice")
TEMPERATURES = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 3.0, 5.0]


@dataclass(frozen=True)
class Question:
    """A multiple-choice guess about several models (``quiz="choice"``). ``options`` are the
    answers offered (empty: the lesson's models, by spec); ``answer(runs)`` computes, from the
    models' weights and traces, the index of the right option and the Markdown that explains it."""

    text: str
    answer: Callable[[gens.Runs], tuple[int, str]]
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One screen of a lesson: the stage whose chart it shows, what to read, what to guess."""

    stage: str
    title: str
    text: str
    quiz: str | None = None
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    variant: str = ""  # another chart of the same stage (e.g. "similarity" for positions)
    rotary: tuple[str, str] | None = None  # (title, text) instead, for a rotary model (nothing is added)
    question: Question | None = None  # the multiple-choice question of quiz="choice"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}")
        if self.quiz is not None and self.quiz not in QUIZZES:
            raise ValueError(f"unknown quiz {self.quiz!r}")
        if (self.quiz == "choice") != (self.question is not None):
            raise ValueError("a step has a Question exactly when its quiz is 'choice'")


@dataclass(frozen=True)
class Lesson:
    key: str
    title: str
    summary: str
    prompt: str
    steps: tuple[Step, ...]
    selection: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    head: str = "selected"  # "selected": the kept layer/head; "previous-token": the best such head
    models: tuple[str, ...] = ()  # specs compared on the prompt (empty: the sidebar's model)

    def __post_init__(self) -> None:
        compare = [s.stage.startswith("gen_") for s in self.steps]
        if any(compare) and (not all(compare) or not self.models):
            raise ValueError(f"lesson {self.key!r}: gen_* steps need models, and only gen_* steps can use them")

    def step(self, i: int) -> Step:
        return self.steps[clamp_step(self, i)]


def clamp_step(lesson: Lesson, i: int) -> int:
    return max(0, min(int(i), len(lesson.steps) - 1))


def code(text: str) -> str:
    """``text`` as inline Markdown code (whitespace visible), safe for any backticks inside."""
    shown = visible(text)
    fence = "``" if "`" in shown else "`"
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


# --- the lessons ----------------------------------------------------------------------------

_TOKENS = Step(
    "tokens",
    "Step 1 · Cut the text into tokens",
    "A GPT never sees letters. First a **tokenizer** cuts the text into pieces from a fixed "
    "vocabulary and replaces each piece by its number. Our prompt has **{n_chars} characters**.",
    quiz="tokens",
)
_EMBED = Step(
    "embeddings",
    "Step 2 · Look up a vector for every token",
    "Each token id picks one row of the **embedding matrix**: a list of {d_model} numbers learned "
    "in training. Below, one row per token of the prompt, one column per number: the model now "
    "works with numbers, not words.",
)
_POS = Step(
    "positions",
    "Step 3 · Add where each token is",
    "Attention alone cannot tell *dog bites man* from *man bites dog*, so a **position vector** is "
    "added to every token's vector. The chart shows the last token, {last_token}: its embedding, "
    "its position vector ({pos_kind}) and their sum, which enters the first layer.",
    rotary=(
        "Step 3 · Turn queries and keys by where each token is",
        "Attention alone cannot tell *dog bites man* from *man bites dog*. This model adds nothing to the "
        "token vectors: inside every attention layer it **rotates** each query and key, pair of numbers by "
        "pair of numbers, by an angle that grows with the token's position ({pos_kind}). The chart shows "
        "the angle of every pair at every position: some pairs spin fast, others slowly, like clock hands.",
    ),
)
_ATTN = Step(
    "attention",
    "Step 4 · Tokens look back at each other",
    "In **self-attention** every token decides how much to look at each earlier token. Head "
    "{layer}.{head} (layer {layer}, head {head}) is shown: each row is a token looking back, each "
    "column a token looked at. Guess first: from the last token, {last_token}, where does this head look most?",
    quiz="attention",
)
_RESID = Step(
    "residual",
    "Step 5 · Think about each token, layer after layer",
    "After attention, a small **feed-forward network** works on each token on its own, and every "
    "sub-layer *adds* its result to a running vector per token, the **residual stream**. The chart: "
    "how long each token's vector is after each of the {n_layer} layers.",
)
_OUT = Step(
    "output",
    "Step 6 · Score every possible next token",
    "Finally the last token's vector is turned into one score per vocabulary entry ({vocab:,} of "
    "them), and a softmax makes the scores probabilities. Guess first: which token does the model "
    "think comes after {last_token}?",
    quiz="next",
)

HELLO = Lesson(
    key="hello",
    title="How does GPT read 'Hello, world!'",
    summary="The whole pipeline on the smallest example: tokens, vectors, positions, attention, "
    "the residual stream and the prediction, with three guesses on the way.",
    prompt="Hello, world!",
    steps=(_TOKENS, _EMBED, _POS, _ATTN, _RESID, _OUT),
    selection=MappingProxyType({"attn_layer": 0, "attn_head": 0}),
)

PREVIOUS_TOKEN = Lesson(
    key="previous-token",
    title="Find the previous-token head",
    summary="Some attention heads simply look one token back. Walk to the attention stage, find "
    "the head that does it best on a repetitive sentence, and predict where it looks.",
    prompt="The cat sat on the mat. The dog sat on the rug. The cat sat on the",
    head="previous-token",
    steps=(
        Step(
            "tokens",
            "Step 1 · The tokens, each at its position",
            "The sentence becomes {n_tokens} tokens. Every token has a **position** (the small number "
            "on hover): to look *one token back* a head needs to know which token came just before.",
        ),
        _EMBED,
        Step(
            "positions",
            "Step 3 · Positions make 'just before' visible",
            "Each position has its own vector ({pos_kind}). The chart compares the position vectors "
            "with each other: neighbours look alike, so a head can learn to prefer the position right "
            "before its own.",
            variant="similarity",
            rotary=(
                "Step 3 · Rotations make 'just before' visible",
                "This model rotates each query and key by its position ({pos_kind}). Because both are "
                "turned, their score depends only on **how far apart** two tokens are. The chart takes the "
                "last token's query and the previous token's key and moves them to every distance: the "
                "score changes with the distance, so a head can learn to prefer the token right before.",
            ),
        ),
        Step(
            "heads",
            "Step 4 · Search all {n_heads_total} heads",
            "Every small square is one head. A **previous-token head** draws a bright stripe just "
            "below the diagonal. The table scores each head: the average weight from every token to "
            "the one before it. The best here is head **{layer}.{head}** (score {prev_score:.2f}).",
        ),
        Step(
            "attention",
            "Step 5 · Predict where head {layer}.{head} looks",
            "This is head {layer}.{head} on its own. The last token is {last_token}; the token "
            "before it is {prev_token}. Guess first: which token does this head look at most from {last_token}?",
            quiz="attention",
        ),
        Step(
            "output",
            "Step 6 · And what comes next?",
            "Heads like this one help the model continue patterns it has seen. After "
            "{last_token} the model predicts the next token. Guess first, then check.",
            quiz="next",
        ),
    ),
)

TEMPERATURE = Lesson(
    key="temperature",
    title="Why temperature matters",
    summary="The model gives probabilities, not words. Walk to the output and see how the "
    "temperature setting makes writing predictable or wild.",
    prompt="ROMEO:\nBut, soft! what light through yonder window",
    selection=MappingProxyType({"attn_layer": 0, "attn_head": 0, "out_temperature": 1.0}),
    steps=(
        _TOKENS,
        _EMBED,
        _POS,
        Step(
            "attention",
            "Step 4 · Context flows through attention",
            "Attention mixes in what came before, so the last token's vector knows the whole line. "
            "Head {layer}.{head} is shown (pick another on the Attention page).",
        ),
        _OUT,
        Step(
            "temperature",
            "Step 7 · Cold: temperature {temperature}",
            "To write, the model **draws** a token. Before drawing, the scores are divided by the "
            "**temperature**. Below 1 the favourite gets stronger: text becomes safe and repetitive "
            "(temperature 0 always takes the top token).",
            settings=MappingProxyType({"out_temperature": 0.3}),
        ),
        Step(
            "temperature",
            "Step 8 · Hot: temperature {temperature}",
            "Above 1 the distribution flattens: unlikely tokens get a real chance, and text becomes "
            "surprising, then nonsense. Try the slider, then generate on the Output page.",
            settings=MappingProxyType({"out_temperature": 2.0}),
        ),
    ),
)

# --- three generations: the answers, computed from the models compared -------------------------


def _name(spec: str) -> str:
    return code(spec.removeprefix("bundled:"))


def _answer_positions(runs: gens.Runs) -> tuple[int, str]:
    specs = list(runs)
    bare = [gens.nothing_added(t) for _, t in runs.values()]
    i = bare.index(True) if True in bare else 0
    shares = " and ".join(
        f"{gens.position_share(t).mean():.2f} × in {_name(s)}"
        for s, (_, t) in runs.items()
        if not gens.nothing_added(t)
    )
    return i, (
        f"In {_name(specs[i])} the vector entering layer 0 is exactly the token's embedding: its positions are "
        f"rotations of the queries and keys inside every attention layer. The others add a position vector, on "
        f"average as long as the token's own vector times {shares}."
    )


def _answer_norm_place(runs: gens.Runs) -> tuple[int, str]:
    specs = list(runs)
    gaps = [float(gens.highway_gap(t)[-1]) for _, t in runs.values()]
    i = int(np.argmax(gaps))
    rest = ", ".join(f"{_name(s)} {g:.1e}" for s, g in zip(specs, gaps, strict=True) if s != specs[i])
    return i, (
        f"In {_name(specs[i])} (post-norm) the stream after the last layer is {gaps[i]:.0%} away from 'input + "
        f"everything the sub-layers wrote': each norm rescales the stream itself. Pre-norm models only normalise "
        f"a copy for each sub-layer, so the sum stays exact (distance {rest}: rounding)."
    )


_SHARE_OPTIONS = ("under 5% of its size", "between 5% and 30%", "more than 30%")


def _answer_norm_kind(runs: gens.Runs) -> tuple[int, str]:
    ln = [s for s, (m, _) in runs.items() if m.cfg.norm_kind == "layernorm" and m.cfg.norm == "pre"]
    ln = ln or [s for s, (m, _) in runs.items() if m.cfg.norm_kind == "layernorm"]
    share = float(np.median(gens.mean_share(runs[ln[0]][1])))
    i = 0 if share < 0.05 else 1 if share < 0.3 else 2
    every = ", ".join(f"{_name(s)} {np.median(gens.mean_share(t)):.1%}" for s, (_, t) in runs.items())
    return i, (
        f"In {_name(ln[0])}, the pre-norm LayerNorm model that RMSNorm replaced, the mean is typically "
        f"**{share:.1%}** of a vector's size (median over its norms; every model: {every}). Subtracting it "
        "changes little, so RMSNorm skips it, and the shift (bias) with it: half the norm's parameters."
    )


def _answer_ffn(runs: gens.Runs) -> tuple[int, str]:
    specs = list(runs)
    signs = [gens.neuron_signs(t) for _, t in runs.values()]
    i = int(np.argmin([s.min_over_max for s in signs]))
    rows = "; ".join(
        f"{_name(s)}: {g.zero:.0%} exactly 0, "
        + ("never below 0" if g.min_over_max >= 0 else f"the most negative {-g.min_over_max:.2f} × the largest")
        for s, g in zip(specs, signs, strict=True)
    )
    return i, (
        f"{_name(specs[i])}: its gate's SiLU multiplies an ungated 'up' value that can have either sign, so "
        f"a neuron can be as negative as positive. ReLU cuts every negative value to 0, GELU lets only small "
        f"negatives through ({rows})."
    )


_KV_OPTIONS = ("the same size", "half the size", "a quarter of the size")


def _answer_attention(runs: gens.Runs) -> tuple[int, str]:
    sizes = {s: gens.kv_size(t) for s, (_, t) in runs.items()}
    spec = min(sizes, key=lambda s: sizes[s].ratio)
    kv = sizes[spec]
    i = int(np.argmin([abs(kv.ratio - r) for r in (1.0, 0.5, 0.25)]))
    cfg = runs[spec][0].cfg
    return i, (
        f"{_name(spec)}'s {cfg.n_head} query heads share {cfg.kv_heads} K/V heads, so it keeps "
        f"{kv.per_token:,} numbers per token instead of {kv.per_token_full:,}: **{kv.ratio:.0%}**, "
        f"{kv.per_token * kv.context:,} for its full context of {kv.context} tokens."
    )


_PARAM_OPTIONS = ("token embeddings", "attention", "feed-forward", "output layer")


def _groups(parts: Mapping[str, int]) -> dict[str, int]:
    """The parts of ``analysis.generations.parameter_parts`` in the four groups the question offers."""
    attn = sum(v for k, v in parts.items() if k.startswith("attention"))
    return {
        "token embeddings": parts["token embeddings"],
        "attention": attn,
        "feed-forward": parts["feed-forward"],
        "output layer": parts["output layer"],
    }


def _answer_params(runs: gens.Runs) -> tuple[int, str]:
    spec = list(runs)[-1]
    model = runs[spec][0]
    groups = _groups(gens.parameter_parts(model))
    top = max(groups, key=groups.__getitem__)
    total = model.num_params()
    shares = ", ".join(f"{k} {v / total:.0%}" for k, v in groups.items())
    return _PARAM_OPTIONS.index(top), (
        f"{_name(spec)} keeps **{groups[top] / total:.0%}** of its {total:,} parameters in the {top} ({shares}; "
        "the rest: norms). A SwiGLU feed-forward has three matrices instead of two, and grouped-query "
        "attention makes the keys and values half the size of the queries."
    )


THREE_GENERATIONS = Lesson(
    key="three-generations",
    title="Three generations of GPT",
    summary="The same prompt through the seed (2017's design), a GPT-2-style model (2019) and a Llama-style "
    "model (today's). One step per design change, each measured on the three models' own weights and traces.",
    prompt="ROMEO:\nBut, soft! what light through yonder window breaks?",
    models=("bundled:seed", "bundled:gpt2-style", "bundled:llama-style"),
    steps=(
        Step(
            "gen_positions",
            "Step 1 · Where the position goes in",
            "The **seed** adds a fixed sine-wave vector to every token's vector, **gpt2-style** adds a learned "
            "one. **llama-style** adds nothing: inside every attention layer it *rotates* each query and key by "
            "an angle that grows with the position, so attention scores depend on how far apart two tokens "
            "are. The chart: how long the added position vector is, relative to the token's own vector.",
            quiz="choice",
            question=Question(
                "in which model is the vector entering layer 0 exactly the token's embedding, with nothing added?",
                _answer_positions,
            ),
        ),
        Step(
            "gen_norm_place",
            "Step 2 · Where the norm sits: after or before",
            "The **seed** is *post-norm*: it adds a sub-layer's output to the stream, then normalises the "
            "stream itself. **gpt2-style** and **llama-style** are *pre-norm*: each sub-layer reads a "
            "normalised copy, and its output is added to a stream no norm touches (one final norm before the "
            "output). That untouched 'highway' is what lets deep models train. The chart checks it: after each "
            "layer, how far the stream is from 'what entered + everything the sub-layers wrote'.",
            quiz="choice",
            question=Question(
                "in which model is the residual stream rewritten by its norms, so that it is no longer "
                "'input + everything the sub-layers wrote'?",
                _answer_norm_place,
            ),
        ),
        Step(
            "gen_norm_kind",
            "Step 3 · LayerNorm or RMSNorm",
            "**LayerNorm** (seed, gpt2-style) subtracts each vector's mean, divides by its spread, then scales "
            "and shifts: a weight and a bias for each of the vector's numbers. **RMSNorm** (llama-style) only divides "
            "by the root mean square and scales: no mean, no shift. The chart shows, at every norm, how big "
            "the mean LayerNorm would remove is, compared with the vector's size.",
            quiz="choice",
            question=Question(
                "in a pre-norm model, how big is the mean that LayerNorm subtracts, compared with the vector's size?",
                _answer_norm_kind,
                _SHARE_OPTIONS,
            ),
        ),
        Step(
            "gen_ffn",
            "Step 4 · ReLU, GELU, SwiGLU",
            "The feed-forward network lifts each token's vector to more numbers (hidden values), bends them, "
            "and brings them back. The **seed** bends with **ReLU** (negatives become 0), **gpt2-style** with "
            "**GELU** (a smooth ReLU), **llama-style** with **SwiGLU**: a second matrix makes a *gate*, "
            "SiLU(gate) × up. The chart sorts every hidden value of the prompt into exactly 0, below 0 and above 0.",
            quiz="choice",
            question=Question("in which model can a hidden value go about as far below zero as above?", _answer_ffn),
        ),
        Step(
            "gen_attention",
            "Step 5 · Full or grouped-query attention",
            "To write text, a model keeps every earlier token's keys and values (the **K/V cache**) instead of "
            "recomputing them. With full attention (seed, gpt2-style) each query head has its own K/V head; "
            "**llama-style** has {n_head_2} query heads that share {kv_heads_2} K/V heads (**grouped-query "
            "attention**). The chart: how many numbers each model's cache holds for a full context.",
            quiz="choice",
            question=Question(
                "llama-style's 4 query heads share 2 K/V heads. Compared with one K/V head per query head, "
                "its K/V cache is…",
                _answer_attention,
                _KV_OPTIONS,
            ),
        ),
        Step(
            "gen_params",
            "Step 6 · What each choice costs in parameters",
            "The seed has **{params_0:,}** parameters, gpt2-style **{params_1:,}**, llama-style **{params_2:,}**. "
            "Sinusoidal and rotary positions cost nothing; learned ones cost a vector per position "
            "({pos_params_1:,}). The seed's separate output layer costs {out_params_0:,}, a tied one nothing. "
            "RMSNorm has half LayerNorm's norm parameters, SwiGLU three matrices instead of two, grouped-query "
            "attention half the key/value weights.",
            quiz="choice",
            question=Question("where does llama-style keep most of its parameters?", _answer_params, _PARAM_OPTIONS),
        ),
    ),
)

LESSONS: dict[str, Lesson] = {lesson.key: lesson for lesson in (HELLO, PREVIOUS_TOKEN, TEMPERATURE, THREE_GENERATIONS)}


# --- facts a step's text can quote --------------------------------------------------------------


def best_previous_token_head(trace: Trace) -> tuple[int, int, float]:
    """The head whose attention to the token just before is highest on average: (layer, head, score)."""
    best = (0, 0, float("-inf"))
    for layer in range(trace.config.n_layer):
        scores = previous_token_score(trace["pattern", layer])
        for h, s in enumerate(np.nan_to_num(scores, nan=-1.0)):
            if s > best[2]:
                best = (layer, h, float(s))
    return best


def facts(
    trace: Trace, layer: int = 0, head: int = 0, name_of: Callable[[int], str] | None = None, **extra: Any
) -> dict[str, Any]:
    """Numbers and (Markdown-safe) token strings a step's text may quote."""
    cfg = trace.config
    probs = trace.probs()
    top = int(np.argmax(probs))
    prev = previous_token_score(trace["pattern", layer])[head] if trace.n_tokens > 1 else np.nan
    out = {
        "n_chars": len(trace.text),
        "n_tokens": trace.n_input_tokens,
        "d_model": cfg.d_model,
        "n_layer": cfg.n_layer,
        "n_heads_total": cfg.n_layer * cfg.n_head,
        "vocab": cfg.vocab_size,
        "pos_kind": {
            "sinusoidal": "fixed sine and cosine waves",
            "rotary": "rotary position embedding, RoPE",
        }.get(cfg.pos, "learned in training"),
        "rotary": cfg.pos == "rotary",
        "layer": layer,
        "head": head,
        "prev_score": float(np.nan_to_num(prev, nan=0.0)),
        "first_token": code(trace.tokens[0]),
        "last_token": code(trace.tokens[-1]),
        "prev_token": code(trace.tokens[-2]) if trace.n_tokens > 1 else "(none)",
        "top_prob": float(probs[top]),
        "temperature": extra.pop("temperature", 1.0),
    }
    if name_of is not None:
        out["top_token"] = code(name_of(top))
    out.update(extra)
    return out


def step_text(step: Step, fact: Mapping[str, Any]) -> tuple[str, str]:
    """The step's title and text with ``fact`` filled in (unknown fields are left as written)."""

    class _Keep(dict):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    values = _Keep(fact)
    title, text = step.rotary if step.rotary is not None and fact.get("rotary") else (step.title, step.text)
    try:
        return title.format_map(values), text.format_map(values)
    except (ValueError, IndexError):
        return title, text


# --- predict, then reveal ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether a guess was right, with the real answer spelled out (Markdown)."""

    correct: bool
    answer: Any
    explanation: str

    @property
    def text(self) -> str:
        return ("**Right!** " if self.correct else "**Not quite.** ") + self.explanation


def token_count_answer(trace: Trace) -> int:
    """How many tokens the tokenizer makes of the prompt (all of it, even past the context)."""
    return int(trace.n_input_tokens)


def check_token_count(trace: Trace, guess: int) -> Verdict:
    n = token_count_answer(trace)
    n_chars = len(trace.text)
    words = len(trace.text.split())
    if guess == n:
        how = f"the prompt is **{n} tokens**"
    else:
        how = f"you guessed {guess}, the prompt is **{n} tokens**"
    note = f" ({n_chars} characters, {words} words by spaces: spaces and punctuation usually belong to a token)"
    return Verdict(guess == n, n, how[0].upper() + how[1:] + note + ".")


def attention_answer(trace: Trace, layer: int, head: int, query: int = -1) -> list[int]:
    """The key position(s) head ``layer.head`` weights most from ``query`` (ties within 1e-6)."""
    q = query % trace.n_tokens
    row = trace.pattern(layer, head)[q, : q + 1]
    return [int(i) for i in np.flatnonzero(row >= row.max() - 1e-6)]


def check_attention(trace: Trace, layer: int, head: int, guess: int, query: int = -1) -> Verdict:
    q = query % trace.n_tokens
    row = trace.pattern(layer, head)[q, : q + 1]
    best = attention_answer(trace, layer, head, q)
    right = int(guess) in best
    top = best[0]
    explanation = (
        f"From {code(trace.tokens[q])} (position {q}), head {layer}.{head} looks most at "
        f"{code(trace.tokens[top])} (position {top}, weight {row[top]:.2f})."
    )
    if not right and 0 <= guess <= q:
        explanation += f" Your pick, {code(trace.tokens[guess])} (position {guess}), gets {row[guess]:.2f}."
    return Verdict(right, best, explanation)


def next_token_choices(trace: Trace, k: int = 4) -> list[int]:
    """``k`` candidate ids for the next-token question: the model's top ``k``, in id order (so
    the order gives nothing away)."""
    probs = trace.probs()
    k = max(1, min(k, len(probs)))
    return sorted(int(i) for i in np.argsort(-probs, kind="stable")[:k])


def next_token_answer(trace: Trace) -> int:
    return int(np.argmax(trace.probs()))


def check_next_token(trace: Trace, guess: int, name_of: Callable[[int], str]) -> Verdict:
    probs = trace.probs()
    top = next_token_answer(trace)
    right = int(guess) == top
    explanation = f"The model's favourite after {code(trace.tokens[-1])} is {code(name_of(top))} ({probs[top]:.1%})."
    if not right:
        rank = int((probs > probs[guess]).sum()) + 1
        explanation += f" Your pick {code(name_of(int(guess)))} has {probs[guess]:.1%} (rank {rank})."
    return Verdict(right, top, explanation)


# --- the chart of each step -----------------------------------------------------------------------


@dataclass(frozen=True)
class StepView:
    """What a step shows: a figure, its numbers (``None``: read them off the figure), a table
    to show below it, and a caption."""

    figure: go.Figure
    table: pd.DataFrame | None = None
    extra: pd.DataFrame | None = None
    caption: str = ""


def teaser(step: Step, trace: Trace, projector: bool = False) -> go.Figure:
    """The chart of a question step before the reveal: the material, not the answer."""
    t = trace
    if step.quiz == "tokens":
        chars = t.text[:400]
        title = f"The prompt as {len(t.text)} characters (Unicode number under each)"
        ids, raw = [ord(ch) for ch in chars], [ch.encode() for ch in chars]
        return figures.token_chips(list(chars), ids, raw, title, projector=projector)
    title = f"The {t.n_tokens} tokens (hover a chip for its position)"
    return figures.trace_chips(t, title=title, projector=projector)


def step_view(
    step: Step,
    trace: Trace,
    model: GPT,
    name_of: Callable[[int], str],
    layer: int = 0,
    head: int = 0,
    temperature: float = 1.0,
    projector: bool = False,
) -> StepView:
    """The chart of ``step`` for this trace (the same figure functions as the stage pages)."""
    t, P = trace, projector
    if step.stage == "tokens":
        table = figures.token_table(t.tokens, t.ids.tolist(), t.token_bytes)
        title = f"{t.n_tokens} tokens"
        return StepView(figures.trace_chips(t, title=title, projector=P), table)
    if step.stage == "embeddings":
        return StepView(figures.embedding_heatmap(t, projector=P))
    if step.stage == "positions" and t.config.pos == "rotary":  # nothing is added: show the rotation
        if step.variant == "similarity" and t.n_tokens > 1:
            q, k = t.n_tokens - 1, t.n_tokens - 2
            span, starts = rotary.relative_span(t.config, t.n_tokens, 1)
            rel = rotary.relative_scores(t, 0, 0, q, k, max_offset=min(span, 64), starts=starts)
            return StepView(figures.relative_position_curves(rel, t.tokens[q], t.tokens[k], projector=P))
        angles = rotary.rotary_angles(t.config, max(32, t.n_tokens))
        return StepView(figures.rotary_angle_heatmap(angles, projector=P))
    if step.stage == "positions" and step.variant == "similarity":
        pos = positional_table(model, max(8, t.n_tokens))
        return StepView(figures.position_similarity_heatmap(position_similarity(pos), projector=P))
    if step.stage == "positions":
        return StepView(figures.embedding_plus_position(t, t.n_tokens - 1, projector=P))
    if step.stage == "heads":
        stats = head_stats(t).sort_values("previous-token", ascending=False).reset_index()
        return StepView(
            fa.attention_grid(t, (layer, head), projector=P),
            extra=stats[["head", "previous-token", "first-token", "entropy"]],
        )
    if step.stage == "attention":
        return StepView(fa.attention_pattern(t, layer, head, projector=P))
    if step.stage == "residual":
        return StepView(figures.residual_norm_heatmap(t, projector=P))
    probs, logits = t.probs(), t.logits()
    top = gen.top_ids(probs, 10)
    names = [name_of(int(j)) for j in top]
    if step.stage == "output":
        return StepView(figures.next_token_chart(t, name_of, projector=P))
    shaped = gen.reshape(logits, temperature)
    fig = figures.reshaped_distribution(
        names, probs[top], shaped.probs[top], shaped.kept[top], f"temperature {temperature}", projector=P
    )
    caption = (
        f"At temperature {temperature} the top token gets {shaped.probs[top[0]]:.1%} (the model: {probs[top[0]]:.1%})."
    )
    return StepView(fig, caption=caption)


# --- lessons that compare models ------------------------------------------------------------------


def compare_facts(runs: gens.Runs) -> dict[str, Any]:
    """Numbers a comparing step's text may quote, ``_i`` for the lesson's ``i``-th model."""
    out: dict[str, Any] = {}
    for i, (model, _) in enumerate(runs.values()):
        cfg, parts = model.cfg, gens.parameter_parts(model)
        out.update({
            f"params_{i}": model.num_params(),
            f"pos_params_{i}": parts["position embeddings"],
            f"out_params_{i}": parts["output layer"],
            f"n_head_{i}": cfg.n_head,
            f"kv_heads_{i}": cfg.kv_heads,
        })  # fmt: skip
    first = next(iter(runs.values()))[0].cfg
    out["d_model"] = first.d_model
    return out


def question_options(step: Step, runs: gens.Runs) -> list[str]:
    """The answers a ``choice`` question offers (the lesson's models when it names none)."""
    assert step.question is not None
    return list(step.question.options or runs)


def check_choice(step: Step, runs: gens.Runs, guess: int) -> Verdict:
    """The verdict on option ``guess`` of ``step``'s question, from the runs' weights and traces."""
    assert step.question is not None
    right, explanation = step.question.answer(runs)
    options = question_options(step, runs)
    if guess != right and 0 <= guess < len(options):
        explanation = f"You picked {options[guess].removeprefix('bundled:')}. " + explanation
    return Verdict(guess == right, options[right], explanation)


def compare_teaser(runs: gens.Runs, projector: bool = False) -> StepView:
    """Before a comparing question's reveal: the three designs, not the measurement."""
    table = gens.design_table(runs)
    return StepView(figures.design_table(table, projector=projector), table)


def compare_view(step: Step, runs: gens.Runs, projector: bool = False) -> StepView:
    """The chart of a comparing step, from every model's own trace (or weights, for parameters)."""
    P, traces = projector, {s: t for s, (_, t) in runs.items()}
    if step.stage == "gen_positions":
        return StepView(figures.position_shares({s: gens.position_share(t) for s, t in traces.items()}, projector=P))
    if step.stage == "gen_norm_place":
        return StepView(figures.highway_gaps({s: gens.highway_gap(t) for s, t in traces.items()}, projector=P))
    if step.stage == "gen_norm_kind":
        return StepView(figures.mean_shares({s: gens.mean_share(t) for s, t in traces.items()}, projector=P))
    if step.stage == "gen_ffn":
        return StepView(figures.neuron_sign_bars({s: gens.neuron_signs(t) for s, t in traces.items()}, projector=P))
    if step.stage == "gen_attention":
        sizes = {s: gens.kv_size(t) for s, t in traces.items()}
        caption = " · ".join(
            f"{s.removeprefix('bundled:')}: {k.per_token:,} numbers per token" for s, k in sizes.items()
        )
        return StepView(figures.kv_cache_bars(sizes, projector=P), caption=caption)
    if step.stage == "gen_params":
        table = gens.parameter_table(runs)
        return StepView(figures.parameter_bars(table, projector=P), table)
    raise ValueError(f"{step.stage!r} is not a comparing stage")
