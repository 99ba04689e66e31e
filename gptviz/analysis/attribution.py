"""Input attribution: which prompt tokens raise the chosen next token's logit?

Two methods on the token embeddings, replaced through ``hook_embed`` (so the position vectors,
added after that hook, and rotary positions inside attention are never touched):

- **gradient × input**: ``Σ_d x_td · ∂f/∂x_td``, the first-order share of token ``t``;
- **integrated gradients** (Sundararajan et al. 2017): ``(x − x') · ∫₀¹ ∂f(x' + α(x − x'))/∂x dα``
  with the baseline ``x'`` = the zero embedding (position vectors still added: the baseline is
  "no token here", not "no position"). The integral uses Gauss–Legendre nodes, as Captum's
  default, with all the steps batched into few forward passes. Its attributions add up to
  ``f(x) − f(x')`` (completeness), which the result reports as ``delta``.

``f`` is the logit of ``target`` after position ``pos``, or with ``contrast`` the difference
``logit[target] − logit[contrast]`` ("why A rather than B?"). Positions in ``fixed`` (a BOS
token) keep their embedding along the whole path, so their attribution is 0 by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from gptviz.analysis.patching import last_position_only
from gptviz.hooks import hook_name, hooks

if TYPE_CHECKING:
    import pandas as pd

    from gptviz.model import GPT

Method = Literal["gradient_x_input", "integrated_gradients"]
DEFAULT_STEPS = 64
MAX_STEPS = 512
BATCH_BUDGET_BYTES = 256 * 2**20  # a batch's activations and their gradients stay about under this


class AttributionError(ValueError):
    """An attribution request that cannot run as asked."""


@dataclass(frozen=True)
class Attribution:
    """Per-token attributions ``scores[t]`` (summed over the embedding's dimensions, ``per_dim``
    ``[T, D]``), the function's value on the input and on the baseline, and the completeness
    gap ``delta = Σ scores − (f_input − f_baseline)`` (integrated gradients: ~0)."""

    method: Method
    scores: np.ndarray
    per_dim: np.ndarray
    f_input: float
    f_baseline: float
    target: int
    contrast: int | None
    pos: int
    steps: int = 0

    @property
    def delta(self) -> float:
        return float(self.scores.sum() - (self.f_input - self.f_baseline))

    def frame(self, tokens: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per prompt token: ``position``, ``token`` (if given), ``attribution``."""
        import pandas as pd

        data: dict = {"position": np.arange(len(self.scores))}
        if tokens is not None:
            data["token"] = list(tokens)
        data["attribution"] = self.scores
        return pd.DataFrame(data)


def _device(model: GPT) -> torch.device:
    return next(model.parameters()).device


def token_embeddings(model: GPT, ids: Sequence[int]) -> torch.Tensor:
    """What ``hook_embed`` carries for ``ids``, ``[T, D]`` (whatever the model does to build it)."""
    got: dict[str, torch.Tensor] = {}

    def grab(x: torch.Tensor, _name: str) -> None:
        got["x"] = x[0].detach().clone()

    with torch.no_grad(), hooks(model, [(hook_name("embed"), grab)]):
        model(torch.tensor([list(ids)], device=_device(model)))
    return got["x"]


def logit_function(model: GPT, ids: Sequence[int], target: int, contrast: int | None = None, pos: int = -1):
    """``f(emb)``: embeddings ``[B, T, D]`` in place of ``hook_embed`` -> ``[B]`` logit of
    ``target`` after ``pos`` (minus that of ``contrast``). The function the attributions
    explain; the tests give the same one to Captum."""
    V = model.cfg.vocab_size
    for name, tid in (("target", target), ("contrast", contrast)):
        if tid is not None and not 0 <= int(tid) < V:
            raise AttributionError(f"{name} token {tid} is outside the vocabulary (0..{V - 1})")
    base = torch.tensor([list(ids)], device=_device(model))
    last = pos in (-1, len(ids) - 1)  # then only the last position is unembedded
    extra = [last_position_only(model)] if last else []

    def f(emb: torch.Tensor) -> torch.Tensor:
        with hooks(model, [(hook_name("embed"), lambda _x, _n: emb), *extra]):
            logits = model(base.expand(emb.shape[0], -1))[:, -1 if last else pos]
        out = logits[:, target]
        return out - logits[:, contrast] if contrast is not None else out

    return f


def _check(model: GPT, ids: Sequence[int], pos: int) -> None:
    T = len(ids)
    if T == 0:
        raise AttributionError("the prompt has no tokens")
    if T > model.cfg.n_ctx:
        raise AttributionError(f"the prompt has {T} tokens; the model reads at most {model.cfg.n_ctx}")
    if not -T <= pos < T:
        raise AttributionError(f"position {pos} is outside the prompt ({T} tokens)")


