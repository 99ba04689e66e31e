"""Loading and saving models: bundled checkpoints, Hugging Face folders (every family in
``families.py``) and the Hugging Face cache.

Nothing here unpickles code: weights come from safetensors, or from ``torch.load`` with
``weights_only=True``. Every failure is one ``CheckpointError`` that names the file and what
was expected, so the app can show it instead of a traceback. Nothing touches the network.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
import re
import threading
from pathlib import Path

import torch
from safetensors.torch import save_file

from gptviz.config import GPTConfig
from gptviz.families import FAMILIES, Family, FamilyError, family_of
from gptviz.model import GPT

ASSETS = Path(__file__).parent / "assets"
BUNDLED = ("gpt2-style", "seed", "llama-style")  # the first is the app's default
HF_NAMES = ("gpt2", "distilgpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not what we expected (message says which)."""


def save_checkpoint(model: GPT, path: str | Path, dtype: torch.dtype = torch.float32, **meta: str) -> None:
    """Write weights as safetensors with the config in the metadata (tied weights once)."""
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    if model.cfg.tie_weights:
        state.pop("unembed.weight")
    save_file(state, str(path), metadata={"config": json.dumps(model.cfg.to_dict()), **meta})


_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _read_header(f, path: Path) -> tuple[dict, int]:
    """A safetensors file's JSON header (tensor name -> dtype, shape, offsets) and where its data
    starts, read from the open file ``f`` without touching the data."""
    n = int.from_bytes(f.read(8), "little")
    size = path.stat().st_size
    if not 2 <= n <= min(size - 8, 100_000_000):
        raise ValueError(f"header length {n} does not fit a file of {size} bytes")
    header = json.loads(f.read(n))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header, 8 + n


def read_safetensors(path: Path, state: dict[str, torch.Tensor] | None = None) -> dict[str, str]:
    """Read a safetensors file tensor by tensor into ``state`` (floats as float32); returns its
    metadata. Plain reads, no memory map, each tensor converted as soon as it is read: loading
    holds the float32 weights plus one tensor, not the file's pages and a converted copy too."""
    state = {} if state is None else state
    with path.open("rb") as f:
        header, base = _read_header(f, path)
        size = path.stat().st_size
        meta = header.pop("__metadata__", None) or {}
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            start, end = (int(x) for x in info["data_offsets"])
            dtype, shape = _DTYPES.get(info["dtype"]), [int(d) for d in info["shape"]]
            if dtype is None:
                raise ValueError(f"{name}: unsupported dtype {info['dtype']}")
            nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
            if end - start != nbytes or base + end > size or start < 0:
                raise ValueError(f"{name}: data offsets {start}..{end} do not fit shape {shape} or the file")
            raw = torch.empty(nbytes, dtype=torch.uint8)
            f.seek(base + start)
            if f.readinto(raw.numpy()) != nbytes:
                raise ValueError(f"{name}: file ends early")
            t = raw.view(dtype).reshape(shape)
            state[name] = t.float() if t.is_floating_point() and dtype != torch.float32 else t
    return meta


def load_checkpoint(path: str | Path) -> GPT:
    """Load a gptviz safetensors checkpoint written by ``save_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    state: dict[str, torch.Tensor] = {}
    try:
        meta = read_safetensors(path, state)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if "config" not in meta:
        raise CheckpointError(f"{path}: no gptviz config in the safetensors metadata")
    try:
        cfg = GPTConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad config in metadata ({exc})") from exc
    return _build(cfg, state, path)


def _build(cfg: GPTConfig, state: dict[str, torch.Tensor], path: Path) -> GPT:
    """The model for ``cfg`` holding ``state``'s tensors themselves: built on the meta device and
    filled by assignment, so no random init is ever allocated beside the weights."""
    with torch.device("meta"):
        model = GPT(cfg)
    _check_state(model, state, path)
    for k, v in state.items():
        if v.is_floating_point() and not v.is_contiguous():
            state[k] = v.contiguous()  # one tensor at a time (transposed GPT-2 Conv1D weights)
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_weights:
        model.unembed.weight = model.embed.weight
    model.init_buffers()
    return model.eval()


def _check_state(model: GPT, state: dict[str, torch.Tensor], path: Path) -> None:
    """Shape and dtype checks against the model's own names, reported as one readable error."""
    expected = model.state_dict()
    if model.cfg.tie_weights:
        expected.pop("unembed.weight")
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    not_float = [k for k in state if k in expected and not state[k].is_floating_point()]
    problems = []
    if missing:
        problems.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
    if extra:
        problems.append(f"unexpected {extra[:5]}{' …' if len(extra) > 5 else ''}")
    if wrong:
        problems.append(f"wrong shape {wrong[:3]}")
    if not_float:
        problems.append(f"not floating point {not_float[:3]}")
    if problems:
        raise CheckpointError(f"{path}: weights do not fit the model: " + "; ".join(problems))


