"""gptviz: see inside a GPT, stage by stage.

>>> import gptviz
>>> model = gptviz.load_model("bundled:gpt2-style")
>>> trace = gptviz.run(model, "Hello, world!")
>>> trace["blocks.0.attn.hook_pattern"].shape   # [heads, tokens, tokens]
"""

from gptviz.checkpoints import CheckpointError, load_model
from gptviz.config import GPTConfig, preset
from gptviz.model import GPT, positional_encoding
from gptviz.tokenizer import get_tokenizer
from gptviz.trace import EmptyPromptError, Trace, load_trace, run, save_trace

__all__ = [
    "GPT",
    "CheckpointError",
    "EmptyPromptError",
    "GPTConfig",
    "Trace",
    "get_tokenizer",
    "load_model",
    "load_trace",
    "positional_encoding",
    "preset",
    "run",
    "save_trace",
]
__version__ = "0.1.0"
