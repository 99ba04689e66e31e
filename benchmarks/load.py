"""A real load test of the real server: N sessions over Streamlit's own websocket protocol.

Starts ``streamlit run app.py`` on 127.0.0.1 in served mode (or drives ``--url``, e.g. the nginx
proxy of ``deploy/``), then opens N sessions as a browser does: GET the page (cookies: the XSRF
token, the proxy's route), open ``/_stcore/stream`` with subprotocols ``streamlit, <xsrf token>``
(a third entry, the old session id, on a reconnect), and send ``BackMsg.rerun_script`` with the
URL's query string, the page, and widget states; every ``ForwardMsg`` up to ``script_finished``
is read and parsed (the installed ``streamlit.proto`` classes, no browser per session).

Each session has its own prompt (from its link; later changed through the prompt box's widget
state, as typing does) and its own page sequence, with a think time between actions (uniform
5-15 s), and joins over a ramp; a third of the sessions sit on the same lesson step and prompt.
Every session stops after its actions, and the whole run at ``--duration``. After every action
the session checks the sidebar's token count against its own current prompt's (computed here):
another prompt's number is *mixed*, no number is *lost*. A closed socket is reconnected as a
browser does (new socket, rerun with the current URL), and the view must come back.

Reports median and p95 seconds per action kind, errors, mixed, lost, reconnects and recoveries,
the server's RSS (max and last), and which upstream (``X-Gptviz-Upstream`` from the proxy)
served each session.

python benchmarks/load.py --sessions 60 --ramp 60                 # the issue's goal (not run here)
python benchmarks/load.py --sessions 4 --ramp 1 --think 0.2 0.5 --actions 3     # a smoke run
python benchmarks/load.py --url http://127.0.0.1:8600 --pids 123,456           # through deploy/
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKENS_RE = re.compile(r"\*\*(\d+)\*\* tokens / context")
PAGES = ["", "Tokenization", "Embeddings", "Attention", "Feed-forward_and_residual", "Output"]
WORDS = "the king said that all his men would ride to the sea at dawn".split()
SHARED_PROMPT = "ROMEO:\nBut, soft! what light through yonder window breaks?"
LESSON = "Lesson"


def prompt_for(i: int) -> str:
    """Prompt ``i``: its token count grows with ``i`` (each added word is at least one token),
    so two sessions' numbers can never be confused."""
    return f"Student {i} asks:" + "".join(" " + WORDS[j % len(WORDS)] for j in range(i + 1))


@dataclass
class Plan:
    """What one session does: its prompts (the link's, then one typed), pages, lesson or not."""

    index: int
    prompts: list[str]
    pages: list[str]
    shared: bool = False


def make_plans(n: int, actions: int, seed: int = 0) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    for i in range(n):
        if i % 3 == 2:  # a third on the same lesson step and prompt
            plans.append(Plan(i, [SHARED_PROMPT], [LESSON] * actions, shared=True))
        else:
            pages = [rng.choice(PAGES) for _ in range(actions)]
            plans.append(Plan(i, [prompt_for(i), prompt_for(n + i)], pages))
    return plans


def expected_counts(prompts: set[str], spec: str = "bundled:gpt2-style") -> dict[str, int]:
    """The token count the sidebar must show for each prompt (an independent tokenizer call)."""
    import gptviz
    from gptviz.tokenizer import get_tokenizer

    tok = get_tokenizer(gptviz.load_model(spec).cfg.tokenizer)
    return {p: len(tok.encode(p)) for p in prompts}


# --- one session -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    seconds: float
    counts: list[int]
    exceptions: list[str]
    finished: bool
    alerts: list[str] = field(default_factory=list)


@dataclass
class Stats:
    times: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    reconnects: int = 0
    recovered: int = 0
    upstreams: dict[int, set[str]] = field(default_factory=dict)
    actions: int = 0
    done_sessions: int = 0


