"""Does evicting a model from the byte-bounded model cache give its memory back? Measured in RSS.

Loads several random GPT-2-shaped models through the same ``ByteLRU`` + ``model_nbytes`` the app
uses (``gptviz.ui.caching``), with a budget of about two models, and reports the process RSS
after each load, then after clearing the cache. Sessions hold a model only during one script
run, which ``--held`` imitates: a reference kept while others are loaded (RSS then stays up until
it is dropped, and falls after).

python benchmarks/model_cache.py                  # 6 models of d_model 512 (about 130 MB each)
python benchmarks/model_cache.py --quick          # tiny, a few seconds (correctness only)
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gptviz
from gptviz.cache import ByteLRU, model_nbytes, release_memory


def rss_mb() -> float:
    """Resident set size of this process now (Linux ``/proc``), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-trim", action="store_true", help="evict without malloc_trim (what RSS does then)")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.d_model, args.layers = 4, 64, 2
    torch.manual_seed(0)

    def make(i: int) -> gptviz.GPT:
        cfg = gptviz.preset("gpt2", n_layer=args.layers, d_model=args.d_model, n_head=8, d_mlp=4 * args.d_model)
        return gptviz.GPT(cfg).eval()

    one = model_nbytes(make(0))
    gc.collect()
    trim = not args.no_trim
    cache: ByteLRU[gptviz.GPT] = ByteLRU(int(2.5 * one), model_nbytes, on_evict=release_memory if trim else None)
    report: dict = {"model_mb": round(one / 2**20, 1), "budget_mb": round(cache.max_bytes / 2**20, 1)}
    report["rss_start_mb"] = round(rss_mb(), 1)
    loads = []
    held = None
    for i in range(args.models):
        m = cache.get_or_compute(i, lambda i=i: make(i))
        if i == 0:
            held = m  # a session still running on model 0 while others load
        del m
        gc.collect()
        loads.append({"loaded": i, "cached": len(cache), "rss_mb": round(rss_mb(), 1)})
    report["after_each_load"] = loads
    del held
    release_memory() if trim else gc.collect()
    report["rss_after_dropping_the_held_model_mb"] = round(rss_mb(), 1)
    cache.clear()
    gc.collect()
    report["rss_after_clear_mb"] = round(rss_mb(), 1)
    report["note"] = "numbers measured beside other work: not final; the lead reruns them"
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
