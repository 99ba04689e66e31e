"""Fetching a model from the Hugging Face Hub, only when asked (``gptviz download``, the sidebar's button).

Nothing else in gptviz touches the network: ``load_model`` and links read the local cache only,
and this module imports ``huggingface_hub`` inside its functions, so loading a model never even
imports the client. A download is two steps so the size is known before any byte of weights
moves: ``plan_download`` asks the Hub which files the repo has at a revision (metadata only) and
picks the ones gptviz reads: safetensors weights, ``config.json`` and the tokenizer files, never a
pickle (``.bin``/``.pt``) or code; ``download`` then fetches exactly those, by commit hash, into
the normal Hugging Face cache, where ``checkpoints.find_in_hf_cache`` finds them. Every failure is
one ``DownloadError`` whose message says what to do.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gptviz.checkpoints import hf_cache_dirs, looks_like_repo_id

DEFAULT_ENDPOINT = "https://huggingface.co"
# The files gptviz reads besides the weights; tokenizer.model only where there is no tokenizer.json.
CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SINGLE_WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")

Progress = Callable[[int, int], None]  # (done_bytes, total_bytes)


class DownloadError(RuntimeError):
    """A model could not be fetched from the Hub (the message says why and what to do)."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int


@dataclass(frozen=True)
class DownloadPlan:
    """What ``download`` will fetch: one repo at one commit, the files and their sizes."""

    repo_id: str
    revision: str  # as asked (a branch, tag or commit)
    commit: str  # the 40-hex commit it resolved to
    files: tuple[RemoteFile, ...]
    endpoint: str
    token: str | None = field(default=None, repr=False)  # never printed

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self) -> str:
        """The plan as the CLI prints it: the repo, each file with its size, and the total."""
        width = max(len(f.path) for f in self.files)
        lines = [f"{self.repo_id} @ {self.revision} (commit {self.commit[:12]}) from {self.endpoint}"]
        lines += [f"  {f.path:<{width}}  {human_size(f.size):>10}" for f in self.files]
        lines.append(f"  {'total':<{width}}  {human_size(self.total_bytes):>10} in {len(self.files)} files")
        return "\n".join(lines)


def human_size(n: int) -> str:
    """Bytes in the units people read (decimal, as the Hub's own pages show sizes)."""
    if n < 1000:
        return f"{n} B"
    size, units = n / 1000, ["kB", "MB", "GB", "TB"]
    while size >= 1000 and len(units) > 1:
        size, units = size / 1000, units[1:]
    return f"{size:.1f} {units[0]}"


def cache_dir() -> Path:
    """The hub cache ``huggingface_hub`` itself would use, read now (not at import time), so the
    download lands where ``checkpoints.find_in_hf_cache`` looks first."""
    return hf_cache_dirs()[0]


def how_to_get(name: str) -> str:
    return (
        f"To get it, run `python -m gptviz download {name}` on a machine that is online (with the same "
        f"Hugging Face cache, {cache_dir()}), or copy the model's folder (config.json, *.safetensors, "
        "tokenizer.json) to this machine and open it by its path."
    )