class Session:
    """One browser tab, without the browser: cookies, the websocket, the URL, widget states."""

    def __init__(self, base: str, index: int, local_addr: str | None = None, timeout: float = 120) -> None:
        self.base = base.rstrip("/")
        self.index = index
        self.local_addr = local_addr
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.ws = None
        self.session_id = ""
        self.page = ""  # the URL path (page name); "" is the home page
        self.query = ""  # the URL's query string, as the app last wrote it
        self.pages: dict[str, str] = {}  # url path -> page script hash
        self.widget_ids: dict[str, str] = {}  # user key -> widget id
        self.widget_states: dict[str, str] = {}  # widget id -> string value (what was typed)
        self.upstream = ""

    def _get(self, path: str) -> None:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        with opener.open(f"{self.base}/{path}", timeout=30) as r:
            r.read()
            self.upstream = r.headers.get("X-Gptviz-Upstream", self.upstream) or ""

    async def connect(self) -> None:
        """What a browser does on opening (or reopening) the page."""
        from websockets.asyncio.client import connect

        await asyncio.to_thread(self._get, self.page or "")
        await asyncio.to_thread(self._get, "_stcore/health")
        cookies = {c.name: c.value for c in self.jar}
        protocols = ["streamlit", cookies.get("_streamlit_xsrf", "x")]
        if self.session_id:
            protocols.append(self.session_id)
        parts = urlsplit(self.base)
        url = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}{parts.path}/_stcore/stream"
        kw = {"local_addr": (self.local_addr, 0)} if self.local_addr else {}
        self.ws = await connect(
            url,
            subprotocols=protocols,
            origin=f"{parts.scheme}://{parts.netloc}",
            additional_headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())},
            max_size=None,
            open_timeout=30,
            ping_interval=None,
            **kw,
        )

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def rerun(self, page: str | None = None, query: str | None = None) -> RunResult:
        """Send one ``rerun_script`` (a page opened, a widget changed) and read until it finishes."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        if page is not None:
            self.page = page
        back = BackMsg()
        cs = back.rerun_script
        cs.query_string = self.query if query is None else query
        if self.page in self.pages:  # as the browser's page links do
            cs.page_script_hash = self.pages[self.page]
        else:  # the first request: the URL's path names the page
            cs.page_name = self.page
        for wid, value in self.widget_states.items():
            w = cs.widget_states.widgets.add()
            w.id, w.string_value = wid, value
        t0 = time.perf_counter()
        await self.ws.send(back.SerializeToString())
        counts, exceptions, alerts, finished = [], [], [], False
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            raw = await asyncio.wait_for(self.ws.recv(), timeout=left)
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.session_id = msg.new_session.initialize.session_id or self.session_id
                for p in msg.new_session.app_pages:
                    self.pages[p.url_pathname] = p.page_script_hash
            elif kind == "navigation":  # the page list (app_pages), also when the sidebar hides it
                for p in msg.navigation.app_pages:
                    self.pages[p.url_pathname] = p.page_script_hash
            elif kind == "page_info_changed":
                self.query = msg.page_info_changed.query_string
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                el = msg.delta.new_element
                which = el.WhichOneof("type")
                if which == "markdown":
                    counts += [int(m) for m in TOKENS_RE.findall(el.markdown.body)]
                elif which == "alert":
                    alerts.append(el.alert.body)
                elif which == "exception":
                    exceptions.append(f"{el.exception.type}: {el.exception.message}")
                elif which == "text_area":  # a browser sends back what the box shows
                    box = el.text_area
                    self.widget_ids[box.id.rsplit("-", 1)[-1]] = box.id
                    self.widget_states[box.id] = box.value if box.HasField("value") else box.default
            elif kind == "script_finished":
                if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    finished = True
                    break
        return RunResult(time.perf_counter() - t0, counts, exceptions, finished, alerts)

    def type_prompt(self, text: str) -> None:
        """The prompt box's new value, sent with the next rerun (Ctrl+Enter in a browser)."""
        wid = self.widget_ids.get("w_prompt")
        if wid is None:
            raise RuntimeError("the prompt box was never drawn")
        self.widget_states = {k: v for k, v in self.widget_states.items() if not k.endswith("-w_prompt")}
        self.widget_states[wid] = text


