"""Page latency and payload: each page's server-side rerun after a prompt change, and the bytes of
figure JSON it sends, with the bundled model, at GPT-2-small shape and at SmolLM2-135M shape
(random weights, T≈128). Local mode (the models are folders); a page that shows an error, or
whose token count does not follow the new prompt, stops the run: a refused or unchanged page
would time nothing.

    python benchmarks/pages.py            # all three models, 5 prompt changes per page
    python benchmarks/pages.py --quick    # bundled model only, 2 changes (CI smoke test)
    python benchmarks/pages.py --only home,0_Overview   # some pages only
    python benchmarks/pages.py --models smollm2-135m    # one model only
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SMOLLM2_135M, hf_checkpoint, table, write_folder  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

PAGES = [None, *sorted(p.name for p in (ROOT / "pages").glob("[0-9]*.py"))]  # None: the home page (app.py)
BARS = {"bundled": 0.3, "gpt2-small": 1.5, "smollm2-135m": 2.0}  # issues 19 and 22
JSON_BARS = {"home": 1e6, "0_Overview": 1e6}  # issue 19: the overview's figure JSON <= 1 MB; other pages 3 MB
LINE = "But, soft! what light through yonder window breaks? It is the east, and Juliet is the sun. "


def prompt(i: int, tokens: int, spec: str, salt: str = "") -> str:
    """A distinct prompt of ``tokens - i`` tokens of the model's own tokenizer, about (distinct,
    so no cache hit, and a different count each time, so a page that did not rerun is caught).
    ``salt`` (the page and model) keeps pages apart too: the trace cache is shared by the whole
    process, so without it every page after the first would find its traces already computed."""
    words = (LINE * (tokens // 5 + 1)).split()
    tok = tokenizer_of(spec)
    return tok.decode(tok.encode(f"Take {i} {salt}: " + " ".join(words))[: tokens - i])


def measure(page: str | None, spec: str, changes: int, tokens: int) -> dict:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params["model"] = spec
    salt = f"{page or 'home'} {spec}"
    at.query_params["prompt"] = prompt(0, tokens, spec, salt)
    if page is not None:
        at.switch_page(f"pages/{page}")
    at.run()  # warm: model load, first trace, per-model caches
    check(at, page, prompt(0, tokens, spec, salt), spec)
    times, counts = [], []
    for i in range(1, changes + 1):
        text = prompt(i, tokens, spec, salt)
        at.sidebar.text_area[0].set_value(text)
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        counts.append(check(at, page, text, spec))
    payload = sum(len(el.proto.spec) for el in at.get("plotly_chart"))
    return {
        "rerun_s": statistics.median(times),
        "payload_bytes": payload,
        "charts": len(at.get("plotly_chart")),
        "tokens": f"{min(counts)}-{max(counts)}",
    }


@functools.cache
def tokenizer_of(spec: str):
    import gptviz

    return gptviz.get_tokenizer(gptviz.load_model(spec).cfg.tokenizer)


def check(at: AppTest, page: str | None, text: str, spec: str) -> int:
    """The rerun really ran the page on ``text``: no exception or error, and the sidebar's token
    count is the new prompt's (returned)."""
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception[0].value}")
    if at.error:
        raise RuntimeError(f"{page}: the page shows an error: {at.error[0].value}")
    n = len(tokenizer_of(spec).encode(text))
    counts = [int(m[1]) for c in at.sidebar.caption if (m := re.search(r"\*\*(\d+)\*\* tokens", c.value))]
    if counts != [n]:
        raise RuntimeError(f"{page}: the sidebar says {counts} tokens, the prompt has {n}")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma list of pages to measure, e.g. home,0_Overview")
    ap.add_argument("--changes", type=int, default=5)
    ap.add_argument("--models", default="", help="comma list of bundled, gpt2-small, smollm2-135m (default: all)")
    args = ap.parse_args()
    os.environ["GPTVIZ_MODE"] = "local"  # the random-weight models are folders, refused in served mode
    wanted = {m.strip() for m in args.models.split(",") if m.strip()} or set(BARS)
    models = [("bundled", "bundled:gpt2-style")] if "bundled" in wanted else []
    folders = []
    if not args.quick and "gpt2-small" in wanted:
        gpt2, _ = hf_checkpoint()
        folders.append(gpt2)
        models.append(("gpt2-small", str(gpt2)))
    if not args.quick and "smollm2-135m" in wanted:
        smol = Path(tempfile.mkdtemp(prefix="gptviz-bench-smol-"))
        write_folder("llama", SMOLLM2_135M, smol)  # with the tests' small byte-level BPE
        folders.append(smol)
        models.append(("smollm2-135m", str(smol)))
    rows = []
    try:
        for name, spec in models:
            only = {x.strip().removesuffix(".py") for x in args.only.split(",") if x.strip()}
            for page in PAGES:
                if only and ("home" if page is None else page.removesuffix(".py")) not in only:
                    continue
                r = measure(page, spec, 2 if args.quick else args.changes, 128)
                bar = BARS[name]
                title = "home" if page is None else page.removesuffix(".py")
                json_bar = JSON_BARS.get(title, 3e6)
                rows.append(
                    {
                        "model": name,
                        "page": title,
                        "rerun_s": f"{r['rerun_s']:.3f}",
                        "bar_s": bar,
                        "rerun/bar": f"{r['rerun_s'] / bar:.2f}",
                        "figure_json_MB": f"{r['payload_bytes'] / 1e6:.2f}",
                        "json_bar_MB": f"{json_bar / 1e6:.0f}",
                        "json/bar": f"{r['payload_bytes'] / json_bar:.2f}",
                        "charts": r["charts"],
                        "tokens": r["tokens"],
                    }
                )
                print(rows[-1], flush=True)
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    cols = [
        "model",
        "page",
        "tokens",
        "rerun_s",
        "bar_s",
        "rerun/bar",
        "figure_json_MB",
        "json_bar_MB",
        "json/bar",
        "charts",
    ]
    print(table(rows, cols))
    print("\nrerun/bar and json/bar at or below 1.00 meet the issue's bars (server-side time, AppTest)")


if __name__ == "__main__":
    main()
