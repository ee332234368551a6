"""Sampling from a trained run: stream generated text, or (for example-per-row runs) generate new
examples and say which ones the training data already holds. The run folder (nanostack.run)
gives the model and its tokenizer; this module knows nothing of training.

A text stream from a small GPT-2-style model on the CPU is decoded by models/numpy_decode.py (the
same tokens for the same seed), so that `nanostack sample` starts at once: torch is imported only
when a torch model samples.
"""
import codecs
import sys
from itertools import chain

from nanostack.errors import UserError
from nanostack.models.numpy_decode import NumpyDecoder, TorchCPURandom
from nanostack.run import open_run


def load_run(run_dir, which: str = "best", device: str = "cpu", backend: str = "torch"):
    """(model, tokenizer) of a run; `which` is best or latest (best falls back to latest).

    backend "numpy" loads the weights into nanostack.grad's model (CPU only), whichever engine trained them."""
    run = open_run(run_dir)
    return run.load_model(which, device, backend), run.tokenizer()


def stream_samples(model, tokenizer, prompt="", max_new_tokens=500, num_samples=1, temperature=1.0, top_k=None,
                   top_p=None, seed=1337, out=None, separator="\n---\n"):
    """Write num_samples continuations of prompt to `out` (stdout), each token as soon as it is produced."""
    out = out or sys.stdout
    check_sampling(temperature, top_k, top_p)
    ids = tokenizer.encode(prompt) if prompt else _start_token(tokenizer)
    continuations = token_streams(model, list(ids), seed)
    for i in range(num_samples):
        if i:
            out.write(separator)
        out.write(prompt)
        text_of = stream_decoder(tokenizer)
        for token in continuations(max_new_tokens, temperature, top_k, top_p):
            out.write(text_of([token]))
            out.flush()
        out.write(text_of([], final=True))
    out.write("\n")
    out.flush()


def check_sampling(temperature, top_k, top_p) -> None:
    if not temperature >= 0 or temperature == float("inf"):  # NaN fails every comparison
        raise UserError(f"temperature must be >= 0 and finite, got {temperature}",
                        "use 0 for greedy, 1 for plain sampling")
    if top_k is not None and top_k < 1:
        raise UserError(f"top_k must be at least 1, got {top_k}", "drop --top-k or give a positive number")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {top_p}", "use e.g. --top-p 0.9")


def token_streams(model, ids: list, seed: int):
    """continuations(max_new_tokens, temperature, top_k, top_p) -> token ids (ints) continuing `ids`; one
    random stream, seeded once, runs through all the continuations, on either decoder."""
    if isinstance(model, NumpyDecoder):
        rng = TorchCPURandom(seed)
        return lambda *options: model.generate_tokens(ids, *options, rng=rng)
    import torch  # noqa: PLC0415

    from nanostack.models import generate_tokens  # noqa: PLC0415

    device = device_of(model)
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    return lambda *options: (int(t) for t in generate_tokens(model, idx, *options, generator))


def device_of(model):
    """Where a model's weights are: its first parameter's or buffer's device (numpy models: the CPU)."""
    import torch  # noqa: PLC0415

    if isinstance(model, torch.nn.Module):
        for tensor in chain(model.parameters(), model.buffers()):
            return tensor.device
    return torch.device("cpu")


def stream_decoder(tokenizer):
    """text_of(ids) -> the text they complete. A byte-level token can end inside a character (an
    emoji spans several tokens), so bytes wait until their character is whole."""
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return lambda ids, final=False: utf8.decode(tokenizer.decode_bytes(ids), final=final)


def _start_token(tokenizer):
    """An empty prompt starts from a newline, or from token 0 if the data had no newline."""
    try:
        return tokenizer.encode("\n")[:1]
    except UserError:
        return [0]


def sample_examples(model, tokenizer, num_samples=10, temperature=1.0, top_k=None, top_p=None, seed=1337,
                    train_words=None, out=None, boundary="\n") -> list:
    """Generate num_samples new examples of an example-per-row run (each starts after the boundary token
    and ends at it), written to `out` (stdout) one per line (paragraphs: separated by a blank line).
    Those that occur in train_words are marked "(in train)"; the others are new. Returns the examples."""
    import torch  # noqa: PLC0415

    from nanostack.models import generate_tokens  # noqa: PLC0415

    out = out or sys.stdout
    check_sampling(temperature, top_k, top_p)
    boundary_id = int(tokenizer.encode(boundary, allowed_special="all")[0])
    device = device_of(model)
    idx = torch.full((num_samples, 1), boundary_id, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    steps = model.config.block_size - 1  # the longest example the model has seen
    new = torch.cat(list(generate_tokens(model, idx, steps, temperature, top_k, top_p, generator)), dim=1).tolist()
    known = set(train_words or ())
    examples = []
    for row in new:
        ids = row[:row.index(boundary_id)] if boundary_id in row else row
        examples.append(tokenizer.decode(ids))
    gap = "\n" if boundary == "\n" else "\n\n"
    for example in examples:
        mark = "  (in train)" if example in known else ""
        out.write(f"{example}{mark}{gap}")
    if train_words is not None:
        fresh = sum(e not in known for e in examples)
        out.write(f"--- {fresh} of {len(examples)} are new (not in the training data)\n")
    out.flush()
    return examples


def sample_run(run_dir, prompt="", max_new_tokens=500, num_samples=None, temperature=1.0, top_k=None, top_p=None,
               seed=1337, which="best", device="auto", backend="auto", warn=print) -> None:
    """`nanostack sample`: new examples for an example-per-row run without a prompt, else a text stream.

    backend auto streams text from a small GPT-2-style model with the numpy decoder on the CPU (device
    auto or cpu: a GPU's per-op cost exceeds such a model's work), and samples everything else with torch
    on `device`."""
    run = open_run(run_dir)
    check_sampling(temperature, top_k, top_p)
    examples = run.example_boundary is not None and not prompt
    tokenizer = run.tokenizer()
    model = None
    if backend == "auto" and device in ("auto", "cpu") and not examples:
        model = run.load_decoder(which, tokenizer)
    if model is None:
        from nanostack.models.engines import resolve_device  # noqa: PLC0415

        device = "cpu" if backend == "numpy" else resolve_device(device)
        model = run.load_model(which, device, "torch" if backend == "auto" else backend, tokenizer)
    if examples:
        try:
            train_words = [e.text for e in run.dataset().examples("train", model.config.block_size)]
        except UserError:
            train_words = None
            warn("note: the run's data cannot be read, so samples are not checked against it")
        sample_examples(model, tokenizer, num_samples or 10, temperature, top_k, top_p, seed,
                        train_words=train_words, boundary=run.example_boundary)
    else:
        stream_samples(model, tokenizer, prompt, max_new_tokens, num_samples or 1, temperature, top_k, top_p, seed)
