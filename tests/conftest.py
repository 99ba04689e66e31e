"""Shared fixtures: tiny random models of both recipes (fast, deterministic)."""

from __future__ import annotations

import os

# Every test runs offline: set before anything imports huggingface_hub (it reads the variable once,
# at import). tests/test_hub.py alone talks to a stand-in Hub it serves on 127.0.0.1.
os.environ["HF_HUB_OFFLINE"] = "1"
# The app's served mode (gptviz.serving) depends on the address a server is bound to; AppTest has
# none, which would mean served. The suite runs in local mode (links may name folders) unless a
# test sets GPTVIZ_MODE=served itself; servers the tests start inherit this too.
os.environ["GPTVIZ_MODE"] = "local"

import pytest
import torch

from gptviz.config import preset
from gptviz.model import GPT


def tiny_model(kind: str = "gpt2", seed: int = 0, **changes) -> GPT:
    """A small random GPT with GPT-2's vocabulary, so any text tokenizes."""
    torch.manual_seed(seed)
    cfg = preset(kind, n_layer=2, n_head=4, d_model=32, d_mlp=64, n_ctx=64, **changes)
    model = GPT(cfg).eval()
    model.name = f"tiny-{kind}"
    return model


@pytest.fixture(params=["gpt2", "seed"])
def model(request) -> GPT:
    return tiny_model(request.param)


@pytest.fixture
def gpt2_tiny() -> GPT:
    return tiny_model("gpt2")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Many small forward passes (fuzzing, threads standing in for sessions) on a 2-core machine:
    torch's own thread pool only adds waiting there, so such modules run single-threaded."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def written_out(model):
    """A no-op hook on every attention pattern: the model then runs its attention written out
    (scores, mask, softmax, weighted sum) instead of PyTorch's fused kernel, as a capture does."""
    from gptviz.hooks import hooks

    return hooks(model, [(lambda name: name.endswith("attn.hook_pattern"), lambda t, name: None)])
