"""`pip install .` gives a working gptviz: the library, its models, the app files and the command.

Built the way `python -m build` does (an sdist from the source, then the wheel from the sdist),
with the main venv's setuptools so no network is needed. Installed with `pip --no-deps` into a
fresh venv (no --system-site-packages) whose `.pth` file points at the main venv's packages: the
dependencies are reused, but gptviz itself comes only from the wheel, and every command runs
from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import gptviz

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Hello, world!"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _run(cmd: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _copy_source(dest: Path) -> Path:
    """The files a build reads: the root's files (pyproject.toml, README.md, app.py, ...),
    the package and the app's pages, without caches."""
    dest.mkdir()
    for item in ROOT.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, dest / item.name)
    for name in ("gptviz", "pages"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _backend(hook: str, source: Path, out: Path) -> Path:
    """Call setuptools' PEP 517 hook (build_sdist / build_wheel / build_editable) in ``source``."""
    out.mkdir(exist_ok=True)
    code = f"from setuptools import build_meta as b; print(b.{hook}({str(out)!r}))"
    name = _run([sys.executable, "-c", code], cwd=source).stdout.strip().splitlines()[-1]
    return out / name


def _venv(where: Path) -> Path:
    """A fresh venv that sees the main venv's packages through a .pth file; returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", where], cwd=where.parent)
    python = where / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=where).stdout.strip()
    base = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    base |= {p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")}  # and what they add
    (Path(site) / "_gptviz_test_base.pth").write_text("\n".join(sorted(base)) + "\n")
    return python


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("dist")
    sdist = _backend("build_sdist", _copy_source(tmp / "src"), tmp / "dist")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    (unpacked,) = (tmp / "unpacked").iterdir()
    wheel = _backend("build_wheel", unpacked, tmp / "dist")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("venv")
    python = _venv(tmp / "venv")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", dists["wheel"]], cwd=tmp)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return {"python": python, "bin": python.parent, "cwd": elsewhere}


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_pyproject_pins_the_same_runtime_dependencies_as_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == sorted(_requirements())
    assert "torch==2.13.0" in project["dependencies"]  # unpinned, pip would fetch a multi-GB CUDA build
    assert project["scripts"]["gptviz"] == "gptviz.__main__:main"


def test_wheel_holds_the_package_its_models_and_the_app(dists):
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    expected = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "gptviz").rglob("*.py")
        if "__pycache__" not in p.parts and "assets" not in p.parts
    }
    assets = ROOT / "gptviz" / "assets"
    for pattern in ("*.safetensors", "*.json", "*.tiktoken", "*-snapshots/*.safetensors"):
        expected |= {p.relative_to(ROOT).as_posix() for p in assets.glob(pattern)}
    expected |= {"gptviz/_app/app.py"} | {f"gptviz/_app/pages/{p.name}" for p in (ROOT / "pages").glob("*.py")}
    assert "gptviz/assets/gpt2-style.safetensors" in expected
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if n.endswith(".pt")], "training state must not ship"
    app_root = {n for n in names if re.fullmatch(r"gptviz/_app/[^/]+", n)}
    assert app_root == {"gptviz/_app/app.py"}, "only app.py may sit at the repository root (see pyproject.toml)"
    meta = Parser().parsestr(zipfile.ZipFile(dists["wheel"]).read("gptviz-0.1.0.dist-info/METADATA").decode())
    assert sorted(meta.get_all("Requires-Dist")[: len(_requirements())]) == sorted(_requirements())
    sdist = {n.split("/", 1)[1] for n in tarfile.open(dists["sdist"]).getnames() if "/" in n}
    assert {"app.py", "pyproject.toml", "README.md", "gptviz/assets/gpt2-style.safetensors"} <= sdist


PROBE = """
import importlib.metadata as md, json
from packaging.requirements import Requirement
from streamlit.testing.v1 import AppTest
import gptviz, gptviz.analysis, gptviz.figures
from gptviz.__main__ import build_parser
from gptviz.launch import app_path

unmet = [
    f"{req} ({md.version(req.name)})"
    for req in map(Requirement, md.requires("gptviz"))
    if req.marker is None and not req.specifier.contains(md.version(req.name))  # the runtime pins, no extras
]
home = AppTest.from_file(str(app_path()), default_timeout=240).run()
page = AppTest.from_file(str(app_path()), default_timeout=240)
page.switch_page("pages/1_Tokenization.py").run()
print(json.dumps({
    "package": gptviz.__file__,
    "app": str(app_path()),
    "help": build_parser().format_help(),
    "unmet": unmet,
    "errors": [str(e.value) for at in (home, page) for e in (*at.exception, *at.error)],
    "titles": [home.title[0].value, page.title[0].value],
    "charts": len(page.get("plotly_chart")),
}))
"""


@pytest.fixture(scope="module")
def probe(installed) -> dict:
    """What the installed package sees and does, from one interpreter start (imports are slow)."""
    out = _run([installed["python"], "-c", PROBE], cwd=installed["cwd"], timeout=480).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_installed_package_is_used_with_its_app_files_and_pinned_dependencies(installed, probe):
    package = Path(probe["package"])
    assert package.is_relative_to(installed["python"].parent.parent / "lib"), package
    assert Path(probe["app"]) == package.parent / "_app" / "app.py"
    assert not probe["unmet"]
    assert all(cmd in probe["help"] for cmd in ("trace", "app", "eval", "train"))


def test_installed_app_files_render(probe):
    """The installed app.py, and a page from the pages/ beside it, run headless (AppTest) cleanly."""
    assert not probe["errors"]
    home, page = probe["titles"]
    assert "gptviz" in home and "Tokenization" in page and probe["charts"] >= 1


def test_gptviz_trace_prints_tokens_ids_and_top_next_tokens(installed):
    out = _run([installed["bin"] / "gptviz", "trace", PROMPT], cwd=installed["cwd"]).stdout
    assert out.startswith("model: bundled:gpt2-style (")
    rows = re.findall(r"^\s*(\d+)\s+(\d+)\s+'.*'$", out.split("top 5 next tokens:")[0], re.M)
    top = re.findall(r"^\s*[\d.]+%\s+(\d+)\s+'.*'$", out.split("top 5 next tokens:")[1], re.M)
    trace = gptviz.run(gptviz.load_model("bundled:gpt2-style"), PROMPT)  # the checkout, for comparison
    assert [int(i) for _, i in rows] == trace.ids.tolist()
    assert [int(i) for i in top] == trace.top_tokens(k=5)["id"].tolist()


def test_gptviz_app_help_explains_without_starting_streamlit(installed):
    out = _run([installed["bin"] / "gptviz", "app", "--help"], cwd=installed["cwd"]).stdout
    assert out.startswith("usage: gptviz app")
    assert "streamlit run" in out and "--server.port" in out
    app = Path(re.search(r"app files: (\S+)", out)[1])
    assert app.is_file() and app.is_relative_to(installed["python"].parent.parent)
    assert (app.parent / "pages" / "4_Attention.py").is_file()


def test_editable_install_runs_the_checkout_files(tmp_path):
    source = _copy_source(tmp_path / "src")
    python = _venv(tmp_path / "venv")
    cmd = [
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--ignore-installed",
        "--no-build-isolation",
        "-e",
        source,
    ]
    _run(cmd, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _run([python.parent / "gptviz", "app", "--help"], cwd=elsewhere).stdout
    assert f"app files: {source / 'app.py'}" in out


# --- the command line, in process (no install) -------------------------------------------------


def test_app_passes_streamlit_options_through(monkeypatch):
    import gptviz.launch
    from gptviz.__main__ import main

    seen = []
    monkeypatch.setattr(gptviz.launch, "run_app", lambda extra: seen.append(extra) or 0)
    assert main(["app"]) == 0
    assert main(["app", "--server.port", "8600", "--theme.base=dark"]) == 0
    assert main(["app", "--", "--help"]) == 0  # Streamlit's own help
    assert seen == [[], ["--server.port", "8600", "--theme.base=dark"], ["--help"]]
    with pytest.raises(SystemExit):
        main(["trace", "hi", "--server.port", "1"])  # only `app` forwards unknown options
    cmd = gptviz.launch.streamlit_command(["--server.port", "8600"])
    assert cmd == [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", "8600"]


def test_app_help_is_ours_and_starts_nothing(monkeypatch, capsys):
    import gptviz.launch
    from gptviz.__main__ import main

    monkeypatch.setattr(gptviz.launch, "run_app", lambda extra: pytest.fail("started streamlit"))
    with pytest.raises(SystemExit) as done:
        main(["app", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("usage: gptviz app")
    assert f"app files: {ROOT / 'app.py'}" in out and "gptviz app -- --help" in out
