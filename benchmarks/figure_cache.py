"""What the shared figure cache saves per session: a figure built (and serialized) vs served from
the cache (its JSON parsed back into a Figure, which ``st.plotly_chart`` then sends).

python benchmarks/figure_cache.py            # the bundled model, the attention page's charts
python benchmarks/figure_cache.py --quick    # fewer repeats (correctness only)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import plotly.io as pio
from common import interleaved

import gptviz
from gptviz.figcache import TRACE_KEYS, FigureCache
from gptviz.figures import attention as fa

PROMPT = "ROMEO:\nBut, soft! what light through yonder window breaks? It is the east, and Juliet is the sun."


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    model = gptviz.load_model("bundled:gpt2-style")
    trace = gptviz.run(model, PROMPT)
    TRACE_KEYS.register(trace, ("bundled:gpt2-style", PROMPT, None))
    cache = FigureCache(200 * 2**20)
    charts = {
        "attention_pattern": (fa.attention_pattern, (trace, 1, 0)),
        "attention_grid": (fa.attention_grid, (trace, (1, 0))),
    }
    report = {}
    for name, (fn, fargs) in charts.items():
        cache.json(fn, name, *fargs)  # warm
        times = interleaved(
            {
                "build": lambda fn=fn, fargs=fargs: fn(*fargs).to_json(),
                "cached": lambda fn=fn, fargs=fargs, name=name: pio.from_json(cache.json(fn, name, *fargs)),
            },
            repeats=3 if args.quick else 20,
        )
        size = len(cache.json(fn, name, *fargs))
        report[name] = {"build_ms": round(1e3 * times["build"], 1), "cached_ms": round(1e3 * times["cached"], 1),
                        "json_kb": round(size / 1024, 1)}  # fmt: skip
    report["hits"], report["misses"] = cache.lru.hits, cache.lru.misses
    report["note"] = "measured beside other work: not final; the lead reruns it"
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
