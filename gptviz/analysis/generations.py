"""Three generations of GPT design compared on one prompt: the numbers of the "Three
generations" lesson, each read off the models' real weights or the prompt's real traces.

Every function takes ``runs``: model spec -> ``(model, trace)`` of the same text, in the order
the lesson shows them (2017, 2019, today). Nothing here knows which model is which: the answers
of the lesson's questions come from these numbers, so a retrained model cannot make the lesson
say something its weights contradict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gptviz.config import GPTConfig
from gptviz.model import GPT
from gptviz.trace import Trace

Runs = Mapping[str, tuple[GPT, Trace]]

PARTS = (
    "token embeddings",
    "position embeddings",
    "attention: queries",
    "attention: keys and values",
    "attention: output",
    "norms",
    "feed-forward",
    "output layer",
)


def _part(name: str, cfg: GPTConfig, rows: int) -> dict[str, int]:
    """Parameters of one tensor by part; ``c_attn`` is split into its q rows and k/v rows."""
    if name.startswith("embed."):
        return {"token embeddings": rows}
    if name.startswith("pos_embed."):
        return {"position embeddings": rows}
    if name.startswith("unembed."):
        return {"output layer": rows}
    if ".attn.c_attn." in name:
        q = cfg.n_head * cfg.d_head
        per_row = rows // ((cfg.n_head + 2 * cfg.kv_heads) * cfg.d_head)
        return {"attention: queries": q * per_row, "attention: keys and values": rows - q * per_row}
    if ".attn.c_proj." in name:
        return {"attention: output": rows}
    if ".mlp." in name:
        return {"feed-forward": rows}
    if name.startswith("ln_final.") or ".ln1." in name or ".ln2." in name or "_norm." in name:
        return {"norms": rows}
    raise ValueError(f"parameter {name!r} belongs to no part")


def parameter_parts(model: GPT) -> dict[str, int]:
    """Parameters per part of the model (``PARTS``). A tied output layer shares the embedding
    matrix and adds nothing (``named_parameters`` lists a shared tensor once), so the parts sum
    to ``model.num_params()``. Sinusoidal and rotary positions are computed, not learned: 0."""
    out = dict.fromkeys(PARTS, 0)
    for name, p in model.named_parameters():
        for part, n in _part(name, model.cfg, p.numel()).items():
            out[part] += n
    return out


def parameter_table(runs: Runs) -> pd.DataFrame:
    """One row per part, one column per model (and a total row): what each design spends where."""
    cols = {spec: parameter_parts(model) for spec, (model, _) in runs.items()}
    df = pd.DataFrame({"part": list(PARTS), **{s: [c[p] for p in PARTS] for s, c in cols.items()}})
    total = {"part": "total", **{s: sum(c.values()) for s, c in cols.items()}}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def position_share(trace: Trace) -> np.ndarray:
    """``[T]``: length of the position vector added at each position of the prompt over the
    length of the token's own vector; zeros for a rotary model, which adds nothing."""
    emb = np.asarray(trace["hook_embed"], dtype=np.float64)
    if "hook_pos_embed" not in trace:
        return np.zeros(trace.n_tokens)
    pos = np.asarray(trace["hook_pos_embed"], dtype=np.float64)
    return np.linalg.norm(pos, axis=-1) / np.linalg.norm(emb, axis=-1)


def nothing_added(trace: Trace) -> bool:
    """Whether the vector entering layer 0 is exactly the token embedding (no position added)."""
    return bool(np.array_equal(trace["resid_pre", 0], trace["hook_embed"]))


def residual_sizes(trace: Trace) -> np.ndarray:
    """``[n_layer + 1]``: the residual stream's root mean square per number, averaged over the
    prompt's tokens, entering layer 0 and after each layer. A post-norm model normalises the
    stream at the end of each layer, so it stays near the norm's weights; pre-norm lets it grow."""
    cfg = trace.config
    streams = [trace["resid_pre", 0]] + [trace["resid_post", i] for i in range(cfg.n_layer)]
    return np.array([float(np.sqrt((np.asarray(s, np.float64) ** 2).mean(-1)).mean()) for s in streams])


def growth(trace: Trace) -> float:
    """How much the residual stream's size changes across the layers: largest over smallest."""
    sizes = residual_sizes(trace)[1:]
    return float(sizes.max() / sizes.min())


def highway_gap(trace: Trace) -> np.ndarray:
    """``[n_layer]``: after each layer, how far the residual stream is from "what entered layer 0
    plus everything the sub-layers wrote so far" (relative distance, averaged over tokens).
    Pre-norm keeps that sum untouched (0: the norms only see copies); post-norm rewrites the
    stream at every norm, so the sum is lost from the first layer on."""
    cfg = trace.config
    total = np.asarray(trace["resid_pre", 0], np.float64)
    gaps = []
    for i in range(cfg.n_layer):
        total = total + trace["attn_out", i] + trace["mlp_out", i]
        post = np.asarray(trace["resid_post", i], np.float64)
        gaps.append(float((np.linalg.norm(post - total, axis=-1) / np.linalg.norm(post, axis=-1)).mean()))
    return np.array(gaps)