async def run_session(
    plan: Plan, base: str, stats: Stats, expected: dict[str, int], think: tuple[float, float], deadline: float,
    rng: random.Random, local_addr: str | None = None, timeout: float = 120,
) -> None:  # fmt: skip
    """One session's actions; every action's numbers are checked against this session's prompt."""
    from websockets.exceptions import ConnectionClosed

    s = Session(base, plan.index, local_addr, timeout)
    prompt = plan.prompts[0]
    first = plan.pages[0]
    query = {"prompt": prompt, "model": "bundled:gpt2-style"}
    if plan.shared:
        import gptviz.lesson as L

        query |= {"lesson": next(iter(L.LESSONS)), "lesson_step": "2"}
    actions: list[tuple[str, str | None]] = [("open", first)]
    for i, page in enumerate(plan.pages[1:], 1):
        typed = not plan.shared and i == len(plan.pages) // 2 and len(plan.prompts) > 1
        actions.append(("prompt", None) if typed else ("page", page))  # typing reruns the page shown

    def check(kind: str, result: RunResult, want: str) -> bool:
        label = f"session {plan.index} {kind}"
        if result.exceptions:
            stats.errors.append(f"{label}: {result.exceptions[0]}")
        if not result.finished:
            stats.errors.append(f"{label}: the script did not finish")
        n = expected[want]
        other = [c for c in result.counts if c != n]
        if other:
            stats.mixed.append(f"{label}: showed {other[0]} tokens, its prompt has {n}")
        if n not in result.counts:
            stats.lost.append(f"{label}: no token count of its prompt on the page")
            return False
        return not other

    try:
        await s.connect()
        stats.upstreams.setdefault(plan.index, set()).add(s.upstream)
        for n_action, (kind, page) in enumerate(actions):
            if time.monotonic() > deadline:
                break
            if n_action:
                await asyncio.sleep(rng.uniform(*think))
            confirmed = prompt  # what the URL holds now: the view a reconnect must bring back
            if kind == "prompt":
                prompt = plan.prompts[1]
                s.type_prompt(prompt)
            try:
                result = await s.rerun(page=page, query=urlencode(query) if kind == "open" else None)
                stats.times.setdefault(kind, []).append(result.seconds)
                stats.actions += 1
                check(kind, result, prompt)
            except (TimeoutError, ConnectionClosed, OSError) as exc:
                stats.errors.append(f"session {plan.index} {kind}: {type(exc).__name__} (action in flight)")
                stats.reconnects += 1
                prompt = confirmed  # a prompt typed in the failed action is lost with it
                if await _recover(s, stats, plan, prompt, expected, check):
                    stats.recovered += 1
        stats.done_sessions += 1
    except Exception as exc:  # the session could not even start: count it, keep the others going
        stats.errors.append(f"session {plan.index}: {type(exc).__name__}: {exc}")
    finally:
        try:
            await s.close()
        except Exception:
            pass


async def _recover(s: Session, stats: Stats, plan: Plan, prompt: str, expected, check) -> bool:
    """Reconnect as a browser does after the server went away: a new socket, a rerun with the
    URL the app last wrote (the prompt and every choice are in it), typed state forgotten."""
    try:
        await s.close()  # a timed-out socket may still be open: a browser drops it too
    except Exception:
        pass
    for attempt in range(10):
        await asyncio.sleep(0.5 * (attempt + 1))
        try:
            s.session_id = ""  # the old server is gone; a new one makes a new session
            s.widget_states.clear()
            await s.connect()
            stats.upstreams.setdefault(plan.index, set()).add(s.upstream)
            result = await s.rerun()
            return check("reconnect", result, prompt)
        except Exception:
            continue
    return False