# --- the bundled models -------------------------------------------------------------------


def bundled_card(name: str) -> dict:
    """The JSON model card written by ``gptviz train`` (empty if the model has none): a fresh
    dict each call, parsed from the file's text read once per process (pages ask on every rerun)."""
    text = _asset_text(f"{name}.json")
    return json.loads(text) if text is not None else {}


def forget_assets() -> None:
    """Read the bundled cards and snapshot folders afresh next time (``gptviz train`` has just
    written new ones into the assets folder, in this process)."""
    _asset_text.cache_clear()
    _snapshot_steps.cache_clear()


@functools.cache
def _asset_text(name: str) -> str | None:
    path = ASSETS / name
    return path.read_text() if path.is_file() else None


def bundled_tokenizer_name(name: str = BUNDLED[0]) -> str:
    """The tokenizer a bundled model was trained with (from its card)."""
    return bundled_card(name).get("config", {}).get("tokenizer", "gpt2")


def bundled_snapshots(name: str) -> list[int]:
    """Training steps for which a snapshot of bundled model ``name`` ships, ascending (step 0
    may be rebuilt from the recorded seed instead of stored: see ``initial_weights``)."""
    return list(_snapshot_steps(name))


@functools.cache
def _snapshot_steps(name: str) -> tuple[int, ...]:
    """The folder is read once per process: the served app asks on every rerun (py-spy: 8% of
    the server's CPU under load, globbing and resolving paths)."""
    folder = ASSETS / f"{name}-snapshots"
    steps = {int(p.stem.removeprefix("step")) for p in folder.glob("step*.safetensors")}
    if bundled_card(name).get("training", {}).get("rebuild_step0"):
        steps.add(0)
    return tuple(sorted(steps))


_INIT_LOCK = threading.Lock()


def initial_weights(card: dict) -> GPT:
    """The model exactly as training started it: the same config and seed, GPT's init, rounded
    to float16 like a stored snapshot. The global RNG is forked, so nothing else's draws move."""
    cfg = GPTConfig.from_dict(card["config"])
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(card["training"]["seed"])
        model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model.eval()


def _load_bundled(name: str) -> GPT:
    base, _, step = name.partition("@")
    if base not in BUNDLED:
        raise CheckpointError(f"unknown bundled model {base!r}; bundled models are {list(BUNDLED)}")
    if step:
        if not step.isdigit() or int(step) not in bundled_snapshots(base):
            raise CheckpointError(
                f"bundled model {base!r} has no snapshot at step {step!r}; steps: {bundled_snapshots(base)}"
            )
        path = ASSETS / f"{base}-snapshots" / f"step{int(step):06d}.safetensors"
        model = load_checkpoint(path) if path.is_file() else initial_weights(bundled_card(base))
    else:
        model = load_checkpoint(ASSETS / f"{base}.safetensors")
    model.card = bundled_card(base)
    return model


# --- Hugging Face checkpoints -----------------------------------------------------------


def hf_cache_dirs() -> list[Path]:
    """Where the Hugging Face hub cache may be, in the order ``huggingface_hub`` looks."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    dirs.append(Path(xdg) / "huggingface" / "hub")
    return list(dict.fromkeys(dirs))


REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def looks_like_repo_id(name: str) -> bool:
    """``org/name`` or a bare legacy name (``gpt2``): something the Hub could hold, not a path or a file."""
    return bool(REPO_ID.fullmatch(name)) and not name.endswith(".safetensors") and ".." not in name


def not_cached_hint(name: str) -> str:
    """One sentence for ``load_model``'s not-found error: how to fetch ``name``, which never happens by itself."""
    if not looks_like_repo_id(name):
        return ""
    return (
        f"To fetch it from the Hugging Face Hub, run `python -m gptviz download {name}` "
        "(gptviz never downloads a model by itself)."
    )


def find_in_hf_cache(name: str) -> Path | None:
    """The snapshot folder of model ``name`` (``gpt2`` or ``openai-community/gpt2``) if cached."""
    repos = [name] if "/" in name else [name, f"openai-community/{name}", f"distilbert/{name}"]
    for cache in hf_cache_dirs():
        for repo in repos:
            root = cache / ("models--" + repo.replace("/", "--"))
            snapshots = root / "snapshots"
            if not snapshots.is_dir():
                continue
            ref = root / "refs" / "main"
            if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
                return snapshots / ref.read_text().strip()
            candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
            for c in candidates:
                if (c / "config.json").is_file():
                    return c
    return None


