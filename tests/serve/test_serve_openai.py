"""The OpenAI-compatible API, checked with the official `openai` client and with raw SSE: stream and
whole agree, roles / finish_reason / usage / [DONE] where the reference puts them, n, stop, seed;
twins against `nanostack sample`, a direct forward pass and `nanostack eval`; a request's tokens do
not depend on the batch it is in; errors arrive as the client's typed exceptions."""
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

openai = pytest.importorskip("openai")

from nanostack.evaluate import evaluate_run  # noqa: E402
from nanostack.run import open_run  # noqa: E402
from nanostack.sample import stream_samples  # noqa: E402


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def raw_events(server, path, body):
    """The data: payloads of a streamed call, exactly as sent."""
    with httpx.stream("POST", server.url + path, json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        text = r.read().decode()
    assert text.endswith("data: [DONE]\n\n")
    events = [block for block in text.split("\n\n") if block]
    assert all(e.startswith("data: ") for e in events)
    return [e[len("data: "):] for e in events]


def test_the_model_is_listed_with_its_shape(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny"]
    assert models[0].block_size == 32 and models[0].chat_template == "plain"
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_completion_streamed_and_whole_agree(server, client, engine_idle):
    body = {"model": "tiny", "prompt": "the cat", "max_tokens": 20, "temperature": 0}
    whole = client.completions.create(**body)
    assert whole.object == "text_completion" and whole.choices[0].finish_reason == "length"
    assert whole.usage.prompt_tokens == 7 and whole.usage.completion_tokens == 20
    events = raw_events(server, "/v1/completions", {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    usage = chunks.pop()  # the usage chunk: no choices, just before [DONE]
    assert usage["choices"] == [] and usage["usage"] == whole.usage.model_dump(exclude_none=True)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole.choices[0].text
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    streamed = client.completions.create(**body, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text


def test_chat_streamed_and_whole_agree(server, client, engine_idle):
    body = {"model": "tiny", "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": "the dog sat"}],
            "max_completion_tokens": 12, "temperature": 0}
    whole = client.chat.completions.create(**body)
    assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
    events = raw_events(server, "/v1/chat/completions",
                        {**body, "stream": True, "stream_options": {"include_usage": True}})
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    usage = chunks.pop()
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == whole.usage.completion_tokens
    last = chunks[-1]["choices"][0]
    assert last["delta"] == {} and last["finish_reason"] == whole.choices[0].finish_reason
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole.choices[0].message.content
    streamed = client.chat.completions.create(**body, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == text


def test_n_choices_and_seeds_repeat(client, engine_idle):
    body = {"model": "tiny", "prompt": "a ", "max_tokens": 24, "temperature": 1.0, "n": 2, "seed": 5}
    first, again = client.completions.create(**body), client.completions.create(**body)
    assert [c.index for c in first.choices] == [0, 1]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert first.choices[0].text != first.choices[1].text  # each choice has its own stream (seed + index)
    other = client.completions.create(**{**body, "seed": 6, "n": 1})
    assert other.choices[0].text == first.choices[1].text  # choice i samples with seed + i


def test_stop_strings_end_the_text_before_them(client, engine_idle):
    base = {"model": "tiny", "prompt": "User: the cat\nAssistant:", "max_tokens": 30, "temperature": 0}
    text = client.completions.create(**base).choices[0].text
    stop = text[6:9]
    assert len(stop) == 3
    done = client.completions.create(**base, stop=[stop, "zzzz"])
    assert done.choices[0].finish_reason == "stop"
    assert done.choices[0].text == text[:text.find(stop)]
    streamed = client.completions.create(**base, stop=stop, stream=True)
    parts = [(c.choices[0].text, c.choices[0].finish_reason) for c in streamed]
    assert "".join(p for p, _ in parts) == done.choices[0].text and parts[-1][1] == "stop"


def test_greedy_serving_equals_greedy_sample_past_the_block(tiny_run, client, engine_idle):
    model, tokenizer = open_run(tiny_run).load_model(), open_run(tiny_run).tokenizer()
    for prompt in ("the dog", ""):
        out = io.StringIO()
        stream_samples(model, tokenizer, prompt, max_new_tokens=80, temperature=0, out=out)
        served = client.completions.create(model="tiny", prompt=prompt, max_tokens=80, temperature=0)
        assert prompt + served.choices[0].text + "\n" == out.getvalue()  # 80 tokens: the window slid twice


def test_seeded_serving_equals_seeded_sample(tiny_run, client, engine_idle):
    run = open_run(tiny_run)
    out = io.StringIO()
    stream_samples(run.load_model(), run.tokenizer(), "the", max_new_tokens=40, temperature=0.9, top_k=12,
                   top_p=0.9, seed=1234, out=out)
    served = client.completions.create(model="tiny", prompt="the", max_tokens=40, temperature=0.9, top_p=0.9,
                                       seed=1234, extra_body={"top_k": 12})
    assert "the" + served.choices[0].text + "\n" == out.getvalue()


def test_a_request_alone_equals_it_inside_a_batch_of_16(server, client, engine_idle):
    request = {"model": "tiny", "prompt": "the fox", "max_tokens": 40, "temperature": 1.0, "seed": 99, "logprobs": 1}
    alone = client.completions.create(**request).choices[0]
    others = [{"model": "tiny", "prompt": p, "max_tokens": 30 + i, "temperature": t, "seed": i}
              for i, (p, t) in enumerate([("a", 0.7), ("the dog ", 1.2), ("", 0.0), ("on mat", 1.0)] * 4)][:15]
    engine_idle.step_delay = 0.01  # slow steps, so all 16 are admitted into one batch
    engine_idle.peak_rows = 0
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(client.completions.create, **body) for body in [*others[:8], request, *others[8:]]]
        results = [f.result() for f in futures]
    assert engine_idle.peak_rows >= 12  # they really were decoded together
    batched = results[8].choices[0]
    assert batched.text == alone.text
    assert batched.logprobs.token_logprobs == pytest.approx(alone.logprobs.token_logprobs, abs=1e-5)


def test_logprobs_equal_a_direct_forward(tiny_run, client, engine_idle):
    model, tokenizer = open_run(tiny_run).load_model(), open_run(tiny_run).tokenizer()
    got = client.completions.create(model="tiny", prompt="the cat sat", max_tokens=12, temperature=0.8, seed=3,
                                    logprobs=5)
    lp = got.choices[0].logprobs
    ids = tokenizer.encode("the cat sat")
    with torch.no_grad():
        for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            logits, _ = model(torch.tensor([ids]))
            ref = torch.log_softmax(logits[0, -1].double(), dim=-1)
            token_id = tokenizer.encode(token)[0]
            assert logprob == pytest.approx(ref[token_id].item(), abs=1e-5)
            values, alt = ref.topk(5)
            assert sorted(top.values(), reverse=True) == pytest.approx(values.tolist(), abs=1e-5)
            assert set(top) == {tokenizer.decode([i]) for i in alt.tolist()}
            ids.append(token_id)


def test_echo_scores_the_prompt_as_the_evaluator_does(tiny_run, client, engine_idle):
    run = open_run(tiny_run)
    val = run.dataset().tokens("val").tolist()
    scored = client.completions.create(model="tiny", prompt=val, max_tokens=0, echo=True, logprobs=0)
    choice = scored.choices[0]
    assert choice.text == run.tokenizer().decode(val) and choice.finish_reason == "length"
    lps = choice.logprobs.token_logprobs
    assert lps[0] is None and len(lps) == len(val)
    mean_nll = -sum(lps[1:]) / (len(lps) - 1)
    assert mean_nll == pytest.approx(evaluate_run(tiny_run)["val_nll"], abs=1e-5)  # `nanostack eval`'s number


def test_errors_are_the_clients_typed_exceptions(server, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="a", temperature=5)
    assert e.value.body["param"] == "temperature" and e.value.body["code"] == "invalid_value"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="a", best_of=3)
    assert e.value.body["code"] == "unsupported_parameter" and e.value.body["param"] == "best_of"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])
    assert e.value.body["code"] == "unsupported_parameter" and e.value.body["param"] == "tools"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="Ω")  # not in a char-level run's vocabulary
    assert "vocabulary" in e.value.body["message"] and "\n" not in e.value.body["message"]
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4", prompt="a")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model="tiny", prompt="a", extra_body={"pad": "x" * (1 << 20)})
    assert e.value.status_code == 413


