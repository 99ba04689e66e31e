"""Stage 4b beyond the trace: LayerNorm internals, the logit lens, direct logit attribution.

Everything here reads the model's *weights* (LayerNorm scale/shift, the unembedding) next to a
``Trace`` and returns plain arrays, so each result can be checked against the model's own
forward pass:

- ``layernorm_view``: one LayerNorm at one token, input → mean/std → normalized → ×weight +bias
  (RMSNorm: no mean subtracted, divided by the root mean square, ×weight, no shift).
- ``logit_lens``: decode the residual stream after every layer as if it were the last one.
- ``direct_logit_attribution``: split one logit into what each component wrote to the residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gptviz.config import GPTConfig
from gptviz.hooks import block_name
from gptviz.model import GPT
from gptviz.tokenizer import Tokenizer, get_tokenizer
from gptviz.trace import Trace

# --- the residual stream, stage by stage ------------------------------------------------------


def stage_labels(n_layer: int) -> list[str]:
    """Names of the residual-stream snapshots: the embeddings, then after each layer."""
    return ["embeddings"] + [f"after layer {i}" for i in range(n_layer)]


def residual_stack(trace: Trace, positions: range | slice | None = None) -> np.ndarray:
    """The residual stream at every stage, ``[n_layer + 1, T, D]`` float32 (only the columns
    of ``positions`` if given).

    Row 0 is layer 0's input (token + position), row ``i`` is layer ``i``'s input (= layer
    ``i-1``'s output), the last row is the final layer's output (what the unembedding reads,
    after the final LayerNorm for a pre-LN model).
    """
    L = trace.config.n_layer
    cols = slice(None) if positions is None else slice(positions.start, positions.stop)
    rows = [trace["resid_pre", i][cols] for i in range(L)] + [trace["resid_post", L - 1][cols]]
    return np.stack(rows).astype(np.float32)


# --- LayerNorm ---------------------------------------------------------------------------------


def norm_label(cfg: GPTConfig) -> str:
    """What the model's norms are called: "RMSNorm" (Llama and after) or "LayerNorm"."""
    return "RMSNorm" if cfg.norm_kind == "rmsnorm" else "LayerNorm"


def layernorm_names(cfg: GPTConfig) -> list[str]:
    """Every LayerNorm (or RMSNorm) of the model, in the order the data meets them."""
    names = [block_name(i, ln) for i in range(cfg.n_layer) for ln in ("ln1", "ln2")]
    return names + (["ln_final"] if cfg.final_ln else [])


def layernorm_role(cfg: GPTConfig, name: str) -> str:
    """Where this LayerNorm sits and what it reads, in one sentence."""
    if name == "ln_final":
        return f"the final {norm_label(cfg)}: normalizes the last layer's output before the unembedding"
    layer, ln = name.split(".")[1], name.split(".")[2]
    if cfg.norm == "pre":
        what = "attention" if ln == "ln1" else "the feed-forward network"
        src = "residual stream entering the layer" if ln == "ln1" else "residual stream after attention"
        if cfg.parallel and ln == "ln2":  # GPT-NeoX: both sub-layers read the block's input
            src = "residual stream entering the layer (a parallel block: the feed-forward network does not see attention's output)"
        return f"layer {layer}, before {what}: normalizes a copy of the {src} (the stream itself is unchanged)"
    added = "attention output" if ln == "ln1" else "feed-forward output"
    return f"layer {layer}, after the residual addition: normalizes (stream + {added}) and *becomes* the stream"


def layernorm_input(trace: Trace, name: str) -> np.ndarray:
    """What LayerNorm ``name`` reads, ``[T, D]``.

    pre-LN: ln1 reads ``resid_pre``, ln2 ``resid_mid``, ln_final the last ``resid_post``;
    in a parallel block (GPT-NeoX) ln2 reads ``resid_pre`` too: attention and the feed-forward
    network both see the block's input. post-LN: ln1 reads ``resid_pre + attn_out``, ln2
    ``resid_mid + mlp_out``.
    """
    cfg = trace.config
    if name == "ln_final":
        return trace["resid_post", cfg.n_layer - 1]
    _, layer, ln = name.split(".")
    i = int(layer)
    if cfg.norm == "pre":
        return trace["resid_pre", i] if ln == "ln1" or cfg.parallel else trace["resid_mid", i]
    if ln == "ln1":
        return trace["resid_pre", i] + trace["attn_out", i]
    return trace["resid_mid", i] + trace["mlp_out", i]


def _layernorm_module(model: GPT, name: str):
    if name == "ln_final":
        if model.ln_final is None:
            raise ValueError("this model (post-LN) has no final LayerNorm")
        return model.ln_final
    _, i, ln = name.split(".")
    return getattr(model.blocks[int(i)], ln)


@dataclass(frozen=True)
class LayerNormView:
    """One LayerNorm (or RMSNorm) applied to one token, step by step (vectors are ``[D]``).

    RMSNorm (``kind == "rmsnorm"``) subtracts nothing and shifts nothing: ``mean`` is 0 (not
    the vector's mean: the mean that was *subtracted*), ``std`` is the root mean square and
    ``bias`` is all zeros, so the same fields describe both and ``output`` is always
    ``normalized * weight + bias``."""

    name: str
    role: str
    pos: int
    x: np.ndarray  # the input
    mean: float  # what was subtracted (RMSNorm: 0)
    std: float  # sqrt(variance + eps), RMSNorm sqrt(mean square + eps): what the model divides by (= hook_scale)
    normalized: np.ndarray  # (x - mean) / std: mean 0, std ~1 (RMSNorm: root mean square ~1)
    weight: np.ndarray  # learned scale (gamma)
    bias: np.ndarray  # learned shift (beta; RMSNorm has none: zeros)
    output: np.ndarray  # normalized * weight + bias (= hook_normalized)
    kind: str = "layernorm"  # or "rmsnorm"

    @property
    def label(self) -> str:
        return "RMSNorm" if self.kind == "rmsnorm" else "LayerNorm"


def layernorm_view(model: GPT, trace: Trace, name: str, pos: int) -> LayerNormView:
    """LayerNorm ``name`` (e.g. ``"blocks.1.ln2"``, ``"ln_final"``) at token ``pos``, recomputed
    from its input and the model's weights."""
    ln = _layernorm_module(model, name)
    x = np.asarray(layernorm_input(trace, name)[pos], dtype=np.float64)
    rms = model.cfg.norm_kind == "rmsnorm"
    mean = 0.0 if rms else float(x.mean())
    std = float(np.sqrt(((x - mean) ** 2).mean() + ln.eps))
    normalized = (x - mean) / std
    w = ln.weight.detach().double().cpu().numpy()
    b = np.zeros_like(w) if rms else ln.bias.detach().double().cpu().numpy()
    role = layernorm_role(model.cfg, name)
    out = normalized * w + b
    return LayerNormView(name, role, pos, x, mean, std, normalized, w, b, out, model.cfg.norm_kind)


# --- the logit lens ------------------------------------------------------------------------------


def _final_norm(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """pre-LN: the final LayerNorm (or RMSNorm) with the vector's own statistics; post-LN:
    nothing to do (every layer already ends on a LayerNorm)."""
    ln = model.ln_final
    if ln is None:
        return x
    if model.cfg.norm_kind == "rmsnorm":
        return x / (x.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt() * ln.weight
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt() * ln.weight + ln.bias


@torch.inference_mode()
def lens_logits(model: GPT, resid: np.ndarray) -> np.ndarray:
    """Logits ``[T, V]`` for residual vectors ``[T, D]`` read as if they were the last layer's
    (float32 numpy; computed on the model's device in its dtype, as its own last layer is)."""
    x = torch.tensor(np.asarray(resid, dtype=np.float32)).to(model.device, model.dtype)
    return model.unembed(_final_norm(model, x)).float().cpu().numpy()


@dataclass(frozen=True)
class LogitLens:
    """The most likely next token at every stage (rows) and position (columns)."""

    labels: list[str]  # stage_labels: embeddings, after layer 0, ...
    top_ids: np.ndarray  # [n_layer + 1, n] int, n positions from ``first``
    top_probs: np.ndarray  # [n_layer + 1, n] float32
    top_tokens: list[list[str]]  # token text of top_ids (raw: escape before showing)
    first: int = 0  # the position of column 0 (a window of the prompt: see ``positions``)

    @property
    def positions(self) -> range:
        """The prompt positions the columns belong to."""
        return range(self.first, self.first + self.top_ids.shape[1])


def logit_lens(
    model: GPT, trace: Trace, tokenizer: Tokenizer | None = None, positions: range | None = None
) -> LogitLens:
    """Decode the residual stream after every layer through the final norm and the unembedding.

    The last row is exactly the model's own prediction; earlier rows show what the stream
    "would say" if the network stopped there (nostalgebraist's logit lens). ``positions`` (a
    contiguous range, default all) decodes only those columns: the cost is one unembedding per
    stage and position (at SmolLM2-135M shape and 125 tokens, 110 G multiply-adds, 1.65 s), so
    a page shows a readable window of positions and decodes only that.
    """
    tok = tokenizer or get_tokenizer(model.cfg.tokenizer)
    T = trace.n_tokens
    cols = range(T) if positions is None else positions
    if cols.step != 1 or not 0 <= cols.start < cols.stop <= T:
        raise ValueError(f"positions must be a contiguous range within 0..{T}, got {positions}")
    stack = residual_stack(trace, cols)  # [S, n, D], S = n_layer + 1
    top_ids, top_probs = _lens_top(model, stack.reshape(-1, stack.shape[-1]))
    top_ids, top_probs = top_ids.reshape(stack.shape[:2]), top_probs.reshape(stack.shape[:2])
    names = [[tok.token_str(int(i)) for i in row] for row in top_ids]
    return LogitLens(stage_labels(model.cfg.n_layer), top_ids, top_probs, names, cols.start)


def lens_window(n_tokens: int, pos: int, width: int) -> range:
    """``width`` consecutive positions that end at ``pos`` (or start at 0 when ``pos`` is near
    the start): the prompt up to the token a reader is looking at."""
    width = max(1, min(width, n_tokens))
    start = min(max(0, pos - width + 1), n_tokens - width)
    return range(start, start + width)


LENS_BLOCK_ELEMENTS = 2**20  # logits held at once (4 MB in float32: a block stays in cache)


@torch.inference_mode()
def _lens_top(model: GPT, resid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The likeliest token and its probability for each residual vector ``[N, D]``, with every
    stage and position in one product per block of vocabulary columns (a running maximum and
    log-sum-exp across blocks), so ``[N, V]`` logits never exist at once: at SmolLM2-135M shape
    that is 31 stages x 125 positions x 49,152 tokens. Measured there (the lens alone, median of
    3): one stage at a time 2.02 s, 16 M-element blocks 2.26 s, 1 M-element blocks 1.65 s."""
    x = torch.tensor(np.asarray(resid, dtype=np.float32)).to(model.device, model.dtype)
    h = _final_norm(model, x)
    w, b = model.unembed.weight, model.unembed.bias
    N, V = h.shape[0], w.shape[0]
    width = int(min(V, max(256, LENS_BLOCK_ELEMENTS // max(N, 1))))
    best = torch.full((N,), -torch.inf, device=h.device)
    arg = torch.zeros(N, dtype=torch.long, device=h.device)
    lse = torch.full((N,), -torch.inf, device=h.device)
    for v in range(0, V, width):
        z = torch.nn.functional.linear(h, w[v : v + width], None if b is None else b[v : v + width]).float()
        m, i = z.max(-1)
        better = m > best  # strict: a tie keeps the earlier token, as argmax does
        best, arg = torch.where(better, m, best), torch.where(better, i + v, arg)
        lse = torch.logaddexp(lse, torch.logsumexp(z, -1))
    return arg.cpu().numpy(), (best - lse).exp().cpu().numpy().astype(np.float32)


# --- direct logit attribution ---------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """How much each component of the residual stream adds to one token's logit at one position.

    ``values[i]`` belongs to ``labels[i]``; ``bias`` holds the LayerNorm shift(s) and output
    bias, so ``values.sum() + bias`` equals the logit the model computed (``logit``).
    """

    token_id: int
    pos: int
    labels: list[str]
    values: np.ndarray  # [1 + 2 * n_layer]
    bias: float
    logit: float
    exact: bool
    method: str
    bias_label: str = "bias (LN shift + output bias)"  # what the bias term holds, for the bar's name

    @property
    def total(self) -> float:
        return float(self.values.sum() + self.bias)


def component_labels(n_layer: int, rotary: bool = False) -> list[str]:
    """Bar labels: the embeddings (with the position vector, unless rotary: nothing is added),
    then each layer's attention and feed-forward output."""
    first = "embed" if rotary else "embed + pos"
    return [first] + [f"L{i} {part}" for i in range(n_layer) for part in ("attn", "mlp")]


def _components(trace: Trace, pos: int) -> list[np.ndarray]:
    """What each component wrote into the residual stream at ``pos``, in model order (a rotary
    model adds no position vector: its positions act inside attention)."""
    first = trace["hook_embed"][pos].astype(np.float64)
    if trace.config.pos != "rotary":
        first = first + trace["hook_pos_embed"][pos]
    out = [first]
    for i in range(trace.config.n_layer):
        out.append(trace["attn_out", i][pos].astype(np.float64))
        out.append(trace["mlp_out", i][pos].astype(np.float64))
    return out


def _frozen_ln(v: np.ndarray, scale: float, weight: np.ndarray, centre: bool = True) -> np.ndarray:
    """The linear part of a LayerNorm whose scale is fixed at an observed value (RMSNorm,
    ``centre=False``: nothing is subtracted, so a component passes as it is, rescaled)."""
    return ((v - v.mean()) if centre else v) / scale * weight


def direct_logit_attribution(model: GPT, trace: Trace, token_id: int | None = None, pos: int = -1) -> Attribution:
    """Split the logit of ``token_id`` (default: the model's top prediction) after ``pos``.

    pre-LN (exact): the final residual is the sum of the components (also in a parallel block:
    ``resid_post = resid_pre + attn_out + mlp_out``); the final LayerNorm is linear once its
    scale (``ln_final.hook_scale``, the std of the *whole* sum) is fixed, so component ``c``
    contributes ``((c - mean c) / scale * w) · W_U[:, token]`` and ``b · W_U[:, token]`` (+ the
    output bias, if any) is the bias term. RMSNorm: the same without ``- mean c`` and without
    ``b``. ``W_U`` is the output layer's own weight, tied to the embeddings or not.

    post-LN (approximate): every sub-layer is followed by a LayerNorm of the stream plus its
    output. Each LayerNorm is frozen at the scale it had in this run, so a component is carried
    through every later LayerNorm (centre, divide by that scale, times its weight) and each
    LayerNorm's shift joins the bias term. The parts still add up to the logit, but each
    LayerNorm's scale was set by *all* components together, so a bar is a component's share in
    this context, not what it would contribute alone.
    """
    cfg = model.cfg
    T = trace.n_tokens
    pos = pos % T
    if token_id is None:
        token_id = int(np.argmax(trace.logits(pos)))
    u = model.unembed.weight[token_id].detach().double().cpu().numpy()  # W_U[:, token]
    out_bias = float(model.unembed.bias.detach()[token_id]) if model.unembed.bias is not None else 0.0
    comps = _components(trace, pos)

    rms = cfg.norm_kind == "rmsnorm"
    labels = component_labels(cfg.n_layer, cfg.pos == "rotary")

    def weights(ln) -> tuple[np.ndarray, np.ndarray]:
        w = ln.weight.detach().double().cpu().numpy()
        return w, np.zeros_like(w) if rms else ln.bias.detach().double().cpu().numpy()

    if cfg.norm == "pre":
        scale = float(trace["ln_final.hook_scale"][pos, 0])
        w, b = weights(model.ln_final)
        values = np.array([_frozen_ln(c, scale, w, not rms) @ u for c in comps])
        bias = float(b @ u) + out_bias
        what = "RMSNorm's root mean square" if rms else "LayerNorm's scale"
        method = (
            f"exact: the final {what} is read from this run, which makes it linear, so the "
            "bars plus the bias term add up to the logit"
        )
        if rms:  # RMSNorm has no shift: the bias term is the output bias or nothing
            bias_label = "output bias" if model.unembed.bias is not None else "bias (none: RMSNorm has no shift)"
        else:
            bias_label = "bias (LN shift + output bias)" if model.unembed.bias is not None else "bias (LN shift)"
        logit = float(trace.logits(pos)[token_id])
        return Attribution(token_id, pos, labels, values, bias, logit, True, method, bias_label)

    parts: list[np.ndarray] = [comps[0]]
    shift = np.zeros(cfg.d_model)
    for i in range(cfg.n_layer):
        for j, ln_name in enumerate(("ln1", "ln2")):
            parts.append(comps[1 + 2 * i + j])
            scale = float(trace["scale", i, ln_name][pos, 0])
            w, b = weights(getattr(model.blocks[i], ln_name))
            parts = [_frozen_ln(p, scale, w, not rms) for p in parts]
            shift = _frozen_ln(shift, scale, w, not rms) + b
    values = np.array([p @ u for p in parts])
    method = (
        "approximate: the seed's model normalizes after every sub-layer; each LayerNorm is frozen at the "
        "scale it had in this run and every component is carried through the LayerNorms after it"
    )
    return Attribution(
        token_id,
        pos,
        labels,
        values,
        float(shift @ u) + out_bias,
        float(trace.logits(pos)[token_id]),
        False,
        method,
    )
