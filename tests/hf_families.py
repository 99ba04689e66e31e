"""Tiny random Hugging Face checkpoints of every supported family, written by the tests.

Each folder holds what a Hub snapshot holds: ``config.json`` (as ``save_pretrained`` writes it,
transformers 5 spelling), ``model.safetensors`` and a ``tokenizer.json`` (a small byte-level BPE
trained here, so no file is downloaded). Norm weights and biases are perturbed so a wrong weight
mapping cannot hide behind ones and zeros.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

VOCAB = 512
TEXT = "Hello, world! The quick brown fox jumps over the lazy dog. 12 + 30 = 42."
CORPUS = (
    "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. "
    "The quick brown fox jumps over the lazy dog. def f(x):\n    return x * 2\n"
    "Hello, world! 12 + 30 = 42. Zoë's café — naïve façade. "
) * 20


@functools.cache
def tokenizer_json() -> str:
    """A 512-token byte-level BPE (GPT-2's pre-tokenizer and decoder), as tokenizer.json text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]
    )
    tok.train_from_iterator([CORPUS], trainer)
    return tok.to_str()


def _configs():
    import transformers as tf

    common = {"vocab_size": VOCAB, "num_hidden_layers": 3, "max_position_embeddings": 64}
    return {
        "llama": (
            tf.LlamaConfig,
            tf.LlamaForCausalLM,
            dict(common, hidden_size=64, intermediate_size=96, num_attention_heads=8, num_key_value_heads=2),
        ),
        "llama3": (  # Llama 3's rope_scaling rule, multi-query attention, tied output
            tf.LlamaConfig,
            tf.LlamaForCausalLM,
            dict(
                common,
                hidden_size=64,
                intermediate_size=96,
                num_attention_heads=4,
                num_key_value_heads=1,
                tie_word_embeddings=True,
                rope_parameters={
                    "rope_type": "llama3",
                    "rope_theta": 500000.0,
                    "factor": 32.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16,
                },
            ),
        ),
        "mistral": (
            tf.MistralConfig,
            tf.MistralForCausalLM,
            dict(
                common,
                hidden_size=64,
                intermediate_size=96,
                num_attention_heads=4,
                num_key_value_heads=2,
                sliding_window=None,
            ),
        ),
        "qwen2": (
            tf.Qwen2Config,
            tf.Qwen2ForCausalLM,
            dict(common, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2),
        ),
        "qwen3": (  # head_dim 24 != 64 / 4, q/k RMSNorm
            tf.Qwen3Config,
            tf.Qwen3ForCausalLM,
            dict(
                common, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=24
            ),
        ),
        "gpt_neox": (  # partial rotary (a quarter of each head), parallel blocks, untied
            tf.GPTNeoXConfig,
            tf.GPTNeoXForCausalLM,
            dict(common, hidden_size=64, intermediate_size=96, num_attention_heads=4, rotary_pct=0.25),
        ),
    }


FAMILY_KINDS = ("llama", "llama3", "mistral", "qwen2", "qwen3", "gpt_neox")


def make_family_model(kind: str, folder: Path, seed: int = 0):
    """Write a tiny random checkpoint of ``kind`` into ``folder``; returns the HF model."""
    config_cls, model_cls, fields = _configs()[kind]
    torch.manual_seed(seed)
    cfg = config_cls(**fields, attn_implementation="eager")
    hf = model_cls(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1 and name.endswith("weight"):  # norm scales
                p.add_(torch.randn_like(p) * 0.3)
            elif name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.05)
            else:
                p.mul_(3.0)  # larger weights: attention patterns far from uniform
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(folder)
    (folder / "tokenizer.json").write_text(tokenizer_json())
    return hf
