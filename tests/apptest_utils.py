"""Helpers to drive the real app headlessly with Streamlit's AppTest."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def open_page(page: str | None = None, timeout: float = 60, **params: str) -> AppTest:
    """Run ``app.py`` (or ``pages/<page>``) with URL query parameters ``params``."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for k, v in params.items():
        at.query_params[k] = v
    if page is None:
        return at.run()
    at.switch_page(f"pages/{page}")
    return at.run()


def figures(at: AppTest) -> dict[str, dict]:
    """The page's Plotly figures as JSON specs, by chart key (``ui.chart(..., key)``)."""
    import json

    out = {}
    for i, el in enumerate(at.get("plotly_chart")):
        spec = json.loads(el.proto.spec)
        key = el.proto.id.split("-")[-1] if el.proto.id else str(i)
        out[key] = spec
        out[str(i)] = spec
    return out


def decode(value) -> np.ndarray:
    """Plotly's JSON array (a list, or ``{"dtype", "bdata", "shape"}`` base64) as numpy."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            arr = arr.reshape([int(s) for s in str(shape).split(",")])
        return arr
    return np.asarray(value)


def assert_ok(at: AppTest) -> None:
    """No exception element on the page, no error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
