"""The training text: the corpus, its splits, and invented casts for the renamed-cast windows.

Splits are by bytes: first 85% train, next 5% validation (checkpoint selection), last 10% test
(the reported bits per byte, never used for a choice). The test plays have a cast the training
plays never name, so a share of the training windows, and a second validation text, have their
speakers renamed to invented names (see ``rename_speakers``).
"""

from __future__ import annotations

import functools
import random
import re
from collections import defaultdict
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
SPLITS = (0.85, 0.05, 0.10)


def split_text(text: str) -> tuple[str, str, str]:
    """Train / validation / test by UTF-8 bytes (85 / 5 / 10), cut on character boundaries."""
    data = text.encode("utf-8")
    cuts = [int(len(data) * SPLITS[0]), int(len(data) * (SPLITS[0] + SPLITS[1]))]
    for i, c in enumerate(cuts):
        while c < len(data) and (data[c] & 0xC0) == 0x80:  # never cut inside a character
            c += 1
        cuts[i] = c
    return (
        data[: cuts[0]].decode("utf-8"),
        data[cuts[0] : cuts[1]].decode("utf-8"),
        data[cuts[1] :].decode("utf-8"),
    )


def read_corpus(path: str | Path | None = None) -> str:
    """The corpus at ``path`` (default: Tiny Shakespeare in the shared data folder)."""
    path = Path(path) if path else DEFAULT_DATA
    if not path.is_file():
        raise FileNotFoundError(f"corpus not found at {path} (pass --data PATH)")
    return path.read_text(encoding="utf-8")


# A speaker tag: a line of its own after a blank line (or at the start), ending in ':'.
SPEAKER_TAG = re.compile(r"(?:\A|(?<=\n\n))([A-Z][^\n:]{0,40}):(?=\n)")


def speaker_names(text: str) -> list[str]:
    """The cast's proper names: speaker tags written in capitals (``ROMEO``, ``KING RICHARD III``).

    Role tags in mixed case (``First Citizen``, ``Messenger``) recur across plays and are left alone.
    """
    return sorted({m for m in SPEAKER_TAG.findall(text) if m.upper() == m and any(c.isalpha() for c in m)})


def name_words(cast: list[str]) -> list[str]:
    """The words of the cast's names (``KING RICHARD III`` -> ``KING``, ``RICHARD``): single-word
    names to invent from, as most of a new play's cast are. Regnal numbers are left out."""
    return sorted({w for n in cast for w in n.split() if len(w) >= 3 and w.isalpha() and not set(w) <= set("IVX")})


@functools.cache
def _name_chain(pool: tuple[str, ...]) -> dict[str, list[str]]:
    """Which letter follows each two letters, and each letter, in the cast's names (``^`` starts,
    ``$`` ends): the two kinds of key have different lengths, so one dict holds both orders."""
    chain: defaultdict[str, list[str]] = defaultdict(list)
    for name in pool:
        s = f"^^{name}$"
        for i in range(2, len(s)):
            chain[s[i - 2 : i]].append(s[i])
            chain[s[i - 1]].append(s[i])
    return dict(chain)


def invent_name(rng: random.Random, pool: list[str], smooth: float = 0.0) -> str:
    """A name for a renamed cast, spelled like the pool's (``BAPTISTA``-like, in no play), which
    a model can only repeat by copying it from its context, as it must in a new play.

    Each letter follows the last two as in the pool's names (a letter-level Markov chain) or,
    with probability ``smooth``, the last one only. The pure chain only recombines pieces of
    the training cast, and a model that learns it sharply finds a real new name (``IAGO``,
    ``PETRUCHIO``) improbable; the smoothed chain spells more ways, as new plays do."""
    chain = _name_chain(tuple(pool))
    name = ""
    for _ in range(20):
        name, state = "", "^^"
        while len(name) < 14:
            c = rng.choice(chain[state[1] if smooth and rng.random() < smooth else state])
            if c == "$":
                break
            name, state = name + c, state[1] + c
        if len(name) >= 3 and name not in pool:
            return name
    return name or rng.choice(pool)


def rename_speakers(text: str, rng: random.Random, pool: list[str], smooth: float = 0.0) -> str:
    """Give the cast of ``text`` other names, consistently: tags and title-case mentions.

    Why: the test plays have a cast the training plays never name, and a model that has
    memorised ``ROMEO:`` pays ~5 bits per byte on ``PETRUCHIO:``. Renamed windows make the
    next speaker predictable only by copying a name from the context, which is how a
    reader (and an induction head) handles a new play.
    """
    names = speaker_names(text)
    if not names:
        return text
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for old in names:
        new = invent_name(rng, pool, smooth)
        for _ in range(10):
            if new not in used:
                break
            new = invent_name(rng, pool, smooth)
        mapping[old] = new
        used.add(new)
    return recast(text, mapping)


def recast(text: str, mapping: dict[str, str]) -> str:
    """Rename speakers by ``mapping`` (``ROMEO`` -> ``GRELONT``): their tags, and their title-case
    mentions in the lines (``Romeo's man`` -> ``Grelont's man``). Longer names are matched first."""
    if not mapping:
        return text
    text = SPEAKER_TAG.sub(lambda m: mapping.get(m.group(1), m.group(1)) + ":", text)
    titled = {old.title(): new.title() for old, new in mapping.items()}
    mention = re.compile(r"\b(" + "|".join(re.escape(t) for t in sorted(titled, key=len, reverse=True)) + r")\b")
    return mention.sub(lambda m: titled[m.group(1)], text)
