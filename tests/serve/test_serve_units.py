"""The server's pure parts: per-row sampling is sample_next_token row by row (so a seeded request is
batch-independent), text goes out in whole characters with stop strings cut, the plain chat template,
and the run-name check."""
import pytest
import torch

from nanostack.models.generation import sample_next_token
from nanostack.serve.chat_template import PLAIN_STOP, chat_prompt, plain_chat_text
from nanostack.serve.sampling import RowSettings, sample_rows, top_logprobs
from nanostack.serve.security import host_name, run_path
from nanostack.serve.text import TextStream, token_text
from nanostack.tokenizer import CharTokenizer
from nanostack.tokenizer.bpe import BPETokenizer

SETTINGS = [RowSettings(0.0), RowSettings(1.0), RowSettings(0.7, top_k=5), RowSettings(1.3, top_p=0.8),
            RowSettings(1.0, top_k=3, top_p=0.5), RowSettings(0.5, top_k=1)]


def test_each_row_samples_as_sample_next_token_with_its_own_generator():
    logits = torch.randn(len(SETTINGS), 40, generator=torch.Generator().manual_seed(0)) * 3
    for trial in range(20):
        gens = [torch.Generator().manual_seed(100 * trial + i) for i in range(len(SETTINGS))]
        got = sample_rows(logits, SETTINGS, gens)
        for i, s in enumerate(SETTINGS):
            alone = sample_next_token(logits[i:i + 1], s.temperature, s.top_k, s.top_p,
                                      torch.Generator().manual_seed(100 * trial + i))
            assert got[i] == alone.item(), (trial, s)


def test_a_row_draws_the_same_in_any_batch():
    logits = torch.randn(8, 30, generator=torch.Generator().manual_seed(1))
    settings = [RowSettings(1.0, top_p=0.9)] * 8
    together = sample_rows(logits, settings, [torch.Generator().manual_seed(7 + i) for i in range(8)])
    alone = [sample_rows(logits[i:i + 1], settings[:1], [torch.Generator().manual_seed(7 + i)])[0] for i in range(8)]
    assert together == alone


def test_sampling_follows_the_filtered_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    counts = torch.zeros(4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3000):
        counts[sample_rows(logits, [RowSettings(1.0, top_p=0.75)], [gen])[0]] += 1
    assert counts[2:].sum() == 0  # nucleus 0.75 keeps the first two tokens only
    assert abs(counts[0] / 3000 - 0.5 / 0.8) < 0.04


def test_top_logprobs_are_the_log_softmax():
    logits = torch.randn(3, 10)
    picked, tops = top_logprobs(logits, [1, 2, 3], 4)
    ref = torch.log_softmax(logits, -1)
    assert picked == pytest.approx([ref[0, 1].item(), ref[1, 2].item(), ref[2, 3].item()], abs=1e-6)
    ids, values = tops[0]
    assert values == pytest.approx(ref[0].topk(4).values.tolist(), abs=1e-6) and len(ids) == 4


def push_all(stream, tokens):
    out, stopped = [], False
    for t in tokens:
        delta, stopped = stream.push(t)
        out.append(delta)
        if stopped:
            break
    return out, stopped


def test_stop_strings_are_cut_and_their_prefix_waits():
    tok = CharTokenizer.from_text("abcdefgh\nUser: x")
    ids = tok.encode("abc\nUsdef\nUser: x")
    stream = TextStream(tok, ["\nUser:"])
    out, stopped = push_all(stream, ids)
    assert stopped and "".join(out) == "abc\nUsdef"
    assert out[3:6] == ["", "", ""]  # "\nUs" waited: it could have been the stop
    assert "".join(out[:7]) == "abc\nUsd"  # released at once when it could not be


def test_text_goes_out_in_whole_characters():
    tok = BPETokenizer.train("ab" * 50, 256 + 2)
    ids = tok.encode("é€😀")  # each a multi-byte character, byte tokens
    stream = TextStream(tok)
    out, _ = push_all(stream, ids)
    assert "".join(out) == "é€😀" and "" in out  # bytes of a character waited for the rest
    assert all(not any(0xD800 <= ord(c) <= 0xDFFF or c == "\ufffd" for c in piece) for piece in out)
    assert token_text(tok, ids[0]) == "bytes:\\xc3"
    stream = TextStream(tok)
    stream.push(ids[0])
    assert stream.finish() == "\ufffd"  # a character cut off at the end


def test_the_plain_chat_template():
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]
    assert plain_chat_text(messages) == "System: be brief\nUser: hi\nAssistant: hello\nUser: bye\nAssistant:"
    tok = CharTokenizer.from_text(plain_chat_text(messages))
    ids, stops = chat_prompt(tok, messages)
    assert tok.decode(ids) == plain_chat_text(messages) and stops == [PLAIN_STOP]


def test_run_names_resolve_only_inside_the_root(tmp_path):
    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (root / "link").symlink_to(tmp_path / "out")
    assert run_path(root, "a") == (root / "a").resolve()
    for name in ("..", "../out", "link", "a/b", "/etc", "", ".a", "a\x00", "x" * 200):
        assert run_path(root, name) is None, name


def test_host_names_without_ports():
    assert [host_name(h) for h in ("localhost:8000", "[::1]:80", "[::1]", "127.0.0.1", "EVIL.example:1")] == [
        "localhost", "[::1]", "[::1]", "127.0.0.1", "evil.example"]
