"""Downloading from the Hub only when asked, against a stand-in Hub served by this test on 127.0.0.1.

The stand-in answers the four requests ``huggingface_hub`` makes (revision info, tree, HEAD and
GET of ``resolve``) for a tiny random GPT-2 written here with ``transformers``, a gated repo, a
repo with only pickled weights, and says "not found" to everything else. It records every
request, so "nothing touched the network" is a fact the test reads, not an assumption.

``huggingface_hub`` reads ``HF_HUB_OFFLINE`` when first imported (the suite sets it, see
conftest.py), so the in-process tests switch its constant off for themselves; the end-to-end test
runs ``python -m gptviz download`` in a fresh process with ``HF_ENDPOINT``, as a user would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch

import gptviz
from gptviz import hub
from gptviz.__main__ import main as gptviz_main
from gptviz.checkpoints import CheckpointError, find_in_hf_cache
from tests.hf_families import TEXT, make_family_model

ROOT = Path(__file__).resolve().parent.parent
TINY = "tiny-org/tiny-gpt2"
GATED = "tiny-org/gated-llama"
PICKLED = "tiny-org/only-bin"
LLAMA = "tiny-org/tiny-llama"


def _write_tiny_gpt2(folder: Path) -> None:
    """A random 2-layer GPT-2 (GPT-2's vocabulary, so gptviz's GPT-2 tokenizer fits) and a small
    byte-level BPE tokenizer.json trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50257)
    GPT2LMHeadModel(cfg).save_pretrained(folder, safe_serialization=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Hello, world! The cat sat on the mat."] * 20, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    (folder / "pytorch_model.bin").write_bytes(b"a pickle gptviz must never fetch")
    (folder / "README.md").write_text("tiny")


class StandInHub:
    """Repos as ``{repo_id: {"sha": ..., "files": {path: bytes}, "gated": bool}}``; ``requests``
    lists every request seen, as ``"METHOD path"``."""

    def __init__(self, repos: dict[str, dict]) -> None:
        self.repos = repos
        self.requests: list[str] = []
        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub_.answer(self, body=False)

            def do_GET(self) -> None:
                hub_.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, body: bool) -> None:
        payload = json.dumps({"error": code}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if body:
            h.wfile.write(payload)

    def _json(self, h: BaseHTTPRequestHandler, data: object) -> None:
        payload = json.dumps(data).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _repo_rev(self, rest: str) -> tuple[str, dict | None, str]:
        """``org/name/<kind>/<rev>/...`` split at the known repo ids."""
        for repo_id, repo in self.repos.items():
            if rest.startswith(repo_id + "/"):
                return repo_id, repo, rest[len(repo_id) + 1 :]
        parts = rest.split("/")
        return "/".join(parts[:2]), None, "/".join(parts[2:])

    def answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append(f"{h.command} {path}")
        api = path.startswith("/api/models/")
        repo_id, repo, tail = self._repo_rev(path.removeprefix("/api/models/") if api else path.lstrip("/"))
        if repo is None:
            return self._error(h, 401, "RepoNotFound", body)
        kind, _, rest = tail.partition("/")
        rev, _, file = rest.partition("/")
        if rev not in ("main", repo["sha"]):
            return self._error(h, 404, "RevisionNotFound", body)
        files: dict[str, bytes] = repo["files"]
        if api and kind == "revision":
            return self._json(
                h,
                {
                    "id": repo_id,
                    "sha": repo["sha"],
                    "gated": "manual" if repo.get("gated") else False,
                    "siblings": [{"rfilename": p} for p in files],
                },
            )
        if api and kind == "tree":
            tree = [
                {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for p, b in files.items()
            ]
            return self._json(h, tree)
        if not api and kind == "resolve":
            if repo.get("gated"):
                return self._error(h, 401, "GatedRepo", body)
            if file not in files:
                return self._error(h, 404, "EntryNotFound", body)
            data = files[file]
            etag = hashlib.sha256(data).hexdigest()
            h.send_response(200)
            h.send_header("X-Repo-Commit", repo["sha"])
            h.send_header("ETag", f'"{etag}"')
            h.send_header("X-Linked-Etag", f'"{etag}"')
            h.send_header("X-Linked-Size", str(len(data)))
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if body:
                h.wfile.write(data)
            return None
        return self._error(h, 404, "EntryNotFound", body)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> StandInHub:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    _write_tiny_gpt2(folder)
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    config = files["config.json"]
    llama = tmp_path_factory.mktemp("tiny-llama")
    make_family_model("llama", llama)
    server = StandInHub(
        {
            TINY: {"sha": "a" * 40, "files": files},
            LLAMA: {"sha": "d" * 40, "files": {p.name: p.read_bytes() for p in sorted(llama.iterdir())}},
            GATED: {"sha": "b" * 40, "files": {"config.json": config, "model.safetensors": b"x" * 10}, "gated": True},
            PICKLED: {"sha": "c" * 40, "files": {"config.json": config, "pytorch_model.bin": b"x" * 10}},
        }
    )
    server.source, server.llama_source = folder, llama
    yield server
    server.stop()


@pytest.fixture
def online(monkeypatch, tmp_path, stand_in):
    """This test may use the network (the stand-in only): offline mode off, an empty cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    stand_in.requests.clear()
    return stand_in


def test_the_suite_runs_offline():
    from huggingface_hub import constants

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert constants.HF_HUB_OFFLINE  # set before huggingface_hub was first imported


def test_plan_lists_only_safetensors_config_and_tokenizer_files_with_their_sizes(online):
    plan = hub.plan_download(TINY)
    assert plan.commit == "a" * 40
    names = [f.path for f in plan.files]
    assert names[0] == "config.json" and "model.safetensors" in names and "tokenizer.json" in names
    assert "pytorch_model.bin" not in names and "README.md" not in names
    served = online.repos[TINY]["files"]
    assert {f.path: f.size for f in plan.files} == {p: len(served[p]) for p in names}
    assert plan.total_bytes == sum(len(served[p]) for p in names)
    assert hub.human_size(plan.total_bytes) in plan.describe()
    assert not any(r.startswith("GET /" + TINY) for r in online.requests)  # metadata only: no file body


def test_download_then_load_model_runs_and_refs_main_points_at_the_commit(online, tmp_path):
    plan = hub.plan_download(TINY)
    seen: list[tuple[int, int]] = []
    folder = hub.download(plan, progress=lambda d, t: seen.append((d, t)))
    assert folder == find_in_hf_cache(TINY)
    assert folder.name == "a" * 40
    assert (folder.parent.parent / "refs" / "main").read_text() == "a" * 40
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.path for f in plan.files)
    assert seen[-1] == (plan.total_bytes, plan.total_bytes)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))  # monotone
    assert not any("pytorch_model.bin" in r for r in online.requests)
    model = gptviz.load_model(TINY)
    trace = gptviz.run(model, "Hello, world!", precision="full")
    from transformers import GPT2LMHeadModel  # the reference: the folder the stand-in serves

    ref = GPT2LMHeadModel.from_pretrained(online.source).eval()
    with torch.no_grad():
        expected = ref(torch.tensor(trace.ids.tolist())[None]).logits[0, -1].numpy()
    assert abs(trace.logits() - expected).max() < 1e-4


def test_a_llama_family_repo_downloads_with_its_tokenizer_and_matches_transformers(online):
    """Rotary, RMSNorm, SwiGLU, grouped-query attention from the Hub: its own tokenizer.json comes
    too, and the loaded model's logits equal transformers' on the served folder."""
    folder = hub.download(hub.plan_download(LLAMA))
    assert (folder / "tokenizer.json").is_file()
    model = gptviz.load_model(LLAMA)
    assert model.cfg.pos == "rotary" and model.cfg.kv_heads < model.cfg.n_head
    trace = gptviz.run(model, TEXT, precision="full")
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(online.llama_source).eval()
    with torch.no_grad():
        expected = ref(torch.tensor(trace.ids.tolist())[None]).logits[0].numpy()
    assert abs(trace["hook_logits"] - expected).max() < 1e-4


def test_cli_dry_run_prints_the_plan_and_downloads_nothing(online, capsys):
    assert gptviz_main(["download", TINY, "--dry-run"]) == 0
    out = capsys.readouterr().out
    plan = hub.plan_download(TINY)
    assert out.startswith(plan.describe()) and "nothing downloaded" in out
    assert hub.human_size(plan.total_bytes) in out
    assert not any(r.startswith("GET /" + TINY) for r in online.requests)
    assert not Path(os.environ["HF_HUB_CACHE"]).exists() or not any(Path(os.environ["HF_HUB_CACHE"]).rglob("*.*"))


def test_cli_download_fetches_in_a_fresh_process_then_the_model_loads(stand_in, tmp_path, monkeypatch):
    """As a user runs it: HF_ENDPOINT set before huggingface_hub is imported, a progress bar."""
    cache = tmp_path / "hub"
    env = {"HF_ENDPOINT": stand_in.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "gptviz", "download", TINY],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{TINY} @ main (commit aaaaaaaaaaaa)")  # the plan is printed first
    assert "model.safetensors" in done.stdout and "total" in done.stdout
    assert "100%" in done.stderr  # the tqdm bar ran to the end
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model = gptviz.load_model(TINY)
    assert model.cfg.n_layer == 2
    gptviz.run(model, "Hello")


def test_gated_repo_says_hf_token_and_licence_before_downloading(online):
    with pytest.raises(hub.DownloadError, match="HF_TOKEN") as info:
        hub.plan_download(GATED)
    assert "gated" in str(info.value) and "licence" in str(info.value)
    assert not any(r.startswith("GET /" + GATED) for r in online.requests)


def test_missing_repo_and_revision_and_pickle_only_repo_are_named(online):
    with pytest.raises(hub.DownloadError, match="no such model") as info:
        hub.plan_download("tiny-org/nope")
    assert "tiny-org/nope" in str(info.value)
    with pytest.raises(hub.DownloadError, match="no revision 'v9'"):
        hub.plan_download(TINY, revision="v9")
    with pytest.raises(hub.DownloadError, match="no safetensors weights") as info:
        hub.plan_download(PICKLED)
    assert "pytorch_model.bin" in str(info.value)
    with pytest.raises(hub.DownloadError, match="not a Hugging Face model name"):
        hub.plan_download("../etc/passwd")


def test_server_stopped_names_the_spec_and_says_what_to_do(online, monkeypatch, capsys):
    dead = StandInHub({})
    dead.stop()  # the port is closed now: connection refused
    monkeypatch.setenv("HF_ENDPOINT", dead.url)
    assert gptviz_main(["download", TINY]) == 2
    err = capsys.readouterr().err
    assert TINY in err and "cannot be reached" in err and dead.url in err
    assert f"python -m gptviz download {TINY}" in err and "copy the model's folder" in err


def test_offline_mode_is_one_clear_error(monkeypatch, tmp_path, stand_in):
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    stand_in.requests.clear()
    with pytest.raises(hub.DownloadError, match="offline mode") as info:
        hub.plan_download(TINY)
    assert f"python -m gptviz download {TINY}" in str(info.value)
    assert stand_in.requests == []


def test_load_model_of_an_uncached_name_never_touches_the_network(online):
    with pytest.raises(CheckpointError, match=f"python -m gptviz download {TINY}"):
        gptviz.load_model(TINY)
    assert online.requests == []


def test_a_link_naming_an_uncached_model_downloads_nothing_until_two_clicks(online):
    from apptest_utils import open_page

    at = open_page(model=TINY)
    assert not at.exception
    assert any("gptviz download" in e.value for e in at.error)  # the page says how to get it
    assert [b.label for b in at.sidebar.button] == [f"Look up {TINY} on the Hugging Face Hub"]  # an offer, no more
    assert online.requests == []
    at.button(key="hub_lookup").click().run()  # first click: metadata only, the size is shown
    assert online.requests and not any(r.startswith("GET /" + TINY) for r in online.requests)
    size = hub.human_size(hub.plan_download(TINY).total_bytes)
    assert at.button(key="hub_download").label == f"Download {TINY} ({size})"
    assert find_in_hf_cache(TINY) is None
    at.button(key="hub_download").click().run()  # second click: the download, then the model loads
    assert not at.exception
    assert find_in_hf_cache(TINY) is not None
    assert not at.error, [e.value for e in at.error]


def test_the_file_choice_follows_the_repo_layout():
    """Real layouts: sharded weights beside Mistral's consolidated.safetensors and a pickle,
    Llama's original/ folder, a SentencePiece-only tokenizer."""
    sizes = {
        "config.json": 1,
        "generation_config.json": 2,
        "model.safetensors.index.json": 3,
        "model-00001-of-00002.safetensors": 4,
        "model-00002-of-00002.safetensors": 5,
        "consolidated.safetensors": 6,
        "pytorch_model.bin": 7,
        "original/consolidated.00.pth": 8,
        "tokenizer.model": 9,
        "tokenizer_config.json": 10,
        "modeling_custom.py": 11,
    }
    picked = {f.path for f in hub._pick(sizes, "org/m", "main")}
    assert picked == {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer.model",
        "tokenizer_config.json",
    }
    with_json = {f.path for f in hub._pick({**sizes, "tokenizer.json": 12}, "org/m", "main")}
    assert "tokenizer.json" in with_json and "tokenizer.model" not in with_json
    with pytest.raises(hub.DownloadError, match="no config.json"):
        hub._pick({"model.safetensors": 1}, "org/m", "main")


def test_a_commit_revision_downloads_that_snapshot_and_a_gate_met_midway_is_named(online, monkeypatch, tmp_path):
    plan = hub.plan_download(TINY, revision="a" * 40)
    folder = hub.download(plan)
    assert folder.name == "a" * 40 and (folder / "model.safetensors").is_file()
    assert not (folder.parent.parent / "refs" / "main").exists()  # a commit is not a branch
    assert gptviz.load_model(str(folder)).cfg.n_layer == 2
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "another-cache"))
    online.repos[TINY]["gated"] = True  # the licence changed between the plan and the download
    try:
        with pytest.raises(hub.DownloadError, match="HF_TOKEN"):
            hub.download(dataclasses.replace(plan, files=plan.files[:1]))
    finally:
        online.repos[TINY]["gated"] = False
