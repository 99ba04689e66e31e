"""Find the app's files and start ``streamlit run`` (the ``gptviz app`` command).

Streamlit runs a script file with a ``pages/`` folder beside it, so the app must exist as files:
- an installed package (``pip install .``) carries a copy inside itself, ``gptviz/_app/app.py``
  and ``gptviz/_app/pages/*.py``: pyproject.toml maps the package ``gptviz._app`` to the
  repository root, so the wheel and the sdist pick up ``app.py`` and ``pages/`` as they are;
- a checkout (or ``pip install -e .``) runs ``app.py`` beside the package, so edits show at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def app_candidates() -> list[Path]:
    """Where ``app.py`` may be, in the order they are tried."""
    return [PACKAGE / "_app" / "app.py", PACKAGE.parent / "app.py"]


def app_path() -> Path:
    """The app's entry script (``app.py``, with its ``pages/`` folder beside it)."""
    for path in app_candidates():
        if path.is_file() and (path.parent / "pages").is_dir():
            return path
    looked = ", ".join(map(str, app_candidates()))
    raise FileNotFoundError(f"gptviz app files not found (looked at {looked}); reinstall gptviz")


def streamlit_command(extra: list[str] | None = None) -> list[str]:
    """The command ``gptviz app`` runs: ``python -m streamlit run <app.py> [streamlit options]``."""
    return [sys.executable, "-m", "streamlit", "run", str(app_path()), *(extra or [])]


def set_placement(device: str | None = None, dtype: str | None = None) -> None:
    """Tell the app where to run its models: ``GPTVIZ_DEVICE`` and ``GPTVIZ_DTYPE``, which the
    Streamlit process inherits (``gptviz.ui.caching.placement`` reads them). Unset arguments
    leave the variables as they are, so one exported by hand still applies."""
    if device is not None:
        os.environ["GPTVIZ_DEVICE"] = device
    if dtype is not None:
        os.environ["GPTVIZ_DTYPE"] = dtype


def run_app(extra: list[str] | None = None) -> int:
    """Become ``streamlit run`` (POSIX: exec, so signals such as Ctrl+C or a service manager's
    SIGTERM reach Streamlit itself and no orphan is left); elsewhere run it as a child.

    ``gptviz app`` is for one person: it binds 127.0.0.1 (local mode, see ``gptviz.serving``)
    unless ``--server.address`` or ``STREAMLIT_SERVER_ADDRESS`` says otherwise."""
    if not any(a == "--server.address" or a.startswith("--server.address=") for a in extra or []):
        os.environ.setdefault("STREAMLIT_SERVER_ADDRESS", "127.0.0.1")
    return _exec(streamlit_command(extra))


def serve_app(extra: list[str] | None = None, models: str | None = None) -> int:
    """``gptviz serve``: the app for a room of untrusted visitors. Always served mode, whatever
    the address: models only from the bundled set, the server's Hugging Face cache and the
    ``models`` allowlist (``GPTVIZ_MODELS``), and never a download. Streamlit's own default
    address (every interface) applies unless ``--server.address`` is given."""
    os.environ["GPTVIZ_MODE"] = "served"
    os.environ["GPTVIZ_NO_DOWNLOADS"] = "1"
    if models is not None:
        os.environ["GPTVIZ_MODELS"] = models
    os.environ.setdefault("STREAMLIT_SERVER_HEADLESS", "true")
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return _exec(serve_command(extra))


def serve_command(extra: list[str] | None = None) -> list[str]:
    """``python -m gptviz.launch run <app.py> [options]``: ``streamlit run`` after ``preload``."""
    return [sys.executable, "-m", "gptviz.launch", "run", str(app_path()), *(extra or [])]


# Modules the first script runs import (Streamlit imports pyarrow only when a table is drawn).
PRELOAD = ("pandas", "pyarrow", "plotly.graph_objects", "plotly.io", "gptviz.ui", "gptviz.figures", "gptviz.analysis")


def preload() -> None:
    """Import the app's modules in the main thread before the server starts. Streamlit runs each
    session's first script in its own thread, and when a room opens the page at once, their
    first imports race: a measured run of 4 sessions got ``partially initialized module 'pandas'``
    (benchmarks/load.py). Imported once here, the sessions find them in ``sys.modules``."""
    import importlib
    import pkgutil

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    import gptviz

    for mod in pkgutil.walk_packages(gptviz.__path__, "gptviz."):
        if mod.name.startswith(("gptviz._app", "gptviz.train", "gptviz.launch")):
            continue
        try:
            importlib.import_module(mod.name)
        except ImportError:  # an optional dependency: the page that needs it says so itself
            continue


def streamlit_env() -> None:
    """The app's Streamlit settings as Streamlit's environment variables. The app's
    .streamlit/config.toml is read from the working folder, which an installed `gptviz app` does
    not control (setdefault: a variable already set wins, and so do command-line flags).

    - Our sidebar draws the grouped page list; viewers get no Deploy / Rerun buttons.
    - No ``gc.collect(2)`` after every script run (Streamlit's ``runner.postScriptGC``): with
      torch and cached traces in the heap, py-spy put it at 46% of the server's CPU under the
      load test (60-120 sessions). Objects are freed by reference counting as before, and
      Python's own generational collector still runs.
    - No file watcher: a served app's code does not change under it, and the watcher polled
      the pages on every rerun."""
    os.environ.setdefault("STREAMLIT_CLIENT_SHOW_SIDEBAR_NAVIGATION", "false")
    os.environ.setdefault("STREAMLIT_CLIENT_TOOLBAR_MODE", "viewer")
    os.environ.setdefault("STREAMLIT_RUNNER_POST_SCRIPT_GC", "false")
    os.environ.setdefault("STREAMLIT_SERVER_FILE_WATCHER_TYPE", "none")


def _exec(cmd: list[str]) -> int:
    streamlit_env()
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(cmd[0], cmd)
    return subprocess.call(cmd)


if __name__ == "__main__":  # `python -m gptviz.launch run app.py …`: what `gptviz serve` runs
    import runpy

    streamlit_env()
    preload()
    runpy.run_module("streamlit", run_name="__main__", alter_sys=True)  # = python -m streamlit