def cached_models() -> list[str]:
    """Names of models of every supported family in the local Hugging Face cache."""
    found = []
    for cache in hf_cache_dirs():
        if not cache.is_dir():
            continue
        for root in sorted(cache.glob("models--*")):
            repo = root.name.removeprefix("models--").replace("--", "/")
            snap = find_in_hf_cache(repo)
            if snap is None:
                continue
            try:
                if json.loads((snap / "config.json").read_text()).get("model_type") in FAMILIES:
                    found.append(repo.removeprefix("openai-community/").removeprefix("distilbert/"))
            except (OSError, ValueError, AttributeError):
                continue
    return list(dict.fromkeys(found))


cached_gpt2_models = cached_models  # the name before other families were supported


def _read_hf_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        hf = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{folder}: not a checkpoint folder (no config.json)") from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(hf, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return hf


def _hf_config(folder: Path) -> tuple[GPTConfig, Family]:
    """Our config for a Hugging Face folder, and its family (errors name config.json's field)."""
    path = folder / "config.json"
    hf = _read_hf_config(folder)
    try:
        family = family_of(hf)
        cfg = family.config(hf)
    except (FamilyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    if family.model_type != "gpt2":
        cfg = cfg.replace(tokenizer=str(folder.resolve()))
    return cfg, family


def memory_budget_bytes() -> int:
    """Largest model (float32 weights) we agree to build: ``GPTVIZ_MAX_MODEL_GB``, else half of
    this machine's memory. Checked before anything is allocated, so a hostile config.json
    cannot exhaust a shared server."""
    raw = os.environ.get("GPTVIZ_MAX_MODEL_GB", "").strip()
    if raw:
        try:
            return int(float(raw) * 1e9)
        except ValueError as exc:
            raise CheckpointError(f"GPTVIZ_MAX_MODEL_GB must be a number, not {raw!r}") from exc
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 10**9


def count_params(cfg: GPTConfig) -> int:
    """Parameters of the model a config describes, without allocating it (meta tensors)."""
    with torch.device("meta"):
        return GPT(cfg).num_params()


def _safetensors_numel(folder: Path) -> int:
    """Numbers stored in a folder's safetensors files, from their headers only."""
    total = 0
    for f in folder.glob("*.safetensors"):
        try:
            with f.open("rb") as fh:
                header, _ = _read_header(fh, f)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{f}: cannot read the safetensors header ({exc})") from exc
        for name, info in header.items():
            if name != "__metadata__":
                total += math.prod(info.get("shape", []))
    return total


def _check_budget(cfg: GPTConfig, folder: Path) -> None:
    budget = memory_budget_bytes()
    n = max(count_params(cfg), _safetensors_numel(folder))
    if 4 * n > budget:
        raise CheckpointError(
            f"{folder}: {n / 1e9:.2f} B parameters need {4 * n / 1e9:.1f} GB as float32, over this "
            f"server's model budget of {budget / 1e9:.1f} GB (GPTVIZ_MAX_MODEL_GB)"
        )


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Weights from model.safetensors (single or sharded) or pytorch_model.bin (no pickled code)."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    legacy = folder / "pytorch_model.bin"
    state: dict[str, torch.Tensor] = {}
    try:
        if single.is_file():
            read_safetensors(single, state)
            return state
        if index.is_file():
            for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
                read_safetensors(folder / shard, state)
            return state
        if legacy.is_file():
            loaded = torch.load(legacy, map_location="cpu", weights_only=True, mmap=True)
            return {k: v.float() if v.is_floating_point() else v for k, v in loaded.items()}
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        bad = single if single.is_file() else index if index.is_file() else legacy
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{bad}: cannot read the weights safely ({reason})") from exc
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin next to config.json")


def hf_to_gptviz(state: dict[str, torch.Tensor], cfg: GPTConfig, family: str = "gpt2") -> dict[str, torch.Tensor]:
    """Rename a Hugging Face family's weights to ours (``families.FAMILIES[family].weights``)."""
    return FAMILIES[family].weights(state, cfg)


def load_hf_folder(folder: str | Path) -> GPT:
    """A Hugging Face folder of a supported family: ``config.json`` + safetensors (or
    ``pytorch_model.bin``) + ``tokenizer.json`` for the families after GPT-2. The config is
    checked (family, fields, memory budget) before the model is built."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder")
    cfg, family = _hf_config(folder)
    _check_budget(cfg, folder)
    if family.model_type != "gpt2" and not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder}: no tokenizer.json (a {family.model_type} model needs its own tokenizer)")
    try:
        state = family.weights(_read_weights(folder), cfg)
    except FamilyError as exc:
        raise CheckpointError(f"{folder}: {exc}") from exc
    model = _build(cfg, state, folder)
    model.family = family.model_type
    return model


# --- where the model runs ---------------------------------------------------------------------

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """``cpu`` (also ``None``), ``cuda``, ``cuda:N`` or ``auto`` (CUDA if this machine has it,
    else the CPU) as a ``torch.device``. Checked before any weight is read, so asking for a GPU
    this machine lacks fails at once with a ``CheckpointError`` that names the device."""
    text = "cpu" if device is None else str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"device {device!r} is not a device: use cpu, cuda, cuda:N or auto") from exc
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise CheckpointError(f"device {device!r} is not supported: use cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise CheckpointError(
            f"device {device!r} was asked for, but CUDA is not available here (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}); use device 'cpu' or 'auto'"
        )
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CheckpointError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )
    return dev


def resolve_dtype(dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``None``/``"float32"`` (the default), ``"bfloat16"`` or ``"float16"`` (or the torch dtypes,
    or ``bf16``/``fp16``/``half``) as a ``torch.dtype``; anything else is a ``CheckpointError``."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise CheckpointError(f"dtype {dtype} is not supported: use one of {list(DTYPES)}")
    name = str(dtype).strip().lower().removeprefix("torch.")
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise CheckpointError(f"dtype {dtype!r} is not supported: use one of {list(DTYPES)}")
    return DTYPES[name]


def place(model: GPT, device: torch.device, dtype: torch.dtype) -> GPT:
    """Move a model (weights read on the CPU as float32) to ``device`` and ``dtype`` once, and
    recompute the buffers no checkpoint stores on it (the rotary frequencies stay float32). A
    CPU float32 model is returned as it is. Each tensor is freed on the CPU as it moves, so a
    GPU load holds at most the host weights, not two copies."""
    if device.type == "cpu" and dtype == torch.float32 and model.device.type == "cpu" and model.dtype == dtype:
        return model
    model = model.to(device=device, dtype=dtype)
    if model.cfg.tie_weights:
        model.unembed.weight = model.embed.weight  # one tensor, as built
    model.init_buffers()
    return model


# --- one entry point ----------------------------------------------------------------------


def load_model(
    spec: str | Path = "bundled:gpt2-style",
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = None,
) -> GPT:
    """Load a model from a spec, offline.

    - ``bundled:gpt2-style`` / ``bundled:seed`` (``@STEP`` for a training snapshot);
    - a Hugging Face folder of a supported family (GPT-2, Llama, Mistral, Qwen2/3, GPT-NeoX),
      or a gptviz ``.safetensors`` file;
    - a model name in the local Hugging Face cache: ``gpt2``, ``distilgpt2``,
      ``HuggingFaceTB/SmolLM2-135M``… (``HF_HUB_CACHE`` / ``HF_HOME`` respected). Nothing
      is ever downloaded here.
    The returned model is in eval mode and carries ``.name`` (the spec) and ``.card``.

    ``device``: ``"cpu"`` (the default), ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when
    available); ``dtype``: ``None``/``"float32"`` (the default), ``"bfloat16"`` or ``"float16"``.
    Both are checked first (``resolve_device``, ``resolve_dtype``); the weights are read on the
    CPU as float32 within the memory budget, as always, and moved once (``place``).
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    text = str(spec).strip()
    if not text:
        raise CheckpointError("empty model spec")
    if text.startswith("bundled:") or text.split("@")[0] in BUNDLED:
        model = _load_bundled(text.removeprefix("bundled:"))
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            model = load_hf_folder(path)
        elif path.is_file():
            if path.suffix != ".safetensors":
                raise CheckpointError(f"{path}: expected a .safetensors file or a checkpoint folder")
            model = load_checkpoint(path)
        elif (snap := find_in_hf_cache(text)) is not None:
            model = load_hf_folder(snap)
        else:
            where = ", ".join(str(d) for d in hf_cache_dirs())
            raise CheckpointError(
                f"{text!r}: not a bundled model ({', '.join('bundled:' + b for b in BUNDLED)}), "
                f"not an existing file or folder, and not in the Hugging Face cache ({where})."
                + (f" {hint}" if (hint := not_cached_hint(text)) else "")
            )
        model.card = {}
    model.name = text if text.split("@")[0] not in BUNDLED else f"bundled:{text}"
    return place(model, dev, dt)