def _endpoint(endpoint: str | None) -> str:
    # Read at call time: huggingface_hub reads HF_ENDPOINT once, when it is first imported.
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return env in ("1", "ON", "YES", "TRUE") or constants.is_offline_mode()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _translate(exc: BaseException, name: str, revision: str, endpoint: str) -> DownloadError | None:
    """One clear message per way the Hub can say no (None: not a Hub error, let it rise)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import httpx

    if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None:
        exc = exc.__cause__  # hf_hub_download wraps the HEAD request's own error
    site = "https://huggingface.co" if endpoint == DEFAULT_ENDPOINT else endpoint
    if isinstance(exc, OfflineModeIsEnabled):
        return DownloadError(
            f"cannot download {name!r}: Hugging Face offline mode is on (HF_HUB_OFFLINE). {how_to_get(name)}"
        )
    if isinstance(exc, httpx.ConnectError | httpx.TimeoutException | httpx.NetworkError | LocalEntryNotFoundError):
        return DownloadError(
            f"cannot download {name!r}: the Hugging Face Hub at {endpoint} cannot be reached "
            f"({_reason(exc)}). {how_to_get(name)}"
        )
    if isinstance(exc, GatedRepoError):  # a subclass of RepositoryNotFoundError: test it first
        return DownloadError(
            f"{name!r} is a gated repo: open {site}/{name} while logged in and accept its licence, then "
            "set HF_TOKEN to an access token of that account (https://huggingface.co/settings/tokens) "
            f"and run `python -m gptviz download {name}` again."
        )
    if isinstance(exc, RepositoryNotFoundError):
        return DownloadError(
            f"{name!r}: no such model on {endpoint} (check the spelling, e.g. HuggingFaceTB/SmolLM2-135M; "
            "a private repo also needs HF_TOKEN)."
        )
    if isinstance(exc, RevisionNotFoundError):
        return DownloadError(f"{name!r} has no revision {revision!r} (a branch, tag or commit hash) on {endpoint}.")
    if isinstance(exc, HFValidationError):
        return DownloadError(f"{name!r} is not a Hugging Face model name (expected org/name): {_reason(exc)}")
    if isinstance(exc, HfHubHTTPError):
        return DownloadError(f"the Hub refused {name!r} @ {revision}: {_reason(exc)}")
    return None


def _pick(paths: dict[str, int], name: str, revision: str) -> list[RemoteFile]:
    """The files gptviz reads, in the order they are fetched: small ones first, then the weights."""
    if "config.json" not in paths:
        raise DownloadError(
            f"{name!r} @ {revision} has no config.json at the top of the repo: not a model gptviz opens."
        )
    if SINGLE_WEIGHTS in paths:
        weights = [SINGLE_WEIGHTS]
    elif INDEX in paths and (shards := sorted(p for p in paths if SHARD.fullmatch(p))):
        weights = [INDEX, *shards]
    else:
        others = sorted(p for p in paths if p.endswith((".bin", ".pt", ".pth", ".ckpt", ".safetensors", ".gguf")))
        raise DownloadError(
            f"{name!r} @ {revision} has no safetensors weights (model.safetensors, or model.safetensors.index.json "
            f"with its shards); it has {others or 'no weight files at all'}. gptviz downloads only safetensors "
            "from the Hub, since a pickled .bin can run code when it is read."
        )
    tok = [p for p in TOKENIZER_FILES if p in paths]
    if "tokenizer.json" not in paths and "tokenizer.model" in paths:
        tok.append("tokenizer.model")
    small = [p for p in CONFIG_FILES if p in paths and p != "config.json"] + tok
    # config.json last of the small files is not needed for correctness (files go by commit hash);
    # it is first so a broken repo fails before the weights are fetched.
    return [RemoteFile(p, paths[p]) for p in ["config.json", *small, *weights]]


def plan_download(
    name: str, revision: str = "main", endpoint: str | None = None, token: str | None = None
) -> DownloadPlan:
    """Ask the Hub what downloading ``name`` at ``revision`` would fetch (metadata only, no file).

    Resolves the revision to a commit hash, lists the repo's top-level files with their sizes and
    checks with one HEAD request that the files may be read (a gated repo says no here, before
    anything is downloaded). Raises ``DownloadError`` for every way that can fail."""
    name, revision = name.strip(), (revision or "main").strip()
    endpoint = _endpoint(endpoint)
    if not looks_like_repo_id(name):
        raise DownloadError(
            f"{name!r} is not a Hugging Face model name (expected org/name, e.g. HuggingFaceTB/SmolLM2-135M)"
        )
    if _offline():
        raise DownloadError(
            f"cannot download {name!r}: Hugging Face offline mode is on (HF_HUB_OFFLINE). {how_to_get(name)}"
        )
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(name, revision=revision, timeout=20)
        commit = info.sha or ""
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise DownloadError(f"{name!r} @ {revision}: the Hub gave no commit hash ({commit!r})")
        paths = {f.path: int(f.size or 0) for f in api.list_repo_tree(name, revision=commit) if isinstance(f, RepoFile)}
        files = _pick(paths, name, revision)
        get_hf_file_metadata(
            hf_hub_url(name, "config.json", revision=commit, endpoint=endpoint), token=token, timeout=20
        )
    except DownloadError:
        raise
    except Exception as exc:
        if (err := _translate(exc, name, revision, endpoint)) is not None:
            raise err from exc
        raise
    return DownloadPlan(name, revision, commit, tuple(files), endpoint, token)


class _ProgressBar:
    """The few tqdm methods ``hf_hub_download`` calls (plain and Xet paths), feeding one callback.

    Only ``update`` counts bytes (bytes written); ``update_transfer`` (network bytes, which the
    downloader reports as well) is ignored so nothing is counted twice."""

    sink: Callable[[int], None] = staticmethod(lambda n: None)

    def __init__(self, *args, total: int | None = None, initial: int = 0, **kwargs) -> None:
        self.total, self.n, self.format_dict = total, initial, {}
        if initial:
            self.sink(initial)

    def update(self, n: int | float = 1) -> None:
        self.n += int(n)
        self.sink(int(n))

    def update_transfer(self, n: int | float = 1) -> None:
        pass

    def set_postfix_str(self, *args, **kwargs) -> None:
        pass

    set_transfer_postfix_str = set_description = set_postfix_str

    def refresh(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *args) -> None:
        self.close()


def download(plan: DownloadPlan, progress: Progress | None = None) -> Path:
    """Fetch the plan's files into the Hugging Face cache; return the snapshot folder.

    Files are fetched by commit hash (so all come from one commit even if the branch moves), then
    ``refs/<revision>`` is pointed at that commit, as ``huggingface_hub`` does for a branch, so
    ``load_model(name)`` opens this snapshot. ``progress(done_bytes, total_bytes)`` is called as
    bytes arrive (a CLI bar or a Streamlit progress bar)."""
    if _offline():
        raise DownloadError(
            f"cannot download {plan.repo_id!r}: Hugging Face offline mode is on (HF_HUB_OFFLINE). "
            f"{how_to_get(plan.repo_id)}"
        )
    from huggingface_hub import hf_hub_download

    total = plan.total_bytes
    done = shown = 0
    callback = progress or (lambda d, t: None)

    def report() -> None:  # never backwards, never past the total, whatever the retries did
        nonlocal shown
        if done > shown:
            shown = min(done, total)
            callback(shown, total)

    def sink(n: int) -> None:
        nonlocal done
        done += n
        report()

    bar = type("_Bar", (_ProgressBar,), {"sink": staticmethod(sink)})
    cache = cache_dir()
    snapshot: Path | None = None
    finished = 0
    for f in plan.files:
        try:
            local = hf_hub_download(
                plan.repo_id,
                f.path,
                revision=plan.commit,
                cache_dir=cache,
                endpoint=plan.endpoint,
                token=plan.token,
                tqdm_class=bar,
            )
        except Exception as exc:
            if (err := _translate(exc, plan.repo_id, plan.revision, plan.endpoint)) is not None:
                raise err from exc
            raise
        finished += f.size
        done = finished  # a retried or already-cached file counts exactly its size
        report()
        snapshot = Path(local).parent
    assert snapshot is not None  # every plan has config.json
    callback(total, total)
    _check_shards(snapshot, plan)
    if plan.revision != plan.commit:
        ref = snapshot.parent.parent / "refs" / plan.revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(plan.commit)  # the layout huggingface_hub writes: the bare hash, no newline
    return snapshot


def _check_shards(snapshot: Path, plan: DownloadPlan) -> None:
    """A sharded checkpoint's index must name only the shards that were fetched."""
    index = snapshot / INDEX
    if not index.is_file():
        return
    try:
        wanted = set(json.loads(index.read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DownloadError(f"{plan.repo_id}: {INDEX} is not a readable index ({_reason(exc)})") from exc
    missing = sorted(wanted - {f.path for f in plan.files})
    if missing:
        raise DownloadError(f"{plan.repo_id}: {INDEX} names shards that were not fetched: {missing[:5]}")
