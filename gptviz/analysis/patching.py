"""Activation patching: which activations carry the answer?

Run the model on a *corrupted* prompt and copy one activation (a residual-stream vector, an
attention or feed-forward output at one position, one head's output) from the run on the
*clean* prompt ("denoising"), or the other way round ("noising"). How far the answer moves
says how much that activation carries. The metric is the logit difference between two answer
tokens at the last position, normalised so that

- denoising: 1 = the patch fully restores the clean answer, 0 = no effect;
- noising: 1 = the patch fully moves the clean run to the corrupted answer, 0 = no effect

(so a component that carries the answer scores ~1 in both directions, and noising mirrors
denoising on a model where one component carries everything).

Everything is computed from hooks, never from the block's internals, so it holds for every
architecture gptviz opens. A head's output into the residual stream is linear in its
``hook_z`` slice (``z[..., h, :] @ W_O_h.T``, the output bias added once for all heads), so
patching a head's ``hook_z`` slice patches exactly its output.

Patches are batched: ``k`` patched copies of the prompt run as one forward pass of batch ``k``.
``MAX_WORK`` caps the work one request may ask for, in forward-pass equivalents (one patched
sequence = 1), so one user cannot stall a shared server; the serving mode reuses it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from gptviz.hooks import hook_name, hooks

if TYPE_CHECKING:
    import pandas as pd

    from gptviz.model import GPT
    from gptviz.tokenizer import TokenizerBase

Kind = Literal["resid_pre", "attn_out", "mlp_out", "head", "head_pos"]
Direction = Literal["denoise", "noise"]
Progress = Callable[[int, int], None]

KINDS: tuple[Kind, ...] = ("resid_pre", "attn_out", "mlp_out", "head", "head_pos")
KIND_LABELS = {
    "resid_pre": "residual stream (layer, position)",
    "attn_out": "attention output (layer, position)",
    "mlp_out": "feed-forward output (layer, position)",
    "head": "each head's output, all positions (layer, head)",
    "head_pos": "each head's output at one position (layer, head, position)",
}
# The most work one request may ask for, in forward-pass equivalents at the request's token
# count: every (layer, head, position) of GPT-2 small at 20 tokens (12 x 12 x 20 = 2,880
# patches) fits, every (layer, head, position) at 64 tokens does not.
MAX_WORK = 4096
MAX_TOKENS = 256  # the longest prompt pair patched per request
LOGITS_BUDGET_BYTES = 256 * 2**20  # a patched batch's activations and logits stay about under this


class PatchingError(ValueError):
    """A patching request that cannot run as asked (its message says why, for the page)."""


class TokenCountMismatch(PatchingError):
    """The two prompts tokenize to different counts; patching matches them position by position."""

    def __init__(self, n_clean: int, n_corrupt: int) -> None:
        self.n_clean, self.n_corrupt = n_clean, n_corrupt
        super().__init__(
            f"the clean prompt has {n_clean} tokens and the corrupted prompt has {n_corrupt}; "
            "patching copies activations position by position, so both need the same token count"
        )


class WorkCapError(PatchingError):
    """The request would take more forward passes than ``MAX_WORK``."""

    def __init__(self, work: int, cap: int) -> None:
        self.work, self.cap = work, cap
        super().__init__(
            f"this request needs {work:,} forward-pass equivalents, more than the cap of {cap:,} "
            "per request; choose a coarser kind of patch or shorter prompts"
        )


@dataclass(frozen=True)
class Patch:
    """One patch: replace activation ``kind`` at ``layer`` (``head``) at ``positions`` (``None``:
    all) by the source run's value."""

    kind: Kind
    layer: int
    head: int | None = None
    positions: tuple[int, ...] | None = None


