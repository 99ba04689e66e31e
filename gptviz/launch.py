"""Find the app's files and start ``streamlit run`` (the ``gptviz app`` command).

From a checkout the app is ``app.py`` beside the package; an installed package carries a copy
under ``<prefix>/share/gptviz`` (declared as data files in pyproject.toml).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def app_path() -> Path:
    candidates = [
        Path(__file__).resolve().parent.parent / "app.py",
        Path(sysconfig.get_path("data")) / "share" / "gptviz" / "app.py",
        Path(sys.prefix) / "share" / "gptviz" / "app.py",
    ]
    for path in candidates:
        if path.is_file() and (path.parent / "pages").is_dir():
            return path
    raise FileNotFoundError("gptviz app files not found; looked at " + ", ".join(map(str, candidates)))


def run_app(extra: list[str] | None = None) -> int:
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path()), *(extra or [])]
    return subprocess.call(cmd)
