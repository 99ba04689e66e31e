"""Save and load a Trace as ``.npz`` so a trace made in the app can be studied in a notebook."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gptviz.config import GPTConfig
from gptviz.trace import Trace

FORMAT = "gptviz-trace-1"


def save_trace(trace: Trace, path: str | Path) -> Path:
    """Arrays under their hook names, metadata as JSON under ``__meta__``; no pickle inside."""
    path = Path(path)
    meta = {
        "format": FORMAT,
        "text": trace.text,
        "tokens": list(trace.tokens),
        "token_bytes": [b.hex() for b in trace.token_bytes],
        "config": trace.config.to_dict(),
        "model_name": trace.model_name,
        "n_input_tokens": trace.n_input_tokens,
        "precision": trace.precision,
    }
    arrays = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), "__ids__": trace.ids}
    np.savez_compressed(path, **arrays, **trace.store)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_trace(path: str | Path) -> Trace:
    """Read a ``.npz`` written by ``save_trace`` (``allow_pickle`` stays off)."""
    with np.load(Path(path), allow_pickle=False) as data:
        try:
            meta = json.loads(bytes(data["__meta__"]).decode())
        except KeyError as exc:
            raise ValueError(f"{path}: not a gptviz trace (no __meta__)") from exc
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: unknown trace format {meta.get('format')!r}")
        store = {k: data[k] for k in data.files if not k.startswith("__")}
        ids = data["__ids__"]
    for arr in (*store.values(), ids):
        arr.flags.writeable = False
    return Trace(
        text=meta["text"],
        ids=ids,
        tokens=tuple(meta["tokens"]),
        token_bytes=tuple(bytes.fromhex(h) for h in meta["token_bytes"]),
        config=GPTConfig.from_dict(meta["config"]),
        model_name=meta["model_name"],
        n_input_tokens=meta["n_input_tokens"],
        precision=meta["precision"],
        store=store,
    )
