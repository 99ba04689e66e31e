"""Shared helpers for the benchmark scripts: random GPT-2-shaped checkpoints, interleaved timing."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

GPT2_SMALL = {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50257, "n_positions": 1024}


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
