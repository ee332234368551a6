"""Benchmark: sampling speed, tokens per second, with and without the KV cache.

    python bench/sample_speed.py [--nanogpt DIR] [--big-new-tokens 128]

1. the cpu_small model (4 layers, 128 wide, block 64, vocab 65): 500 new tokens from one token;
2. a 12-layer, 768-wide GPT (block 1024, GPT-2's vocabulary of 50304): a 512-token prompt.
Weights are random: speed does not depend on them. With --nanogpt, nanoGPT's model.generate runs
on the same shapes for comparison. Times include the prompt's prefill. One JSON line per case.
"""
import argparse
import json
import sys
import time

import torch

from nanostack.models import GPT, GPTConfig

CASES = {
    "cpu_small": (dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), 1, 500),
    "gpt_12x768": (dict(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768), 512, None),
}


def tokens_per_s(generate, prompt, new_tokens) -> float:
    generate(prompt[:, :8], 2)  # warm-up
    t0 = time.perf_counter()
    generate(prompt, new_tokens)
    return new_tokens / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", help="path to a nanoGPT checkout to compare with")
    parser.add_argument("--big-new-tokens", type=int, default=128, help="new tokens for the 12-layer case")
    args = parser.parse_args()
    peer = None
    if args.nanogpt:
        sys.path.insert(0, args.nanogpt)
        import model as peer  # nanoGPT's model.py
    for name, (shape, prompt_len, new_tokens) in CASES.items():
        new_tokens = new_tokens or args.big_new_tokens
        torch.manual_seed(0)
        model = GPT(GPTConfig(**shape)).eval()
        prompt = torch.randint(shape["vocab_size"], (1, prompt_len))
        row = {"case": name, "prompt": prompt_len, "new_tokens": new_tokens}
        for use_cache in (True, False):
            g = torch.Generator().manual_seed(0)
            rate = tokens_per_s(lambda p, n: model.generate(p, n, generator=g, use_cache=use_cache), prompt,
                                new_tokens)
            row["nanostack_cache" if use_cache else "nanostack_no_cache"] = round(rate, 1)
        if peer is not None:
            ref = peer.GPT(peer.GPTConfig(**shape, dropout=0.0, bias=True)).eval()
            with torch.no_grad():
                row["nanogpt"] = round(tokens_per_s(lambda p, n: ref.generate(p, n), prompt, new_tokens), 1)
            row["speedup_vs_nanogpt"] = round(row["nanostack_cache"] / row["nanogpt"], 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
