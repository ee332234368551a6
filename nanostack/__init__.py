"""nanostack: the Software 2.0 stack from scratch — raw text to a trained, sampled language model."""

__version__ = "0.1.0"
