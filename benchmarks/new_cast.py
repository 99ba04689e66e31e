"""How a model copes with a new play's cast, measured on the validation split only.

The test plays have characters the training plays never name, and their names are a large part
of what a bundled model gets wrong. To compare training recipes without looking at the test
split, this renames the validation text's cast to characters of Shakespeare plays that are not
in the training or validation text (Hamlet, Macbeth, Othello, ...), scores it the way the test
figure is scored (sliding windows of the model's context, stride half a context) and splits the
bits per byte into speaker tags and the rest. "repeat" tags are names spoken in the 300 bytes
before: a model that copies names from its context pays less for them.

    python benchmarks/new_cast.py                                   # both bundled models
    python benchmarks/new_cast.py bundled:gpt2-style path/to/run.safetensors
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gptviz
from gptviz.checkpoints import BUNDLED
from gptviz.evaluate import token_nll_per_token
from gptviz.tokenizer import get_tokenizer
from gptviz.train_data import _name_chain, name_words, read_corpus, recast, speaker_names, split_text

# Characters of plays that Tiny Shakespeare does not contain; any that the training or
# validation text names anyway are dropped below.
OTHER_PLAYS = """
HAMLET HORATIO POLONIUS OPHELIA LAERTES GERTRUDE CLAUDIUS ROSENCRANTZ GUILDENSTERN OSRIC MARCELLUS
BERNARDO REYNALDO FORTINBRAS MACBETH BANQUO MACDUFF DUNCAN MALCOLM FLEANCE LENNOX ANGUS SEYTON
OTHELLO IAGO DESDEMONA CASSIO RODERIGO BRABANTIO LODOVICO LEAR GONERIL REGAN CORDELIA EDGAR EDMUND
KENT ALBANY CORNWALL OSWALD VIOLA ORSINO OLIVIA MALVOLIO FESTE AGUECHEEK THESEUS HIPPOLYTA HERMIA
HELENA LYSANDER DEMETRIUS OBERON TITANIA PUCK QUINCE EGEUS SHYLOCK PORTIA BASSANIO NERISSA JESSICA
LORENZO LAUNCELOT CASSIUS CASCA OCTAVIUS CALPURNIA ROSALIND CELIA ORLANDO OLIVER TOUCHSTONE JAQUES
BEATRICE BENEDICK CLAUDIO HERO LEONATO DOGBERRY FALSTAFF PISTOL BARDOLPH NYM POINS HOTSPUR
GLENDOWER TIMON APEMANTUS ALCIBIADES TITUS LAVINIA TAMORA AARON CRESSIDA TROILUS PANDARUS ACHILLES
ULYSSES HECTOR CYMBELINE IMOGEN POSTHUMUS IACHIMO PERICLES MARINA GOWER HELICANUS BERTRAM PAROLLES
LAFEU
""".split()


def other_play_cast(train_text: str, val_text: str) -> str:
    """The validation text with its cast (tags and title-case mentions) renamed to unseen names."""
    seen = (train_text + val_text).upper()
    pool = [n for n in OTHER_PLAYS if not re.search(rf"\b{n}\b", seen)]
    return recast(val_text, dict(zip(speaker_names(val_text), pool, strict=False)))


def score(spec: str, text: str) -> dict[str, float]:
    """Bits per byte of ``text`` overall, on speaker tags (first and repeated) and elsewhere."""
    model = gptviz.load_model(spec)
    tok = get_tokenizer(model.cfg.tokenizer)
    ids = tok.encode(text)
    bits = [0.0, *token_nll_per_token(model, ids)]  # the first token is not scored
    starts, at = [], 0
    for i in ids:
        starts.append(at)
        at += len(tok.token_bytes(i))
    data = text.encode("utf-8")
    sums = {"tags": [0.0, 0], "repeat": [0.0, 0], "first": [0.0, 0]}
    tag_of = [""] * len(data)
    for m in re.finditer(rb"(?:\A|(?<=\n\n))([A-Z][^\n:]{0,40}):\n", data):
        kind = "repeat" if b"\n" + m.group(1) + b":\n" in data[max(0, m.start() - 300) : m.start()] else "first"
        tag_of[m.start() : m.end()] = [kind] * (m.end() - m.start())
        for key in ("tags", kind):
            sums[key][1] += m.end() - m.start()
    for b, s in zip(bits, starts, strict=True):
        if tag_of[s]:
            for key in ("tags", tag_of[s]):
                sums[key][0] += b
    total = sum(bits)
    return {
        "bits/byte": total / len(data),
        "tags": sums["tags"][0] / sums["tags"][1],
        "first tags": sums["first"][0] / sums["first"][1],
        "repeat tags": sums["repeat"][0] / sums["repeat"][1],
        "other text": (total - sums["tags"][0]) / (len(data) - sums["tags"][1]),
        "tag share": sums["tags"][1] / len(data),
    }


def name_chain_fit(train_text: str, val_text: str) -> None:
    """Bits per letter of the other plays' names under the smoothed name chain, per smoothing:
    the ``name_smoothing`` whose invented names are spelled most like a new play's cast."""
    seen = (train_text + val_text).upper()
    held_out = [n for n in OTHER_PLAYS if not re.search(rf"\b{n}\b", seen)]
    chain = _name_chain(tuple(name_words(speaker_names(train_text))))
    counts = {key: Counter(nexts) for key, nexts in chain.items()}
    print("\nname chain: bits per letter of other plays' names (1% uniform floor over 27 symbols)")
    print("| smoothing | bits/letter |\n|---|---|")
    for smooth in (0.0, 0.3, 0.5, 0.7, 0.9):
        bits, letters = 0.0, 0
        for name in held_out:
            s = f"^^{name}$"
            for i in range(2, len(s)):
                two, one = counts.get(s[i - 2 : i]), counts[s[i - 1]] if s[i - 1] in counts else Counter()
                p1 = one[s[i]] / max(1, one.total())
                p2 = two[s[i]] / two.total() if two else p1  # an unseen pair falls back, as invent_name cannot
                p = 0.99 * ((1 - smooth) * p2 + smooth * p1) + 0.01 / 27
                bits, letters = bits - math.log2(p), letters + 1
        print(f"| {smooth} | {bits / letters:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=[f"bundled:{n}" for n in BUNDLED])
    args = ap.parse_args()
    train_text, val_text, _ = split_text(read_corpus())
    text = other_play_cast(train_text, val_text)
    print("validation text, cast renamed to characters of other plays; bits per byte")
    print("| model | overall | tags | first tags | repeat tags | other text | tags share of bytes |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.models:
        r = score(spec, text)
        print(
            f"| {spec} | {r['bits/byte']:.3f} | {r['tags']:.2f} | {r['first tags']:.2f} | "
            f"{r['repeat tags']:.2f} | {r['other text']:.3f} | {r['tag share']:.1%} |"
        )
    name_chain_fit(train_text, val_text)


if __name__ == "__main__":
    main()