def gradient_x_input(
    model: GPT, ids: Sequence[int], target: int, contrast: int | None = None, pos: int = -1, fixed: Sequence[int] = ()
) -> Attribution:
    """``Σ_d x_td · ∂f/∂x_td`` for every prompt token ``t`` (one forward and one backward pass)."""
    _check(model, ids, pos)
    f = logit_function(model, ids, target, contrast, pos)
    x = token_embeddings(model, ids)
    with torch.enable_grad():
        emb = x[None].clone().requires_grad_(True)
        out = f(emb)
        (grad,) = torch.autograd.grad(out.sum(), emb)
    per_dim = (x * grad[0]).detach()
    per_dim[list(fixed)] = 0.0
    with torch.no_grad():
        f0 = float(f(_baseline(x, fixed)[None])[0])
    return Attribution(
        "gradient_x_input", per_dim.sum(-1).double().cpu().numpy(), per_dim.double().cpu().numpy(),
        float(out.detach()[0]), f0, int(target), contrast, pos,
    )  # fmt: skip


def _baseline(x: torch.Tensor, fixed: Sequence[int]) -> torch.Tensor:
    """The zero embedding, except at ``fixed`` positions (kept as they are)."""
    b = torch.zeros_like(x)
    if len(fixed):
        b[list(fixed)] = x[list(fixed)]
    return b


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``α`` in (0, 1) and weights (summing to 1) of a ``steps``-point Gauss–Legendre rule,
    as Captum's ``gausslegendre`` method builds them."""
    x, w = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (x + 1.0), 0.5 * w


def integrated_gradients(
    model: GPT,
    ids: Sequence[int],
    target: int,
    contrast: int | None = None,
    pos: int = -1,
    steps: int = DEFAULT_STEPS,
    fixed: Sequence[int] = (),
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Attribution:
    """Integrated gradients of ``f`` from the zero-embedding baseline to the prompt's embeddings
    (``steps`` Gauss–Legendre points, ``batch_size`` of them per forward pass; ``None``: as many
    as keep the logits under ``BATCH_BUDGET_BYTES``). ``progress(done, steps)`` after each batch:
    at GPT-2-small size and a long prompt the whole integral takes tens of seconds."""
    _check(model, ids, pos)
    if not 1 <= steps <= MAX_STEPS:
        raise AttributionError(f"steps must be 1..{MAX_STEPS}, not {steps}")
    f = logit_function(model, ids, target, contrast, pos)
    x = token_embeddings(model, ids)
    base = _baseline(x, fixed)
    alphas, weights = gauss_legendre(steps)
    T = len(ids)
    cfg = model.cfg
    per_row = 8 * (T * (16 * cfg.d_model + 4 * cfg.d_mlp + 3 * cfg.n_head * T) + 2 * cfg.vocab_size)  # x2: backward
    bs = batch_size or int(max(1, min(steps, BATCH_BUDGET_BYTES // per_row)))
    total = torch.zeros_like(x)
    a_all = torch.tensor(alphas, dtype=x.dtype, device=x.device)
    w_all = torch.tensor(weights, dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        for s in range(0, steps, bs):
            a, w = a_all[s : s + bs], w_all[s : s + bs]
            emb = (base[None] + a[:, None, None] * (x - base)[None]).requires_grad_(True)
            (grad,) = torch.autograd.grad(f(emb).sum(), emb)
            total += (w[:, None, None] * grad).sum(0)
            if progress is not None:
                progress(min(s + bs, steps), steps)
    per_dim = ((x - base) * total).detach()
    with torch.no_grad():
        ends = f(torch.stack([x, base]))
    return Attribution(
        "integrated_gradients", per_dim.sum(-1).double().cpu().numpy(), per_dim.double().cpu().numpy(),
        float(ends[0]), float(ends[1]), int(target), contrast, pos, steps,
    )  # fmt: skip


def attribute(
    model: GPT,
    ids: Sequence[int],
    target: int,
    method: Method = "integrated_gradients",
    contrast: int | None = None,
    pos: int = -1,
    steps: int = DEFAULT_STEPS,
    fixed: Sequence[int] = (),
    progress: Callable[[int, int], None] | None = None,
) -> Attribution:
    """One entry point for the page and notebooks: ``method`` picks the function above
    (``progress`` reports integration steps; gradient × input is one pass and reports none)."""
    if method == "gradient_x_input":
        return gradient_x_input(model, ids, target, contrast, pos, fixed)
    if method == "integrated_gradients":
        return integrated_gradients(model, ids, target, contrast, pos, steps, fixed, progress=progress)
    raise AttributionError(f"unknown method {method!r}")
