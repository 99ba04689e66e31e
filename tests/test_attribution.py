"""Input attribution against independent references: Captum's IntegratedGradients on the same
function and baseline, completeness, and finite differences (no autograd) for gradient x input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from conftest import tiny_model

from gptviz.analysis import attribution as at
from gptviz.hooks import hook_name, hooks

IDS = [464, 3797, 290, 4502, 1816, 284, 262]
TARGET, OTHER = 1110, 5600


@pytest.mark.parametrize("kind", ["gpt2", "seed"])
def test_integrated_gradients_equal_captum_and_are_complete(kind):
    model = tiny_model(kind, seed=5)
    ig = at.integrated_gradients(model, IDS, TARGET, steps=64, batch_size=10)
    f = at.logit_function(model, IDS, TARGET)
    x = at.token_embeddings(model, IDS)[None]
    theirs = IntegratedGradients(f).attribute(x, baselines=torch.zeros_like(x), n_steps=64, method="gausslegendre")
    np.testing.assert_allclose(ig.per_dim, theirs[0].detach().numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(ig.scores, theirs[0].sum(-1).detach().numpy(), atol=1e-4, rtol=0)
    gap = ig.f_input - ig.f_baseline
    assert abs(ig.delta) <= 1e-3 + 0.01 * abs(gap)
    assert abs(gap) > 1e-3 and np.abs(ig.scores).max() > 1e-4  # there is something to attribute


def test_integrated_gradients_report_progress_per_batch_and_give_the_same_result():
    """The page shows a progress bar over the integration steps (tens of seconds at GPT-2-small
    size): one call per batch, increasing, ending at ``steps``; reporting changes nothing."""
    model, calls = tiny_model("gpt2", seed=5), []
    ig = at.integrated_gradients(model, IDS, TARGET, steps=16, batch_size=6, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(6, 16), (12, 16), (16, 16)]
    quiet = at.attribute(model, IDS, TARGET, "integrated_gradients", steps=16)
    np.testing.assert_allclose(ig.scores, quiet.scores, atol=1e-5)
    calls.clear()
    at.attribute(model, IDS, TARGET, "integrated_gradients", steps=8, progress=lambda d, n: calls.append((d, n)))
    assert calls and calls[-1] == (8, 8)


def test_contrastive_and_fixed_positions():
    model = tiny_model("gpt2", seed=5)
    a = at.integrated_gradients(model, IDS, TARGET, steps=16)
    b = at.integrated_gradients(model, IDS, OTHER, steps=16)
    ab = at.integrated_gradients(model, IDS, TARGET, contrast=OTHER, steps=16)
    np.testing.assert_allclose(ab.scores, a.scores - b.scores, atol=1e-5)  # IG is linear in f
    kept = at.integrated_gradients(model, IDS, TARGET, steps=64, fixed=[0])
    assert kept.scores[0] == 0.0 and abs(kept.delta) <= 1e-3 + 0.01 * abs(kept.f_input - kept.f_baseline)
    # Captum with the same baseline (the first token's embedding kept) agrees
    f = at.logit_function(model, IDS, TARGET)
    x = at.token_embeddings(model, IDS)[None]
    base = torch.zeros_like(x)
    base[0, 0] = x[0, 0]
    theirs = IntegratedGradients(f).attribute(x, baselines=base, n_steps=64, method="gausslegendre")
    np.testing.assert_allclose(kept.per_dim, theirs[0].detach().numpy(), atol=1e-4, rtol=0)


def test_gradient_x_input_equals_finite_differences():
    """Σ_d x_td ∂f/∂x_td is the derivative of f as token t's embedding is scaled by (1 + ε):
    central differences on a float64 copy of the model, without autograd."""
    model = tiny_model("gpt2", seed=6).double()
    gx = at.gradient_x_input(model, IDS, TARGET, contrast=OTHER)
    base = torch.tensor([IDS])
    eps = 1e-5

    def f_scaled(t: int, s: float) -> float:
        def scale(x: torch.Tensor, _n: str) -> torch.Tensor:
            x = x.clone()
            x[:, t] *= s
            return x

        with torch.no_grad(), hooks(model, [(hook_name("embed"), scale)]):
            logits = model(base)[0, -1]
        return float(logits[TARGET] - logits[OTHER])

    fd = np.array([(f_scaled(t, 1 + eps) - f_scaled(t, 1 - eps)) / (2 * eps) for t in range(len(IDS))])
    np.testing.assert_allclose(gx.scores, fd, atol=1e-6, rtol=1e-5)
    assert np.abs(fd).max() > 1e-3
    assert gx.f_input == pytest.approx(f_scaled(0, 1.0))


def test_bad_requests_say_why():
    model = tiny_model("gpt2")
    with pytest.raises(at.AttributionError, match="outside the vocabulary"):
        at.gradient_x_input(model, IDS, 10**9)
    with pytest.raises(at.AttributionError, match="steps"):
        at.integrated_gradients(model, IDS, TARGET, steps=0)
    df = at.attribute(model, IDS, TARGET, "gradient_x_input").frame([str(i) for i in IDS])
    assert list(df.columns) == ["position", "token", "attribution"] and len(df) == len(IDS)
