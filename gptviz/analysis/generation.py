"""Stage 5 beyond the trace: turning logits into a next token, and generating text step by step.

The decoding recipe is the one Hugging Face ``generate`` uses, in the same order:
divide the logits by the **temperature**, keep the **top-k** highest, keep the smallest set of
tokens whose probabilities (after temperature and top-k) add up to at least **top-p**, and
renormalise. Temperature 0 means greedy: always the single most likely token.

Randomness is explicit: every draw takes a ``numpy.random.Generator``; ``rng_for(seed, step)``
makes one per generation step, so the same seed and settings give the same tokens on every
machine and every rerun of the page. Draws are made on the CPU from the logits copied to the
host, so a model on a GPU gives the same tokens for a seed as on the CPU (up to the logits'
own rounding differences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gptviz.model import GPT, KVCache
from gptviz.tokenizer import Tokenizer

_EPS = 1e-9  # tolerance when a cumulative probability "reaches" top_p


@dataclass(frozen=True)
class Reshaped:
    """A sampling distribution: ``probs`` (float64, sums to 1) and ``kept`` (False = cut)."""

    probs: np.ndarray
    kept: np.ndarray


@dataclass(frozen=True)
class Candidate:
    """One possible next token: the model's own probability (softmax, temperature 1), its
    logit, its probability under the sampling settings in use, and its rank (1 = most likely)."""

    id: int
    token: str
    prob: float
    logit: float
    sample_prob: float
    rank: int


@dataclass(frozen=True)
class Step:
    """One generated token and the top candidates it was chosen from."""

    chosen: int
    candidates: tuple[Candidate, ...]

    @property
    def chosen_candidate(self) -> Candidate:
        return next(c for c in self.candidates if c.id == self.chosen)

    def rows(self) -> list[tuple[str, float, bool, int]]:
        """``(token, model probability, is_chosen, rank)`` per candidate: a timeline column."""
        return [(c.token, c.prob, c.id == self.chosen, c.rank) for c in self.candidates]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def reshape(logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Reshaped:
    """Temperature, then top-k, then top-p (nucleus) on one logit vector ``[V]``.

    ``top_k <= 0`` or ``top_k >= V`` keeps every token; ``top_p >= 1`` keeps every token;
    ``temperature <= 0`` is greedy (one-hot on the first argmax). At least one token is always
    kept. Ties are broken by token id (lower id first), so the result is deterministic.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if z.size == 0:
        raise ValueError("logits are empty")
    if not np.isfinite(z).any():
        raise ValueError("logits have no finite value")
    z = np.where(np.isnan(z), -np.inf, z)
    V = z.size
    if temperature <= 0:
        kept = np.zeros(V, dtype=bool)
        kept[int(np.argmax(z))] = True
        return Reshaped(kept.astype(np.float64), kept)
    order = np.argsort(-z, kind="stable")  # most likely first, ties by id
    p = softmax(z / float(temperature))
    n_keep = V
    if 0 < top_k < V:
        n_keep = int(top_k)
    if top_p < 1.0:
        head = p[order[:n_keep]]
        cum = np.cumsum(head / head.sum())
        n_keep = min(n_keep, int(np.searchsorted(cum, top_p - _EPS, side="left")) + 1)
    kept = np.zeros(V, dtype=bool)
    kept[order[: max(1, n_keep)]] = True
    out = np.where(kept, p, 0.0)
    return Reshaped(out / out.sum(), kept)


