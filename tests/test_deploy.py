"""deploy/: nginx in front of two ``gptviz serve`` replicas, on loopback ports of this machine.

- the load test (benchmarks/load.py, small N) through the proxy, with 1 and with 2 replicas (both serve sessions),
  every session sees its own prompt's numbers;
- a real Chromium tab through the proxy works (websocket Origin/Host, the route cookie), and a
  prompt typed there survives a page switch;
- fault test: one replica is killed mid-run; the sessions reconnect as a browser does and their
  view comes back from the URL (the report says how many recovered); the same under a Chromium tab.

Skips cleanly where nginx is not installed (CI installs it: ``apt-get install nginx``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


load = _module("gptviz_load", ROOT / "benchmarks" / "load.py")
deploy = _module("gptviz_deploy_start", ROOT / "deploy" / "start.py")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if deploy.find_nginx() is None:
        pytest.skip("nginx is not installed (apt-get install nginx); CI installs it")
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(load.free_port())
    proxy, *replicas = sorted(ports)
    c = deploy.Cluster(2, proxy, prefix=tmp_path_factory.mktemp("nginx"), replica_ports=replicas)
    c.start()
    yield c
    c.stop()


def _restart(c) -> None:
    """Bring killed replicas back (the fault tests kill one) for the next test."""
    dead = [i for i, p in enumerate(c.procs) if p.poll() is not None]
    if not dead:
        return
    c.stop()
    c.procs, c.nginx = [], None
    c.start()


def test_the_config_forwards_host_and_upgrade_and_hashes_a_cookie():
    text = deploy.render_config(Path("/tmp/x"), "127.0.0.1:8600", [8601, 8602])
    for line in (
        "proxy_set_header Host $http_host;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "hash $gptviz_route consistent;",
        "server 127.0.0.1:8601",
        "server 127.0.0.1:8602",
    ):
        assert line in text
    assert "ip_hash" not in text.replace("`ip_hash`", "")  # the comment explains why not


def test_load_through_the_proxy_uses_both_replicas(cluster):
    _restart(cluster)
    # Each session's route is a random cookie: with 6 sessions all of them landed on one replica
    # 1 run in 32 (2 x 2^-6); with 16, 1 in 32,768.
    plans = load.make_plans(16, actions=3)
    pids = [p.pid for p in cluster.procs]
    report = asyncio.run(load.drive(cluster.url, plans, think=(0.1, 0.4), ramp=1.0, duration=120, pids=pids))
    samples = report["error_samples"], report["mixed_samples"], report["lost_samples"]
    assert (report["errors"], report["mixed"], report["lost"]) == (0, 0, 0), samples
    assert report["finished_sessions"] == 16
    assert set(report["sessions_per_upstream"]) == {f"127.0.0.1:{p}" for p in cluster.ports}, report


def test_load_through_the_proxy_with_one_replica(tmp_path):
    if deploy.find_nginx() is None:
        pytest.skip("nginx is not installed (apt-get install nginx); CI installs it")
    ports: set[int] = set()
    while len(ports) < 2:
        ports.add(load.free_port())
    proxy, replica = sorted(ports)
    c = deploy.Cluster(1, proxy, prefix=tmp_path, replica_ports=[replica]).start()
    try:
        report = asyncio.run(load.drive(c.url, load.make_plans(4, actions=2), think=(0.1, 0.3), ramp=0.5, duration=90))
    finally:
        c.stop()
    assert (report["errors"], report["mixed"], report["lost"]) == (0, 0, 0), report["error_samples"]
    assert report["sessions_per_upstream"] == {f"127.0.0.1:{replica}": 4}


def test_killing_a_replica_mid_run_the_sessions_come_back(cluster):
    _restart(cluster)
    # Long enough that every session is still mid-run at the kill: 12 actions 1-2 s apart take
    # 12-24 s even when the server answers in milliseconds (6 actions 0.5-1.5 s apart once
    # finished before a kill at 6 s, and the test saw no reconnect at all).
    plans = load.make_plans(6, actions=12)

    async def kill_one() -> None:
        await asyncio.sleep(6.0)  # every session has opened and is between actions
        await asyncio.to_thread(cluster.kill_replica, 0)

    report = asyncio.run(
        load.drive(cluster.url, plans, think=(1.0, 2.0), ramp=1.0, duration=150, during=kill_one, timeout=60)
    )
    print(f"\nfault test: {report['reconnects']} sessions reconnected, {report['recovered']} recovered their view")
    assert report["reconnects"] >= 1, report  # some sessions were on the killed replica
    assert report["recovered"] == report["reconnects"], (report["error_samples"], report["lost_samples"])
    assert report["mixed"] == 0, report
    assert report["errors"] <= report["reconnects"], report  # nothing lost beyond the action in flight
    assert report["finished_sessions"] == 6


# --- one real browser through the proxy -----------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    import shutil

    if shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); CI installs it")
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM_ARGS, VIEWPORT

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")),
            executable_path=shutil.which("chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


def _tokens_caption(tab) -> str:
    return tab.page.locator('[data-testid="stSidebar"]').inner_text()


def test_chromium_through_the_proxy_and_a_replica_killed_under_it(cluster, browser):
    from gptviz.checkpoints import bundled_tokenizer_name
    from gptviz.tokenizer import get_tokenizer
    from tests.test_browser import Tab

    _restart(cluster)
    text = "Friends, Romans, countrymen, lend me your ears"
    n = len(get_tokenizer(bundled_tokenizer_name()).encode(text))
    tab = Tab(browser, cluster.url)
    try:
        response = tab.page.goto(f"{cluster.url}/Attention?attn_layer=1&attn_head=2", wait_until="domcontentloaded")
        upstream = response.headers.get("x-gptviz-upstream", "")
        tab.wait_idle()
        box = tab.page.locator('[data-testid="stSidebar"] textarea')
        box.fill(text)
        box.press("Control+Enter")
        tab.page.wait_for_function("t => new URLSearchParams(location.search).get('prompt') === t", arg=text)
        tab.wait_idle()
        assert f"{n} tokens / context" in _tokens_caption(tab)
        tab.page.locator('[data-testid="stSidebar"] a', has_text="Output").first.click()  # a page switch
        tab.page.wait_for_url("**/Output**")
        tab.wait_idle()
        assert f"{n} tokens / context" in _tokens_caption(tab), "the typed prompt was lost on a page switch"
        tab.assert_clean()

        # Kill the replica this tab is on: the frontend reconnects through nginx to the other one,
        # which rebuilds the view from the URL.
        ports = [f"127.0.0.1:{p}" for p in cluster.ports]
        assert upstream in ports, (upstream, ports)
        cluster.kill_replica(ports.index(upstream))
        tab.page.wait_for_function(  # the frontend noticed: its socket is gone
            """() => document.querySelector('[data-testid="stApp"]')?.dataset.testConnectionState !== 'CONNECTED'""",
            timeout=30_000,
            polling=100,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                tab.wait_idle()
                if f"{n} tokens / context" in _tokens_caption(tab):
                    break
            except Exception:
                pass
            time.sleep(1)
        q = {k: v[0] for k, v in parse_qs(urlsplit(tab.page.url).query).items()}
        assert q.get("prompt") == text, q
        assert f"{n} tokens / context" in _tokens_caption(tab), _tokens_caption(tab)
        tab.errors = [e for e in tab.errors if "WebSocket" not in e and "ERR_" not in e]  # the outage itself
        tab.assert_clean()
    finally:
        tab.close()
