"""Serving a class: 30 concurrent sessions driving the pages of one server process.

Each session is a Streamlit AppTest running in its own thread inside this one process, so they
share the model and trace caches exactly as browser sessions of one `streamlit run` do (the
browser's rendering and the websocket are not included). Every session opens a page with a
prompt from a small pool (a class works on a few prompts), then changes the prompt and moves
through the pages. Reported: the latency each rerun saw, alone vs. with everyone at once.

    python benchmarks/classroom.py               # 30 sessions, 6 reruns each
    python benchmarks/classroom.py --quick       # 4 sessions, 2 reruns (CI smoke test)
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from streamlit.testing.v1 import AppTest  # noqa: E402

PAGES = sorted(p.name for p in (ROOT / "pages").glob("[1-6]_*.py"))
PROMPTS = [
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?",
    "The cat sat on the mat. The dog sat on the rug. The cat sat on the",
    "Hello, world! My name is",
    "KING RICHARD III:\nNow is the winter of our discontent",
]


def session(seed: int, reruns: int, out: list[float], errors: list[str]) -> None:
    rng = random.Random(seed)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params["prompt"] = rng.choice(PROMPTS)
    at.switch_page(f"pages/{rng.choice(PAGES)}")
    t0 = time.perf_counter()
    at.run()
    out.append(time.perf_counter() - t0)
    for i in range(reruns):
        if i % 2 == 0:
            at.sidebar.text_area[0].set_value(rng.choice(PROMPTS) + f" {seed}-{i}" * (i % 3 == 0))
        else:
            at.switch_page(f"pages/{rng.choice(PAGES)}")
        t0 = time.perf_counter()
        at.run()
        out.append(time.perf_counter() - t0)
        if at.exception:
            errors.append(str(at.exception[0].value))


def run(n: int, reruns: int) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=session, args=(i, reruns, latencies, errors)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def summary(name: str, lat: list[float], wall: float) -> dict:
    q = statistics.quantiles(lat, n=20) if len(lat) > 1 else lat * 19
    return {
        "case": name,
        "reruns": len(lat),
        "p50_s": statistics.median(lat),
        "p95_s": q[18],
        "max_s": max(lat),
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--reruns", type=int, default=6)
    args = ap.parse_args()
    n, reruns = (4, 2) if args.quick else (args.sessions, args.reruns)
    run(1, 1)  # warm the process: models loaded once, as on a server that is already up
    alone, err1, wall1 = run(1, reruns)
    crowd, err2, wall2 = run(n, reruns)
    rows = [summary("1 session alone", alone, wall1), summary(f"{n} sessions at once", crowd, wall2)]
    print("| case | reruns | p50 (s) | p95 (s) | max (s) | wall (s) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['reruns']} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['max_s']:.2f} | {r['wall_s']:.1f} |"
        )
    print(f"\np50 latency ratio, {n} sessions / 1 session: {rows[1]['p50_s'] / rows[0]['p50_s']:.2f}x")
    print(f"p95 latency ratio: {rows[1]['p95_s'] / rows[0]['p95_s']:.2f}x")
    print(f"peak RSS of the server process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    if err1 or err2:
        print(f"ERRORS ({len(err1) + len(err2)}):", *sorted(set(err1 + err2))[:5], sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
