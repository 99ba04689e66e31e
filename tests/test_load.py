"""The load test (benchmarks/load.py) at a small size against the real server: 4 sessions over
Streamlit's websocket protocol, a few seconds. It fails if any session is shown another
session's numbers (or none); the full-size runs are in BENCHMARKS.md."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

from gptviz import serving

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gptviz_load", ROOT / "benchmarks" / "load.py")
load = importlib.util.module_from_spec(_spec)
sys.modules["gptviz_load"] = load  # dataclasses look their module up while the file runs
_spec.loader.exec_module(load)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = load.free_port()
    proc = load.start_server(port, log=tmp_path_factory.mktemp("load") / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        load.wait_healthy(base, proc)
        yield base, proc
    finally:
        _stop(proc)


def _small(base: str, pids: list[int], **kw) -> dict:
    plans = load.make_plans(4, actions=3)
    return asyncio.run(load.drive(base, plans, think=(0.1, 0.4), ramp=1.0, duration=90, pids=pids, **kw))


def test_four_sessions_each_get_their_own_numbers(server):
    base, proc = server
    report = _small(base, [proc.pid])
    assert report["finished_sessions"] == 4 and report["actions"] == 12, report
    samples = report["error_samples"], report["mixed_samples"], report["lost_samples"]
    assert (report["errors"], report["mixed"], report["lost"]) == (0, 0, 0), samples
    assert set(report["per_action"]) == {"open", "page", "prompt"}
    assert report["server_rss_mb"][str(proc.pid)]["max"] > 100  # a real process was sampled


def test_the_check_catches_a_session_shown_another_prompts_numbers(server, monkeypatch):
    """Swap the expected numbers of two prompts: the same run must now report them as mixed."""
    base, proc = server
    real = load.expected_counts

    def swapped(prompts, spec="bundled:gpt2-style"):
        counts = real(prompts, spec)
        a, b = load.prompt_for(0), load.prompt_for(1)
        counts[a], counts[b] = counts[b], counts[a]
        return counts

    monkeypatch.setattr(load, "expected_counts", swapped)
    report = _small(base, [proc.pid])
    assert report["mixed"] >= 2 and report["lost"] >= 2, report


def test_plans_share_one_lesson_step_for_a_third():
    plans = load.make_plans(60, actions=4)
    shared = [p for p in plans if p.shared]
    assert len(shared) == 20 and {p.prompts[0] for p in shared} == {load.SHARED_PROMPT}
    own = [p.prompts for p in plans if not p.shared]
    counts = load.expected_counts({q for ps in own for q in ps} | {load.SHARED_PROMPT})
    assert len({counts[q] for ps in own for q in ps}) == 2 * len(own)  # every own prompt tells apart


def test_streamlit_run_without_an_address_is_served(tmp_path):
    """``streamlit run app.py``, no address, no GPTVIZ_MODE: a link naming /etc is refused."""
    port = load.free_port()
    proc = load.start_server(port, env={"GPTVIZ_MODE": None}, address=None, log=tmp_path / "s.log", plain=True)
    base = f"http://127.0.0.1:{port}"

    async def visit(model: str) -> load.RunResult:
        s = load.Session(base, 0)
        await s.connect()
        try:
            return await s.rerun(page="", query=urlencode({"model": model, "prompt": "Hi"}))
        finally:
            await s.close()

    try:
        load.wait_healthy(base, proc)
        refused = asyncio.run(visit("/etc"))
        assert any(serving.REFUSAL in a for a in refused.alerts), refused.alerts
        assert not any("config.json" in a or "/etc" in a for a in refused.alerts)
    finally:
        _stop(proc)
