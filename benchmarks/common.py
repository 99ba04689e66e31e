"""Shared helpers for the benchmark scripts: random GPT-2-shaped checkpoints, interleaved timing."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

GPT2_SMALL = {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50257, "n_positions": 1024}
# The model-families issue's shapes (transformers config fields): random weights, real sizes.
SMOLLM2_135M = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    vocab_size=49152,
    tie_word_embeddings=True,
    rope_theta=100000.0,
    max_position_embeddings=8192,
)
QWEN25_05B = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    tie_word_embeddings=True,
    rope_theta=1e6,
    max_position_embeddings=32768,
)


def hf_checkpoint(folder: Path | None = None, seed: int = 0, **shape) -> tuple[Path, torch.nn.Module]:
    """A random Hugging Face GPT-2 of the given shape, saved as a folder gptviz can load."""
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**{**GPT2_SMALL, **shape}, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    folder = Path(folder or tempfile.mkdtemp(prefix="gptviz-bench-"))
    model.save_pretrained(folder)
    return folder, model


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, run round-robin so machine noise hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table (printed, and pasted into BENCHMARKS.md)."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "\n".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows)


def write_folder(kind: str, shape: dict, folder: Path) -> None:
    """A random checkpoint of ``kind`` (gpt2, llama, qwen2), float32, with a tokenizer.json for
    the families that need their own."""
    import transformers

    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(**shape, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
        transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
        return
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[kind]
    transformers.AutoModelForCausalLM.from_config(cls(**shape)).save_pretrained(folder)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from hf_families import tokenizer_json

    (folder / "tokenizer.json").write_text(tokenizer_json())