def norm_inputs(trace: Trace) -> list[np.ndarray]:
    """What each of the model's norms receives, ``[T, D]`` each, ln1 and ln2 of every layer:
    pre-norm, the residual stream before each sub-layer; post-norm, the stream plus the
    sub-layer's output (the norm comes after the addition)."""
    cfg, out = trace.config, []
    for i in range(cfg.n_layer):
        if cfg.norm == "pre":
            out += [trace["resid_pre", i], trace["resid_mid", i]]
        else:
            out += [trace["resid_pre", i] + trace["attn_out", i], trace["resid_mid", i] + trace["mlp_out", i]]
    return [np.asarray(x, dtype=np.float64) for x in out]


def mean_share(trace: Trace) -> np.ndarray:
    """``[2 * n_layer]``: for each norm, |mean of a vector's numbers| over their root mean
    square, averaged over tokens. LayerNorm subtracts that mean, RMSNorm does not: where it is
    small, the two norms do almost the same thing, and RMSNorm saves the work and the shift."""
    vals = []
    for x in norm_inputs(trace):
        rms = np.sqrt((x**2).mean(-1))
        vals.append(float((np.abs(x.mean(-1)) / rms).mean()))
    return np.array(vals)


@dataclass(frozen=True)
class NeuronSigns:
    """Shares of the feed-forward's hidden values (after the activation, or act(gate) × up) over
    every layer and token of the prompt: exactly zero, negative, positive."""

    zero: float
    negative: float
    positive: float
    min_over_max: float  # the most negative value over the largest: how far below zero it goes


def neuron_signs(trace: Trace) -> NeuronSigns:
    vals = np.concatenate(
        [np.asarray(trace["post", i], np.float32).ravel() for i in range(trace.config.n_layer)]
    ).astype(np.float64)
    n = vals.size
    return NeuronSigns(
        float((vals == 0).sum() / n),
        float((vals < 0).sum() / n),
        float((vals > 0).sum() / n),
        float(vals.min() / vals.max()),
    )


@dataclass(frozen=True)
class KVSize:
    """Numbers a K/V cache keeps per token (over all layers), read off the trace's K and V
    (``[T, K, Dh]`` per layer), and what it would keep with one K/V head per query head."""

    per_token: int
    per_token_full: int  # with n_head K/V heads (multi-head attention)
    context: int  # the model's context length

    @property
    def ratio(self) -> float:
        return self.per_token / self.per_token_full


def kv_size(trace: Trace) -> KVSize:
    cfg = trace.config
    per = sum(int(np.prod(trace[kind, i].shape[1:])) for i in range(cfg.n_layer) for kind in ("k", "v"))
    full = sum(trace["q", i].shape[1] * trace[kind, i].shape[2] for i in range(cfg.n_layer) for kind in ("k", "v"))
    return KVSize(per, full, cfg.n_ctx)


_ACT = {"relu": "ReLU", "gelu": "GELU", "gelu_new": "GELU (tanh)", "silu": "SiLU"}


def design(cfg: GPTConfig) -> dict[str, str]:
    """The design choices the lesson compares, in words (a row per choice)."""
    ffn = _ACT[cfg.act] if cfg.ffn == "mlp" else f"gated: {_ACT[cfg.act]}(gate) × up"
    ffn += " (SwiGLU)" if cfg.ffn == "gated" and cfg.act == "silu" else ""
    heads = (
        f"{cfg.n_head} query heads, {cfg.kv_heads} K/V heads" if cfg.kv_heads < cfg.n_head else f"{cfg.n_head} heads"
    )
    return {
        "positions": {
            "sinusoidal": "sine waves added",
            "learned": "learned vectors added",
            "rotary": "rotation of q and k",
        }[cfg.pos],
        "norm placement": f"{cfg.norm}-norm",
        "norm": "RMSNorm" if cfg.norm_kind == "rmsnorm" else "LayerNorm",
        "feed-forward": ffn,
        "attention": heads + (" (grouped-query)" if cfg.kv_heads < cfg.n_head else " (full)"),
        "output layer": "tied to the embeddings" if cfg.tie_weights else "separate matrix",
        "size": f"{cfg.n_layer} layers, d = {cfg.d_model}, feed-forward {cfg.d_mlp}",
    }


def design_table(runs: Runs) -> pd.DataFrame:
    rows = {spec: design(model.cfg) for spec, (model, _) in runs.items()}
    keys = list(next(iter(rows.values())))
    return pd.DataFrame({"choice": keys, **{s: [r[k] for k in keys] for s, r in rows.items()}})
