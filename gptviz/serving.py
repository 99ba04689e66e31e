"""Served mode: which model specs a server agrees to load when its visitors are untrusted.

A teacher who serves gptviz to a room (``--server.address 0.0.0.0``) turns every student's
browser, and every link they paste, into input to the teacher's machine. In local mode (one
person, bound to loopback) a link may name any folder, as it always could. In served mode a spec
is accepted only if it is

- a bundled model (``bundled:NAME`` or a shipped snapshot ``bundled:NAME@STEP``): always, the
  app's fallback needs one;
- a model already in the server's Hugging Face cache, named as ``cached_models()`` lists it (only
  when no allowlist is given, or the allowlist holds ``cached:*``);
- an entry of the teacher's allowlist (``gptviz serve --models`` or ``GPTVIZ_MODELS``): a
  bundled or cached name, or a folder or ``.safetensors`` path written exactly as listed.

Everything else (``/etc``, ``../``, an uncached Hub name, a real folder outside the allowlist) gets
one ``RefusedSpec`` whose message is the same for every spec and names no file, so a visitor
cannot probe which paths exist; the loader is never called for it. Nothing here imports
Streamlit: the UI reads the server address and passes it in.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable

from gptviz.checkpoints import BUNDLED, CheckpointError, bundled_snapshots, cached_models

LOCAL, SERVED = "local", "served"
# Caps on the work one request can ask for (both modes: a link is a request too). The Output
# page recomputes a restored continuation step by step once it outgrows the context, so a link
# naming thousands of generated tokens would otherwise hold a server thread for minutes.
MAX_GENERATED_TOKENS = 200
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
REFUSAL = "this server does not offer that model; pick one from the list in the sidebar"


class RefusedSpec(CheckpointError):
    """A spec served mode does not offer. Its message never depends on the spec or the disk."""

    def __init__(self) -> None:
        super().__init__(REFUSAL)


def resolve_mode(env_mode: str | None, address: str | None) -> str:
    """``local`` or ``served``: ``GPTVIZ_MODE`` wins when set; else local only when the server is
    bound to loopback. Streamlit's default (no address) listens on every interface, so it is
    served: a laptop running ``streamlit run app.py`` is reachable from the whole room."""
    explicit = (env_mode or "").strip().lower()
    if explicit in (LOCAL, SERVED):
        return explicit
    if explicit:
        raise ValueError(f"GPTVIZ_MODE must be 'local' or 'served', not {env_mode!r}")
    return LOCAL if (address or "").strip().lower() in LOOPBACK else SERVED


def current_mode(address: str | None) -> str:
    """The mode for a server bound to ``address``, reading ``GPTVIZ_MODE`` now (tests set it)."""
    return resolve_mode(os.environ.get("GPTVIZ_MODE"), address)


def parse_allowlist(text: str | None) -> tuple[str, ...]:
    """The teacher's allowlist from ``--models``/``GPTVIZ_MODELS``: comma-separated entries.
    An empty or unset list means the default: bundled models and the cached ones."""
    return tuple(dict.fromkeys(e.strip() for e in (text or "").split(",") if e.strip()))


def env_allowlist() -> tuple[str, ...]:
    return parse_allowlist(os.environ.get("GPTVIZ_MODELS"))


def _bundled_specs(with_snapshots: bool = False) -> list[str]:
    out = []
    for name in BUNDLED:
        out.append(f"bundled:{name}")
        if with_snapshots:
            out += [f"bundled:{name}@{s}" for s in bundled_snapshots(name)]
    return out


def _is_path(entry: str) -> bool:
    """Written as a path (absolute, relative with ``.``, home, or a file), not as a name."""
    return entry.startswith(("/", ".", "~")) or entry.endswith(".safetensors")


def _norm(entry: str) -> str:
    """A path written two ways (``/srv/m/``, ``/srv//m``) compares equal; no disk access."""
    return posixpath.normpath(posixpath.expanduser(entry)) if _is_path(entry) else entry


def offered(allowlist: Iterable[str] = ()) -> list[str]:
    """The specs served mode accepts (the sidebar's list), bundled first. Snapshots are accepted
    too (see ``resolve_spec``) but not listed: the timeline page opens them."""
    allow = tuple(allowlist)
    names = _bundled_specs()
    cached = cached_models()
    if not allow or "cached:*" in allow:
        names += cached
    for entry in allow:
        if entry in ("bundled:*", "cached:*"):
            continue
        if entry.startswith("bundled:") and entry not in _bundled_specs(True):
            continue  # a typo in the allowlist offers nothing
        names.append(entry)
    return list(dict.fromkeys(names))


def resolve_spec(spec: str, mode: str, allowlist: Iterable[str] = ()) -> str:
    """The spec to load, unchanged, or ``RefusedSpec``. Local mode accepts everything (the loader
    reports what is wrong); served mode only what ``offered`` lists plus bundled snapshots."""
    text = str(spec).strip()
    if mode == LOCAL:
        return text
    if mode != SERVED:
        raise ValueError(f"mode must be {LOCAL!r} or {SERVED!r}, not {mode!r}")
    bare = text.removeprefix("bundled:")
    if f"bundled:{bare}" in _bundled_specs(with_snapshots=True):
        return text
    allow = tuple(allowlist)
    if _is_path(text):
        if text in allow or _norm(text) in {_norm(e) for e in allow if _is_path(e)}:
            return text
        raise RefusedSpec()
    if text in offered(allow):
        return text
    raise RefusedSpec()