@dataclass(frozen=True)
class LogitDiff:
    """``logit[answer] - logit[wrong]`` after position ``pos``: the metric of the classic
    name-mover experiments (the clean answer against the corrupted one)."""

    answer: int
    wrong: int
    pos: int = -1

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, V]`` -> metric ``[B]``."""
        last = logits[:, self.pos]
        return last[:, self.answer] - last[:, self.wrong]


@dataclass(frozen=True)
class PatchingResult:
    """The patching map: ``values`` normalised (see the module), ``raw`` the metric after each
    patch, both shaped ``[layer, position]`` (``resid_pre``, ``attn_out``, ``mlp_out``),
    ``[layer, head]`` (``head``) or ``[layer, head, position]`` (``head_pos``)."""

    kind: Kind
    direction: Direction
    values: np.ndarray
    raw: np.ndarray
    clean: float  # the metric on the clean prompt
    corrupt: float  # the metric on the corrupted prompt
    metric: LogitDiff
    work: int  # forward-pass equivalents spent
    method: str = "exact"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def axes(self) -> tuple[str, ...]:
        return {"head": ("layer", "head"), "head_pos": ("layer", "head", "position")}.get(
            self.kind, ("layer", "position")
        )

    def frame(self) -> pd.DataFrame:
        """One row per patch: its coordinates (``layer``, ``position`` and/or ``head``), the
        normalised ``value`` and the ``raw`` metric, for notebooks."""
        import pandas as pd

        idx = np.indices(self.values.shape).reshape(len(self.axes), -1)
        data = {a: idx[i] for i, a in enumerate(self.axes)}
        data["value"] = self.values.reshape(-1)
        data["raw"] = self.raw.reshape(-1)
        return pd.DataFrame(data)


def token_ids(tokenizer: TokenizerBase, clean: str, corrupt: str) -> tuple[list[int], list[int]]:
    """Both prompts' ids; raises ``TokenCountMismatch`` (both counts in its message) if they
    differ in length, and ``PatchingError`` if either is empty or too long."""
    a, b = tokenizer.encode(clean), tokenizer.encode(corrupt)
    check_pair(a, b)
    return a, b


def check_pair(clean_ids: Sequence[int], corrupt_ids: Sequence[int], n_ctx: int | None = None) -> int:
    """The shared token count of a prompt pair, or the error that says why it cannot be patched."""
    n, m = len(clean_ids), len(corrupt_ids)
    if n == 0 or m == 0:
        raise PatchingError("both prompts need at least one token")
    if n != m:
        raise TokenCountMismatch(n, m)
    cap = MAX_TOKENS if n_ctx is None else min(MAX_TOKENS, n_ctx)
    if n > cap:
        raise PatchingError(f"the prompts have {n} tokens; patching takes at most {cap}")
    return n


def default_metric(model: GPT, clean_ids: Sequence[int], corrupt_ids: Sequence[int]) -> LogitDiff:
    """The clean run's top token against the corrupted run's top token (its second choice
    if both runs agree, so the difference means something)."""
    logits = _forward(model, torch.tensor([list(clean_ids), list(corrupt_ids)]))[:, -1]
    answer = int(logits[0].argmax())
    order = torch.argsort(logits[1], descending=True)
    wrong = int(order[0]) if int(order[0]) != answer else int(order[1])
    return LogitDiff(answer, wrong)


def top_answers(model: GPT, clean_ids: Sequence[int], corrupt_ids: Sequence[int], k: int = 8) -> list[int]:
    """The ``k`` likeliest next tokens of each run (clean first), the candidates for a metric."""
    logits = _forward(model, torch.tensor([list(clean_ids), list(corrupt_ids)]))[:, -1]
    k = min(k, logits.shape[-1])
    return list(dict.fromkeys([*logits[0].topk(k).indices.tolist(), *logits[1].topk(k).indices.tolist()]))


def patches_for(kind: Kind, n_layer: int, n_head: int, n_tokens: int) -> list[Patch]:
    """Every patch of one kind, in the order of the result's cells (row-major)."""
    if kind in ("resid_pre", "attn_out", "mlp_out"):
        return [Patch(kind, layer, None, (p,)) for layer in range(n_layer) for p in range(n_tokens)]
    if kind == "head":
        return [Patch("head", layer, h) for layer in range(n_layer) for h in range(n_head)]
    if kind == "head_pos":
        return [
            Patch("head", layer, h, (p,)) for layer in range(n_layer) for h in range(n_head) for p in range(n_tokens)
        ]
    raise PatchingError(f"unknown kind of patch {kind!r}; choose one of {KINDS}")


def grid_shape(kind: Kind, n_layer: int, n_head: int, n_tokens: int) -> tuple[int, ...]:
    return {"head": (n_layer, n_head), "head_pos": (n_layer, n_head, n_tokens)}.get(kind, (n_layer, n_tokens))