def test_an_error_mid_stream_is_an_api_error(server, client, engine_idle, monkeypatch):
    rows = engine_idle.rows
    calls = {"n": 0}
    real = rows.decode

    def failing(tokens):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(tokens)

    monkeypatch.setattr(rows, "decode", failing)
    stream = client.completions.create(model="tiny", prompt="a", max_tokens=20, temperature=0, stream=True)
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert "internal error" in str(e.value)


def test_every_finish_reason_and_logprob_is_a_number(client, engine_idle):
    got = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hat"}],
                                         max_completion_tokens=6, logprobs=True, top_logprobs=3, n=2, seed=1)
    for choice in got.choices:
        assert choice.finish_reason in ("stop", "length")
        for entry in choice.logprobs.content:
            assert math.isfinite(entry.logprob) and bytes(entry.bytes).decode() == entry.token
            assert len(entry.top_logprobs) == 3


def test_a_model_without_a_kv_cache_is_served_row_by_row(tmp_path, corpus_path):
    """makemore's models have no KV cache: each row keeps its window and runs alone, same tokens as sample."""
    from serve_helpers import TINY_GPT, settings

    from nanostack.serve.server import BackgroundServer
    from nanostack.train import train

    run_dir = tmp_path / "mlp"
    train(run_dir, {**TINY_GPT, "model": "mlp", "data": str(corpus_path), "examples": "stream", "context": 8},
          log=lambda *a: None)
    run = open_run(run_dir)
    out = io.StringIO()
    stream_samples(run.load_model(), run.tokenizer(), "User: the", max_new_tokens=40, temperature=0, out=out)
    with BackgroundServer(run_dir, settings()) as srv:
        assert srv.served.engine.rows.__class__.__name__ == "WindowRows"
        mlp = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        both = mlp.completions.create(model="mlp", prompt=["User: the", "a"], max_tokens=40, temperature=0)
    assert "User: the" + both.choices[0].text + "\n" == out.getvalue()
    assert both.choices[1].finish_reason == "length" and both.usage.completion_tokens == 80
