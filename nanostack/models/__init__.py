"""Models, one interface: model(idx, targets=None) -> (logits, loss); model.generate(idx, n, ...)."""
from nanostack.models.generation import generate, sample_next_token
from nanostack.models.gpt import GPT, GPTConfig, KVCache

__all__ = ["GPT", "GPTConfig", "KVCache", "generate", "sample_next_token"]