def work(kind: Kind, n_layer: int, n_head: int, n_tokens: int) -> int:
    """Forward-pass equivalents of one exact map: one per patch, plus the two plain runs."""
    return int(np.prod(grid_shape(kind, n_layer, n_head, n_tokens))) + 2


def _hook(kind: Kind, layer: int) -> str:
    return hook_name("z" if kind in ("head", "head_pos") else kind, layer)


def last_position_only(model: GPT) -> tuple[str, Callable[[torch.Tensor, str], torch.Tensor]]:
    """A hook that keeps only the last position of the stream the unembedding reads (the final
    norm's output, else the last block's output), so a patched run computes the logits ``[B, 1,
    V]`` it needs rather than ``[B, T, V]``: at GPT-2-small shape and 20 tokens the unembedding
    is about a third of a forward pass. Positions before the last are complete by then (the
    model is causal and nothing after this point mixes positions)."""
    points = getattr(model, "hook_points", {})
    name = "ln_final.hook_normalized"
    if getattr(model, "ln_final", None) is None or name not in points:
        name = hook_name("resid_post", model.cfg.n_layer - 1)
    return name, lambda x, _n: x[:, -1:]


def _forward(model: GPT, ids: torch.Tensor, fwd_hooks: list | None = None) -> torch.Tensor:
    device = next(model.parameters()).device
    with torch.no_grad(), hooks(model, fwd_hooks or []):
        return model(ids.to(device))


