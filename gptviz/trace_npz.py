"""The ``.npz`` file format of a Trace, so a trace made in the app can be studied in a notebook.

Only ``gptviz.trace`` imports this module, and it imports nothing of ``trace``: it reads and
writes a Trace's *fields* (a dict), so the two never import each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gptviz.config import GPTConfig

FORMAT = "gptviz-trace-1"


def write(fields: dict[str, Any], path: str | Path) -> Path:
    """Arrays under their hook names, metadata as JSON under ``__meta__``; no pickle inside."""
    path = Path(path)
    meta = {
        "format": FORMAT,
        "text": fields["text"],
        "tokens": list(fields["tokens"]),
        "token_bytes": [b.hex() for b in fields["token_bytes"]],
        "config": fields["config"].to_dict(),
        "model_name": fields["model_name"],
        "n_input_tokens": fields["n_input_tokens"],
        "precision": fields["precision"],
    }
    arrays = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), "__ids__": fields["ids"]}
    np.savez_compressed(path, **arrays, **fields["store"])
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def read(path: str | Path) -> dict[str, Any]:
    """The fields of a Trace from a ``.npz`` written by ``write`` (``allow_pickle`` stays off);
    arrays come back read-only, as in a fresh trace."""
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
    return {
        "text": meta["text"],
        "ids": ids,
        "tokens": tuple(meta["tokens"]),
        "token_bytes": tuple(bytes.fromhex(h) for h in meta["token_bytes"]),
        "config": GPTConfig.from_dict(meta["config"]),
        "model_name": meta["model_name"],
        "n_input_tokens": meta["n_input_tokens"],
        "precision": meta["precision"],
        "store": store,
    }