def sampling_distribution(
    logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> np.ndarray:
    """Next-token probabilities after temperature, top-k and top-p (float64 ``[V]``, sums to 1)."""
    return reshape(logits, temperature, top_k, top_p).probs


def rng_for(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """A generator determined by (``seed``, ``step``): reruns and replays draw the same numbers.
    ``stream`` separates independent uses (0: generation, 1: the repeated-sampling histogram)."""
    return np.random.default_rng([int(stream), int(seed), int(step)])


def sample(probs: np.ndarray, rng: np.random.Generator, n: int | None = None) -> int | np.ndarray:
    """Draw token ids from ``probs`` by inverse CDF (tokens with probability 0 are never drawn).
    One id (``n is None``) or an array of ``n`` ids."""
    p = np.asarray(probs, dtype=np.float64)
    cum = np.cumsum(p)
    last = int(np.flatnonzero(p > 0)[-1])
    u = rng.random(1 if n is None else n) * cum[-1]
    ids = np.minimum(np.searchsorted(cum, u, side="right"), last)
    return int(ids[0]) if n is None else ids


def sample_counts(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """How often each token comes up in ``n`` independent draws (``[V]`` int counts)."""
    return np.bincount(sample(probs, rng, n), minlength=len(probs))


def draw_summary(
    probs: np.ndarray, n: int, rng: np.random.Generator, k: int
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """``n`` draws from ``probs``, summarised for a chart: the ``k`` most likely drawable ids,
    how often each was drawn, and the probability and draw count of all the other tokens."""
    p = np.asarray(probs, dtype=np.float64)
    counts = sample_counts(p, n, rng)
    ids = np.array([i for i in top_ids(p, k) if p[i] > 0], dtype=np.int64)
    return ids, counts[ids], max(0.0, 1.0 - float(p[ids].sum())), int(n - counts[ids].sum())


def top_ids(probs: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most likely token ids, most likely first (ties by id)."""
    return np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")[:k]


def context_window(ids: Sequence[int], n_ctx: int) -> list[int]:
    """The last ``n_ctx`` ids: what the model can still read."""
    return list(ids)[-n_ctx:]


@torch.inference_mode()
def next_logits(model: GPT, ids: Sequence[int]) -> np.ndarray:
    """Float32 logits ``[V]`` for the token after ``ids`` (fused fast path, last ``n_ctx`` ids)."""
    x = torch.tensor([context_window(ids, model.cfg.n_ctx)], dtype=torch.long, device=model.device)
    return model(x, fused=True)[0, -1].float().cpu().numpy()


def candidates(
    tokenizer: Tokenizer, logits: np.ndarray, sample_probs: np.ndarray, n: int, chosen: int | None = None
) -> tuple[Candidate, ...]:
    """The ``n`` most likely tokens (model probability), plus ``chosen`` if it is not among them."""
    p = softmax(logits)
    ids = [int(i) for i in top_ids(p, n)]
    if chosen is not None and chosen not in ids:
        ids.append(int(chosen))
    return tuple(
        Candidate(i, tokenizer.token_str(i), float(p[i]), float(logits[i]), float(sample_probs[i]), r + 1)
        if r < n
        else Candidate(i, tokenizer.token_str(i), float(p[i]), float(logits[i]), float(sample_probs[i]), _rank(p, i))
        for r, i in enumerate(ids)
    )


def _rank(p: np.ndarray, i: int) -> int:
    """1-based rank of token ``i`` in ``p`` (ties by id, as ``top_ids``)."""
    return int((p > p[i]).sum() + ((p == p[i]) & (np.arange(len(p)) < i)).sum()) + 1


def generate_step(
    model: GPT,
    tokenizer: Tokenizer,
    ids: Sequence[int],
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: np.random.Generator | None = None,
    n_candidates: int = 5,
) -> tuple[int, tuple[Candidate, ...]]:
    """Run the model on ``ids`` (its last ``n_ctx``), reshape, draw one token.

    Returns the chosen id and the top ``n_candidates`` by model probability (the chosen token
    is appended if it is not among them). ``temperature <= 0`` is greedy and needs no ``rng``.
    """
    if not len(ids):
        raise ValueError("generation needs at least one token of context")
    logits = next_logits(model, ids)
    probs = sampling_distribution(logits, temperature, top_k, top_p)
    if temperature <= 0:
        chosen = int(np.argmax(probs))
    else:
        if rng is None:
            raise ValueError("sampling needs a random generator: pass rng=rng_for(seed, step)")
        chosen = int(sample(probs, rng))
    return chosen, candidates(tokenizer, logits, probs, n_candidates, chosen)


def generate(
    model: GPT,
    tokenizer: Tokenizer,
    ids: Sequence[int],
    n_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    start: int = 0,
) -> list[int]:
    """``n_tokens`` new ids after ``ids``; step ``s`` draws with ``rng_for(seed, start + s)``,
    so generating one token at a time (the page's button) gives the same tokens."""
    ids, out = list(ids), []
    for s in range(n_tokens):
        chosen, _ = generate_step(model, tokenizer, ids + out, temperature, top_k, top_p, rng_for(seed, start + s))
        out.append(chosen)
    return out


@torch.inference_mode()
def continuation_steps(
    model: GPT,
    tokenizer: Tokenizer,
    prompt_ids: Sequence[int],
    generated: Sequence[int],
    n_candidates: int = 5,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> list[Step]:
    """Each generated token with the top candidates the model offered at that step.

    Recomputed from the ids alone (so a continuation restored from a link shows its timeline):
    one forward pass when everything fits in the context, else one window per step.
    """
    prompt_ids, generated = list(prompt_ids), [int(g) for g in generated]
    if not generated:
        return []
    full = prompt_ids + generated
    n_ctx = model.cfg.n_ctx
    if len(full) - 1 <= n_ctx:
        x = torch.tensor([full[:-1]], dtype=torch.long, device=model.device)
        rows = model(x, fused=True)[0, len(prompt_ids) - 1 :].float().cpu().numpy()
    else:
        rows = np.stack([next_logits(model, full[: len(prompt_ids) + s]) for s in range(len(generated))])
    steps = []
    for row, chosen in zip(rows, generated, strict=True):
        probs = sampling_distribution(row, temperature, top_k, top_p)
        steps.append(Step(chosen, candidates(tokenizer, row, probs, n_candidates, chosen)))
    return steps


# --- generation with a KV cache ----------------------------------------------------------------


class CachedGeneration:
    """Generation as a serving GPT does it: each new token computes only its own query, key and
    value, and reads every earlier key and value from a ``KVCache``.

    The cache is a value owned by this object (one per sequence, e.g. one per browser session),
    passed to ``model.forward``: the shared model holds no per-call state, so the per-call hook
    guarantee holds. When the sequence outgrows the context, the cache is rebuilt on the last
    ``n_ctx`` tokens, which is what ``next_logits`` reads too, so both give the same numbers.
    """

    def __init__(self, model: GPT, ids: Sequence[int]) -> None:
        if not len(ids):
            raise ValueError("generation needs at least one token of context")
        self.model = model
        self.ids: list[int] = [int(i) for i in ids]
        self.cache = KVCache()
        self.cached: list[int] = []  # the ids whose keys and values the cache holds, in order
        self.computed = 0  # token positions run through the model so far (prefill + steps)
        self._logits: np.ndarray | None = None  # the last result, while ``ids`` has not changed

    @torch.inference_mode()
    def next_logits(self) -> np.ndarray:
        """Float32 logits ``[V]`` for the token after ``self.ids``: runs only the ids not yet
        cached (all of them the first time, one per step after that)."""
        n_ctx = self.model.cfg.n_ctx
        window = context_window(self.ids, n_ctx)
        if window == self.cached and self._logits is not None:
            return self._logits
        if self.cached != window[: len(self.cached)] or len(window) <= len(self.cached):
            self.cache, self.cached = KVCache(), []  # slid past the context (or rewound): rebuild
        new = window[len(self.cached) :]
        x = torch.tensor([new], dtype=torch.long, device=self.model.device)
        self._logits = self.model(x, fused=True, cache=self.cache)[0, -1].float().cpu().numpy()
        self.cached = window
        self.computed += len(new)
        return self._logits

    def append(self, token: int) -> None:
        self.ids.append(int(token))

    def step(
        self,
        tokenizer: Tokenizer,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        rng: np.random.Generator | None = None,
        n_candidates: int = 5,
    ) -> tuple[int, tuple[Candidate, ...]]:
        """One token, drawn exactly as ``generate_step`` draws it (same reshaping, same rng
        use), appended to ``self.ids``; returns it with the top candidates."""
        logits = self.next_logits()
        probs = sampling_distribution(logits, temperature, top_k, top_p)
        if temperature <= 0:
            chosen = int(np.argmax(probs))
        else:
            if rng is None:
                raise ValueError("sampling needs a random generator: pass rng=rng_for(seed, step)")
            chosen = int(sample(probs, rng))
        self.append(chosen)
        return chosen, candidates(tokenizer, logits, probs, n_candidates, chosen)


def generate_cached(
    model: GPT,
    tokenizer: Tokenizer,
    ids: Sequence[int],
    n_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    start: int = 0,
    logits_out: list[np.ndarray] | None = None,
) -> list[int]:
    """``generate`` with a KV cache: the same tokens for the same seed and settings (step ``s``
    draws with ``rng_for(seed, start + s)``), each step running one token instead of all.
    ``logits_out``, if given, receives each step's logits (the test compares them)."""
    run = CachedGeneration(model, ids)
    out = []
    for s in range(n_tokens):
        if logits_out is not None:
            logits_out.append(run.next_logits())
        chosen, _ = run.step(tokenizer, temperature, top_k, top_p, rng_for(seed, start + s))
        out.append(chosen)
    return out