def _capture(
    model: GPT, ids: Sequence[int], names: set[str], extra: list | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The activations ``names`` (batch axis dropped) and the logits of one run."""
    acts: dict[str, torch.Tensor] = {}

    def grab(x: torch.Tensor, name: str) -> None:
        acts[name] = x[0].detach().clone()

    logits = _forward(model, torch.tensor([list(ids)]), [(lambda n: n in names, grab), *(extra or [])])
    return acts, logits


def _batch_size(model: GPT, n_tokens: int, requested: int | None) -> int:
    """Rows per patched forward pass: as many as keep one batch's activations (the residual
    stream and the feed-forward's several times over, the attention patterns) and its logits
    (last position only) under ``LOGITS_BUDGET_BYTES``."""
    if requested is not None:
        return max(1, int(requested))
    cfg = model.cfg
    per_row = 4 * (n_tokens * (16 * cfg.d_model + 4 * cfg.d_mlp + 3 * cfg.n_head * n_tokens) + 2 * cfg.vocab_size)
    return int(max(1, min(256, LOGITS_BUDGET_BYTES // max(per_row, 1))))


def run_patches(
    model: GPT,
    clean_ids: Sequence[int],
    corrupt_ids: Sequence[int],
    patches: Sequence[Patch],
    metric: LogitDiff | None = None,
    direction: Direction = "denoise",
    batch_size: int | None = None,
    progress: Progress | None = None,
    max_work: int = MAX_WORK,
) -> PatchingResult:
    """The metric after each of ``patches`` (a flat list; ``raw`` and ``values`` are ``[len]``).

    Denoising runs the corrupted prompt with activations copied from the clean run; noising
    runs the clean prompt with activations from the corrupted run. ``batch_size`` patched
    copies run per forward pass (``None``: as many as keep the logits under
    ``LOGITS_BUDGET_BYTES``); ``batch_size=1`` is patching one at a time. ``progress(done,
    total)`` is called after each batch.
    """
    n = check_pair(clean_ids, corrupt_ids, model.cfg.n_ctx)
    if direction not in ("denoise", "noise"):
        raise PatchingError(f"direction must be 'denoise' or 'noise', not {direction!r}")
    total = len(patches) + 2
    if total > max_work:
        raise WorkCapError(total, max_work)
    _check_patches(model, patches, n)
    metric = metric or default_metric(model, clean_ids, corrupt_ids)
    src_ids, dst_ids = (clean_ids, corrupt_ids) if direction == "denoise" else (corrupt_ids, clean_ids)
    names = {_hook(p.kind, p.layer) for p in patches}
    last = [last_position_only(model)] if metric.pos in (-1, n - 1) else []
    src, src_logits = _capture(model, src_ids, names, last)
    dst_logits = _forward(model, torch.tensor([list(dst_ids)]), last)  # the same path as the patched runs
    m_src, m_dst = float(metric(src_logits)[0]), float(metric(dst_logits)[0])
    m_clean, m_corrupt = (m_src, m_dst) if direction == "denoise" else (m_dst, m_src)
    bs = _batch_size(model, n, batch_size)
    base = torch.tensor([list(dst_ids)])
    out = np.empty(len(patches), dtype=np.float64)
    for start in range(0, len(patches), bs):
        chunk = patches[start : start + bs]
        fwd = _chunk_hooks(chunk, src, n) + last
        logits = _forward(model, base.expand(len(chunk), n), fwd)
        out[start : start + len(chunk)] = metric(logits).double().cpu().numpy()
        if progress is not None:
            progress(min(start + len(chunk), len(patches)), len(patches))
    values = normalise(out, m_clean, m_corrupt, direction)
    return PatchingResult(
        "resid_pre" if not patches else patches[0].kind, direction, values, out, m_clean, m_corrupt, metric, total
    )


def _check_patches(model: GPT, patches: Sequence[Patch], n: int) -> None:
    cfg = model.cfg
    for p in patches:
        if p.kind not in ("resid_pre", "attn_out", "mlp_out", "head"):
            raise PatchingError(f"unknown kind of patch {p.kind!r}")
        if not 0 <= p.layer < cfg.n_layer:
            raise PatchingError(f"layer {p.layer} is outside this model ({cfg.n_layer} layers)")
        if p.kind == "head" and not (p.head is not None and 0 <= p.head < cfg.n_head):
            raise PatchingError(f"head {p.head} is outside this model ({cfg.n_head} heads)")
        if p.positions is not None and any(not 0 <= q < n for q in p.positions):
            raise PatchingError(f"positions {p.positions} are outside the prompt ({n} tokens)")


def _chunk_hooks(chunk: Sequence[Patch], src: dict[str, torch.Tensor], n: int) -> list:
    """One replacing hook per hook name: row ``i`` of the batch gets patch ``i``'s values."""
    index: dict[str, list[list[int]]] = defaultdict(lambda: [[], [], []])  # rows, positions, heads
    for row, p in enumerate(chunk):
        rows, poss, heads = index[_hook(p.kind, p.layer)]
        positions = range(n) if p.positions is None else p.positions
        for q in positions:
            rows.append(row)
            poss.append(q)
            heads.append(-1 if p.head is None else p.head)

    def make(name: str, rows: list[int], poss: list[int], heads: list[int]):
        r, q, h = torch.tensor(rows), torch.tensor(poss), torch.tensor(heads)
        per_head = bool(heads) and heads[0] >= 0
        value = src[name]

        def fn(x: torch.Tensor, _name: str) -> torch.Tensor:
            x = x.clone()
            v = value.to(x.device, x.dtype)
            r_, q_, h_ = r.to(x.device), q.to(x.device), h.to(x.device)  # no-ops on the CPU
            if per_head:
                x[r_, q_, h_] = v[q_, h_]
            else:
                x[r_, q_] = v[q_]
            return x

        return fn

    return [(name, make(name, *idx)) for name, idx in index.items()]


def normalise(raw: np.ndarray, clean: float, corrupt: float, direction: Direction) -> np.ndarray:
    """Denoising ``(m - corrupt) / (clean - corrupt)``; noising ``(clean - m) / (clean - corrupt)``.
    NaN where the two prompts give the same metric (there is nothing to restore)."""
    raw = np.asarray(raw, dtype=np.float64)
    gap = clean - corrupt
    if abs(gap) < 1e-9:
        return np.full_like(raw, np.nan)
    return (raw - corrupt) / gap if direction == "denoise" else (clean - raw) / gap


def patch(
    model: GPT,
    clean_ids: Sequence[int],
    corrupt_ids: Sequence[int],
    kind: Kind = "resid_pre",
    metric: LogitDiff | None = None,
    direction: Direction = "denoise",
    batch_size: int | None = None,
    progress: Progress | None = None,
    max_work: int = MAX_WORK,
) -> PatchingResult:
    """The patching map of one ``kind`` (see ``KIND_LABELS``), shaped as ``PatchingResult`` says.

    >>> r = patch(model, clean_ids, corrupt_ids, "head")
    >>> r.values[layer, head]   # 1: this head's output alone restores the clean answer
    """
    cfg = model.cfg
    n = check_pair(clean_ids, corrupt_ids, cfg.n_ctx)
    need = work(kind, cfg.n_layer, cfg.n_head, n)
    if need > max_work:
        raise WorkCapError(need, max_work)
    plist = patches_for(kind, cfg.n_layer, cfg.n_head, n)
    flat = run_patches(model, clean_ids, corrupt_ids, plist, metric, direction, batch_size, progress, max_work)
    shape = grid_shape(kind, cfg.n_layer, cfg.n_head, n)
    return PatchingResult(
        kind, direction, flat.values.reshape(shape), flat.raw.reshape(shape), flat.clean, flat.corrupt,
        flat.metric, flat.work,
    )  # fmt: skip


def attribution_patching(
    model: GPT,
    clean_ids: Sequence[int],
    corrupt_ids: Sequence[int],
    kind: Kind = "resid_pre",
    metric: LogitDiff | None = None,
    direction: Direction = "denoise",
) -> PatchingResult:
    """The first-order (gradient) estimate of ``patch``: for each activation ``a``,
    ``(a_source - a_dest) · ∂metric/∂a`` at the destination run, summed over what the patch
    covers (a position's vector, a head's slice of ``hook_z``). One forward and one backward
    pass for every patch at once (≈3 forward-pass equivalents, plus the source run); exact
    where the metric is linear in the activation, and a preview elsewhere: compare with
    ``agreement``."""
    cfg = model.cfg
    check_pair(clean_ids, corrupt_ids, cfg.n_ctx)
    if kind not in KINDS:
        raise PatchingError(f"unknown kind of patch {kind!r}; choose one of {KINDS}")
    metric = metric or default_metric(model, clean_ids, corrupt_ids)
    src_ids, dst_ids = (clean_ids, corrupt_ids) if direction == "denoise" else (corrupt_ids, clean_ids)
    names = [_hook(kind, layer) for layer in range(cfg.n_layer)]
    src, src_logits = _capture(model, src_ids, set(names))
    acts: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor, name: str) -> torch.Tensor:
        if not x.requires_grad:  # weights frozen: nothing upstream needs a gradient
            x = x.detach().requires_grad_(True)
        acts[name] = x
        return x

    device = next(model.parameters()).device
    with torch.enable_grad(), hooks(model, [(lambda nm: nm in names, keep)]):
        logits = model(torch.tensor([list(dst_ids)], device=device))
        m = metric(logits)[0]
        grads = torch.autograd.grad(m, [acts[nm] for nm in names], allow_unused=True)
    grads = [torch.zeros_like(acts[nm]) if g is None else g for nm, g in zip(names, grads, strict=True)]
    m_dst = float(m.detach())
    m_src = float(metric(src_logits)[0])
    m_clean, m_corrupt = (m_src, m_dst) if direction == "denoise" else (m_dst, m_src)
    rows = []
    for nm, g in zip(names, grads, strict=True):
        delta = (src[nm] - acts[nm].detach()[0]) * g[0]  # [T, D] or [T, H, Dh]
        if kind == "head":
            rows.append(delta.sum(dim=(0, 2)))  # [H]
        elif kind == "head_pos":
            rows.append(delta.sum(dim=2).T)  # [H, T]
        else:
            rows.append(delta.sum(dim=-1))  # [T]
    est = torch.stack(rows).double().cpu().numpy()
    raw = m_dst + est  # the estimated metric after each patch
    values = normalise(raw, m_clean, m_corrupt, direction)
    return PatchingResult(kind, direction, values, raw, m_clean, m_corrupt, metric, 4, method="attribution")


def agreement(exact: PatchingResult, approx: PatchingResult) -> dict[str, float]:
    """How well attribution patching matches the exact map: Pearson correlation ``r`` of the
    normalised values, the largest absolute difference, and whether both rank the same cell first."""
    a, b = np.asarray(exact.values, dtype=np.float64).ravel(), np.asarray(approx.values, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        r = float("nan")
    else:
        r = float(np.corrcoef(a, b)[0, 1])
    same_top = bool(len(a)) and int(np.argmax(np.abs(a))) == int(np.argmax(np.abs(b)))
    return {
        "pearson": r,
        "max_abs_diff": float(np.max(np.abs(a - b))) if len(a) else float("nan"),
        "same_top": same_top,
    }
