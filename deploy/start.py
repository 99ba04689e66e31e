"""Start N ``gptviz serve`` replicas on loopback ports and nginx in front of them, on this machine.

python deploy/start.py --replicas 2 --port 8600                  # http://127.0.0.1:8600
python deploy/start.py --replicas 4 --port 80 --listen 0.0.0.0   # the room's address (as root)
python deploy/start.py --replicas 2 --models bundled:*,gpt2

Each replica is ``python -m gptviz serve --server.address 127.0.0.1 --server.port BASE+i``
(served mode, no downloads, the same ``--models`` allowlist, one cookie secret shared by all so
a browser that fails over keeps a valid XSRF cookie). A replica counts as ready once its health
check answers; nginx is started last (its own prefix folder, ``daemon off``, never the system
service) from ``deploy/nginx.conf.template``. Ctrl+C or SIGTERM stops everything. Prints one
JSON line with the URL, the replica ports and the process ids (the load test samples their RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


def find_nginx() -> str | None:
    for name in NGINX_CANDIDATES:
        path = shutil.which(name) or (name if Path(name).is_file() else None)
        if path:
            return path
    return None


def render_config(prefix: Path, listen: str, ports: list[int]) -> str:
    """The nginx config for replicas on 127.0.0.1:``ports``, listening on ``listen``."""
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in ports)
    text = TEMPLATE.read_text()
    return text.replace("@PREFIX@", str(prefix)).replace("@LISTEN@", listen).replace("@SERVERS@", servers)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class Cluster:
    """The replicas and the proxy, started and stopped together."""

    replicas: int = 2
    port: int = 8600
    base_port: int = 8601
    listen: str | None = None
    models: str | None = None
    prefix: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gptviz-nginx-")))
    env: dict[str, str] = field(default_factory=dict)
    replica_ports: list[int] | None = None  # instead of BASE+i (tests pick free ports)
    procs: list[subprocess.Popen] = field(default_factory=list)
    nginx: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ports(self) -> list[int]:
        return self.replica_ports or [self.base_port + i for i in range(self.replicas)]

    def replica_cmd(self, port: int) -> list[str]:
        cmd = [sys.executable, "-m", "gptviz", "serve", "--server.address", "127.0.0.1", "--server.port", str(port)]
        return cmd + (["--models", self.models] if self.models else [])

    def start(self, timeout: float = 180) -> Cluster:
        nginx = find_nginx()
        if nginx is None:
            raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        try:
            for port in self.ports:
                log = (self.prefix / f"replica-{port}.log").open("w")
                self.procs.append(subprocess.Popen(self.replica_cmd(port), cwd=ROOT, env=env, stdout=log, stderr=log))
            deadline = time.monotonic() + timeout
            for port, proc in zip(self.ports, self.procs, strict=True):
                while not _healthy(f"http://127.0.0.1:{port}"):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"replica on port {port} did not start (see {self.prefix}/replica-{port}.log)"
                        )
                    time.sleep(0.3)
            conf = self.prefix / "nginx.conf"
            conf.write_text(render_config(self.prefix, self.listen or f"127.0.0.1:{self.port}", self.ports))
            err = (self.prefix / "nginx.out").open("w")
            cmd = [nginx, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"]
            self.nginx = subprocess.Popen(cmd, stdout=err, stderr=err)
            while not _healthy(self.url):
                if self.nginx.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {(self.prefix / 'nginx.out').read_text()[-2000:]}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def kill_replica(self, i: int) -> None:
        """Stop replica ``i`` at once (SIGKILL: a crash, not a clean shutdown)."""
        self.procs[i].kill()
        self.procs[i].wait(timeout=10)

    def stop(self) -> None:
        for proc in [*([self.nginx] if self.nginx else []), *self.procs]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*([self.nginx] if self.nginx else []), *self.procs]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def describe(self) -> dict:
        return {
            "url": self.url,
            "replica_ports": self.ports,
            "replica_pids": [p.pid for p in self.procs],
            "nginx_pid": self.nginx.pid if self.nginx else None,
            "prefix": str(self.prefix),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--port", type=int, default=8600, help="the proxy's port")
    ap.add_argument("--base-port", type=int, default=8601, help="replica i listens on BASE+i (127.0.0.1)")
    ap.add_argument("--listen", help="nginx's listen address (default 127.0.0.1:PORT; 0.0.0.0:80 for a room)")
    ap.add_argument("--models", help="the allowlist passed to every `gptviz serve --models`")
    args = ap.parse_args(argv)
    cluster = Cluster(args.replicas, args.port, args.base_port, args.listen, args.models).start()
    print(json.dumps(cluster.describe()), flush=True)
    stop = {"now": False}

    def on_signal(signum, frame) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stop["now"] and cluster.nginx.poll() is None:  # a dead replica: the others serve
            time.sleep(0.5)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