# --- the server and the report ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, env: dict[str, str] | None = None, address: str | None = "127.0.0.1",
                 log: Path | None = None, plain: bool = False) -> subprocess.Popen:  # fmt: skip
    """``streamlit run app.py`` on ``port`` as ``gptviz serve`` starts it (``plain``: the bare
    ``python -m streamlit run``), served mode unless ``env`` says otherwise."""
    if plain:  # what a teacher types without gptviz serve
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py"]
    else:  # gptviz serve: app modules imported before the first session (gptviz.launch.preload)
        cmd = [sys.executable, "-m", "gptviz.launch", "run", "app.py"]
    cmd += ["--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    if address is not None:
        cmd += ["--server.address", address]
    full = {**os.environ, "GPTVIZ_MODE": "served", "GPTVIZ_NO_DOWNLOADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    full = {k: v for k, v in full.items() if v is not None}
    out = log.open("w") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(base: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{base} did not answer /_stcore/health within {timeout:.0f} s")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return {"n": len(values), "median_s": round(statistics.median(values), 3), "p95_s": round(p95, 3)}


async def drive(base: str, plans: list[Plan], *, think=(5.0, 15.0), ramp: float = 60.0, duration: float = 600.0,
                pids: list[int] = (), seed: int = 0, local_addrs: list[str] | None = None,
                timeout: float = 120, during=None) -> dict:  # fmt: skip
    """Run every plan against ``base`` (sessions joining over ``ramp`` seconds) and report.
    ``during`` (a coroutine function) runs beside the sessions: the fault test kills a replica."""
    expected = expected_counts({p for plan in plans for p in plan.prompts})
    stats = Stats()
    rss: dict[int, list[float]] = {pid: [] for pid in pids}
    t0 = time.monotonic()
    deadline = t0 + duration

    async def sample() -> None:
        while True:
            for pid in pids:
                rss[pid].append(rss_mb(pid))
            await asyncio.sleep(0.5)

    async def join(plan: Plan, delay: float) -> None:
        await asyncio.sleep(delay)
        addr = local_addrs[plan.index % len(local_addrs)] if local_addrs else None
        await run_session(plan, base, stats, expected, think, deadline, random.Random(seed + plan.index), addr, timeout)

    sampler = asyncio.create_task(sample())
    tasks = [join(p, ramp * i / max(1, len(plans))) for i, p in enumerate(plans)]
    if during is not None:
        tasks.append(during())
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 60)
    finally:
        sampler.cancel()
    wall = time.monotonic() - t0
    all_times = [t for v in stats.times.values() for t in v]
    return {
        "sessions": len(plans),
        "finished_sessions": stats.done_sessions,
        "actions": stats.actions,
        "wall_s": round(wall, 1),
        "actions_per_s": round(stats.actions / wall, 2) if wall else 0.0,
        "per_action": {k: _summary(v) for k, v in sorted(stats.times.items())},
        "all_actions": _summary(all_times) if all_times else {},
        "errors": len(stats.errors),
        "mixed": len(stats.mixed),
        "lost": len(stats.lost),
        "reconnects": stats.reconnects,
        "recovered": stats.recovered,
        "upstreams": sorted({u for s in stats.upstreams.values() for u in s if u}),
        "sessions_per_upstream": _per_upstream(stats.upstreams),
        "server_rss_mb": {str(p): {"max": max(v, default=0.0), "last": v[-1] if v else 0.0} for p, v in rss.items()},
        "error_samples": stats.errors[:10],
        "mixed_samples": stats.mixed[:10],
        "lost_samples": stats.lost[:10],
    }


def _per_upstream(upstreams: dict[int, set[str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ups in upstreams.values():
        for u in ups:
            if u:
                out[u] = out.get(u, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=60)
    ap.add_argument("--ramp", type=float, default=60.0, help="seconds over which the sessions join")
    ap.add_argument("--actions", type=int, default=6, help="actions per session (the first opens the link)")
    ap.add_argument("--think", type=float, nargs=2, default=(5.0, 15.0), metavar=("MIN", "MAX"))
    ap.add_argument("--duration", type=float, default=600.0, help="hard stop, seconds")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds one action may take")
    ap.add_argument("--url", help="drive this server (e.g. the deploy/ proxy) instead of starting one")
    ap.add_argument("--pids", default="", help="server process ids to sample RSS from (with --url)")
    ap.add_argument("--local-addrs", default="", help="comma list of 127.0.0.N source addresses for the sockets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the report as JSON here too")
    ap.add_argument("--plain", action="store_true", help="start `python -m streamlit run app.py` without preload")
    ap.add_argument(
        "--kill-after", type=float, help="the fault run: SIGKILL the first of --pids after this many seconds"
    )
    ap.add_argument("--note", default="measured beside other work on a shared machine: not final",
                    help="stored in the report (say whether the machine was idle)")  # fmt: skip
    args = ap.parse_args(argv)
    plans = make_plans(args.sessions, args.actions, args.seed)
    proc = None
    base = args.url
    pids = [int(p) for p in args.pids.split(",") if p]
    if base is None:
        port = free_port()
        proc = start_server(port, plain=args.plain)
        base = f"http://127.0.0.1:{port}"
        pids = [proc.pid]
    during = None
    if args.kill_after is not None:
        if not pids:
            ap.error("--kill-after needs --pids (the replica to kill is the first)")

        async def during() -> None:
            await asyncio.sleep(args.kill_after)
            os.kill(pids[0], signal.SIGKILL)
            print(f"killed replica pid {pids[0]} at {args.kill_after:.0f} s", file=sys.stderr, flush=True)

    try:
        wait_healthy(base, proc)
        report = asyncio.run(
            drive(base, plans, think=tuple(args.think), ramp=args.ramp, duration=args.duration, pids=pids,
                  seed=args.seed, local_addrs=[a for a in args.local_addrs.split(",") if a] or None,
                  timeout=args.timeout, during=during)
        )  # fmt: skip
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    report["note"] = args.note
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.kill_after is not None:  # the action in flight on the killed replica may fail; nothing else
        ok = (
            report["mixed"] == 0
            and report["recovered"] == report["reconnects"]
            and report["errors"] <= report["reconnects"]
        )
        return 0 if ok else 1
    return 0 if report["errors"] == 0 and report["mixed"] == 0 and report["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
