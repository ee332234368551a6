"""Interop: Hugging Face GPT-2 folders in and out, nanoGPT checkpoints in, and what an imported run does.

The HF side is checked against transformers itself, on a small randomly initialised GPT2LMHeadModel
saved locally (nothing comes from a hub: HF_HUB_OFFLINE=1), its weights redrawn large (std 0.3 and
0.1) so that a wrong GELU or a missed transpose shows. nanoGPT's side is checked against a GPT-2
forward pass written out below, straight from the checkpoint's tensors.
"""
import json
import math
import os
import pickle
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from testkit import flags, run_cli, shared_file
from nanostack.errors import UserError
from nanostack.interop.hf import export_hf, import_hf, refuse_unrepresentable
from nanostack.interop.nanogpt import import_nanogpt
from nanostack.models import ModelConfig, build
from nanostack.run import open_run
from nanostack.tokenizer.char import CharTokenizer
from nanostack.train import train

os.environ["HF_HUB_OFFLINE"] = "1"
VOCAB = 300
ALPHABET = "".join(chr(256 + i) for i in range(VOCAB))  # a char tokenizer of exactly VOCAB tokens
quiet = lambda *a: None  # noqa: E731


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    CharTokenizer(ALPHABET).save(path)
    return path


@pytest.fixture(scope="module")
def hf_model(transformers, tmp_path_factory):
    """(model, folder): a random GPT-2 saved with save_pretrained."""
    config = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=VOCAB,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
                                     eos_token_id=None)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3 if p.ndim == 2 else 0.1)
    folder = tmp_path_factory.mktemp("hf") / "gpt2"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def imported(hf_model, tokenizer_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "run"
    import_hf(hf_model[1], out, tokenizer_file, log=quiet)
    return out


def ids(n=2, t=40, vocab=VOCAB, seed=1):
    return torch.randint(vocab, (n, t), generator=torch.Generator().manual_seed(seed))


def all_logits(model, idx):
    with torch.no_grad():
        return model(idx, idx)[0]  # with targets, every position's logits


# ---- Hugging Face ---------------------------------------------------------------------------------------
def test_imported_logits_equal_transformers(hf_model, imported):
    theirs, _ = hf_model
    ours = open_run(imported).load_model()
    idx = ids()
    with torch.no_grad():
        assert (all_logits(ours, idx) - theirs(idx).logits).abs().max() < 1e-5
        assert (all_logits(ours.double(), idx) - theirs.double()(idx).logits).abs().max() < 1e-10
    theirs.float()
    config = json.loads((imported / "config.json").read_text())
    assert config["model"]["activation"] == "gelu_tanh" and config["imported"]["format"] == "hf"


def test_transformers_shifted_loss_equals_ours(hf_model, imported):
    theirs, _ = hf_model
    ours = open_run(imported).load_model()
    idx = ids(t=64)
    with torch.no_grad():
        expected = theirs(idx, labels=idx).loss  # shifts internally
        _, loss = ours(idx[:, :-1], idx[:, 1:])
    assert abs(expected.item() - loss.item()) < 1e-6


def test_hf_to_nanostack_to_hf_is_bit_identical(hf_model, imported, tmp_path):
    export_hf(imported, tmp_path / "out", log=quiet)
    original = load_file(str(hf_model[1] / "model.safetensors"))
    back = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert original.keys() == back.keys()
    assert all(torch.equal(original[k], back[k]) for k in original)
    import_hf(tmp_path / "out", tmp_path / "again", log=quiet)  # the run's tokenizer came along
    assert open_run(tmp_path / "again").tokenizer().to_dict() == CharTokenizer(ALPHABET).to_dict()


def test_an_exported_run_loads_in_transformers(transformers, tokenizer_file, tmp_path):
    """A nanostack run (no biases, the exact GELU) -> from_pretrained: the same logits."""
    text = tmp_path / "text.txt"
    text.write_text("".join(ALPHABET[i % 50] for i in range(4000)), encoding="utf-8")
    run = tmp_path / "run"
    train(run, {"data": str(text), "tokenizer": str(tokenizer_file), "n_layer": 2, "n_head": 2, "n_embd": 32,
                "block_size": 32, "bias": False, "max_iters": 3, "eval_interval": 3, "eval_iters": 1,
                "ckpt_interval": 3, "device": "cpu"}, log=quiet)
    export_hf(run, tmp_path / "hf", log=quiet)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    config = theirs.config
    assert config.activation_function == "gelu" and config.layer_norm_epsilon == 1e-5 and config.tie_word_embeddings
    assert theirs.lm_head.weight.data_ptr() == theirs.transformer.wte.weight.data_ptr()
    idx = ids(t=32)
    with torch.no_grad():
        assert (all_logits(open_run(run).load_model(), idx) - theirs(idx).logits).abs().max() < 1e-5


def test_what_gpt2_cannot_hold_is_refused():
    for option in ({"rotary": True}, {"rmsnorm": True}, {"qk_norm": True}, {"untied_head": True},
                   {"activation": "relu2"}, {"kind": "mlp"}):
        config = ModelConfig(vocab_size=10)
        for name, value in option.items():
            setattr(config, name, value)
        with pytest.raises(UserError, match="GPT-2|cannot be exported"):
            refuse_unrepresentable(config)


@pytest.mark.parametrize("change, says", [({"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
                                            "llama model"),
                                           ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse"),
                                           ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
                                           ({"add_cross_attention": True}, "add_cross_attention")])
def test_checkpoints_nanostack_cannot_compute_exactly_are_refused(hf_model, tokenizer_file, tmp_path, capsys,
                                                                  change, says):
    folder = tmp_path / "hf"
    shutil.copytree(hf_model[1], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    code, _, err = run_cli(capsys, "import", "hf", folder, "--out", tmp_path / "run", "--tokenizer", tokenizer_file)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_imported_run_samples_evaluates_and_fine_tunes(imported, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "sample", imported, "--prompt", ALPHABET[:3], "--max-new-tokens", "5",
                           "--device", "cpu")
    assert code == 0 and out.startswith(ALPHABET[:3]) and len(out.strip()) == 8
    code, _, err = run_cli(capsys, "eval", imported, "--device", "cpu")
    assert code == 2 and "no data of its own" in err and "--data" in err
    text = tmp_path / "text.txt"
    text.write_text("".join(ALPHABET[(i * 7) % 40] for i in range(3000)), encoding="utf-8")
    code, out, _ = run_cli(capsys, "eval", imported, "--data", text, "--device", "cpu")
    assert code == 0 and "val NLL per token" in out
    # fine-tuning starts from its weights: at learning rate 0 they stay exactly the imported ones
    tuned = tmp_path / "tuned"
    code, _, err = run_cli(capsys, "train", "--out", tuned, "--init", imported, *flags(
        {"data": text, "max_iters": 1, "learning_rate": 0.0, "min_lr": 0.0, "eval_interval": 1, "eval_iters": 1,
         "batch_size": 2, "device": "cpu"}))
    assert code == 0, err
    start = load_file(str(imported / "best" / "model.safetensors"))
    after = load_file(str(tuned / "latest" / "model.safetensors"))
    assert all(torch.equal(start[k], after[k]) for k in start)
    assert open_run(tuned).model_config().activation == "gelu_tanh"
    code, _, err = run_cli(capsys, "train", "--out", tuned / "x", "--init", imported, "--n-layer", "3",
                           "--data", text)
    assert code == 2 and "--n-layer 3 differs from the --init run" in err
    code, _, err = run_cli(capsys, "train", "--out", imported, "--resume")
    assert code == 2 and "was imported" in err and "--init" in err


def test_an_imported_run_serves(imported):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    import httpx

    from nanostack.serve.server import BackgroundServer
    from nanostack.serve.settings import ServeSettings

    threads = torch.get_num_threads()
    try:
        with BackgroundServer(imported, ServeSettings(port=0, device="cpu")) as server:
            reply = httpx.post(f"{server.url}/v1/completions", timeout=60,
                               json={"model": "run", "prompt": ALPHABET[:4], "max_tokens": 5, "temperature": 0})
    finally:
        torch.set_num_threads(threads)  # the server sets it
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 5


# ---- nanoGPT --------------------------------------------------------------------------------------------
def gpt2_forward(w: dict, idx, n_head: int, prefix=""):
    """GPT-2's forward pass written out from a state dict of Linear (out, in) weights: the reference."""
    def p(name):
        return w.get(prefix + name)

    def layer_norm(x, name):
        return F.layer_norm(x, x.shape[-1:], p(name + ".weight"), p(name + ".bias"), 1e-5)

    def linear(x, name):
        y = x @ p(name + ".weight").t()
        return y if p(name + ".bias") is None else y + p(name + ".bias")

    B, T = idx.shape
    x = p("transformer.wte.weight")[idx] + p("transformer.wpe.weight")[:T]
    C = x.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(sum(1 for k in w if k.endswith("ln_1.weight"))):
        h = f"transformer.h.{i}."
        q, k, v = linear(layer_norm(x, h + "ln_1"), h + "attn.c_attn").split(C, dim=2)
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // n_head)
        y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        x = x + linear(y.transpose(1, 2).reshape(B, T, C), h + "attn.c_proj")
        m = linear(layer_norm(x, h + "ln_2"), h + "mlp.c_fc")
        x = x + linear(0.5 * m * (1 + torch.erf(m / math.sqrt(2))), h + "mlp.c_proj")
    return layer_norm(x, "transformer.ln_f") @ p("lm_head.weight").t()


def nanogpt_checkpoint(path, vocab_size, bias=True, seed=0):
    """A ckpt.pt as nanoGPT's train.py writes it (of a compiled model: `_orig_mod.` names, the mask
    buffers of torch < 2 included)."""
    args = dict(n_layer=2, n_head=2, n_embd=16, block_size=32, bias=bias, vocab_size=vocab_size, dropout=0.0)
    torch.manual_seed(seed)
    model = build(ModelConfig(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16, bias=bias))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3 if param.ndim == 2 else 0.1)
    state = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    for i in range(2):
        state[f"_orig_mod.transformer.h.{i}.attn.bias"] = torch.ones(1, 1, 32, 32).tril()
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "model_args": args, "iter_num": 250,
                "best_val_loss": torch.tensor(1.4697), "config": {"dataset": "shakespeare_char", "compile": True}},
               path)
    return {k.removeprefix("_orig_mod."): v for k, v in state.items()}


def test_a_nanogpt_checkpoint_gives_the_same_logits(tmp_path):
    shared_file("gpt2.tiktoken")
    reference = nanogpt_checkpoint(tmp_path / "ckpt.pt", vocab_size=50304)
    import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "run", log=quiet)  # GPT-2's tokenizer: padding cut off
    ours = open_run(tmp_path / "run").load_model()
    assert ours.config.vocab_size == 50257
    idx = ids(t=32, vocab=50257)
    with torch.no_grad():
        assert (all_logits(ours, idx) - gpt2_forward(reference, idx, 2)[..., :50257]).abs().max() < 1e-4


def test_a_character_level_nanogpt_checkpoint_reads_its_meta_pkl(tmp_path, capsys):
    chars = sorted(set("hello world, said the fox\n"))
    reference = nanogpt_checkpoint(tmp_path / "ckpt.pt", vocab_size=len(chars), bias=False)
    with open(tmp_path / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)),
                     "stoi": {c: i for i, c in enumerate(chars)}}, f)
    code, _, err = run_cli(capsys, "import", "nanogpt", tmp_path / "ckpt.pt", "--out", tmp_path / "run",
                           "--tokenizer", tmp_path / "meta.pkl")
    assert code == 0, err
    run = open_run(tmp_path / "run")
    assert run.tokenizer().encode("the fox") == [chars.index(c) for c in "the fox"]
    idx = ids(t=32, vocab=len(chars))
    with torch.no_grad():
        assert (all_logits(run.load_model(), idx) - gpt2_forward(reference, idx, 2)).abs().max() < 1e-4
    # a pickle that names a function is refused, not run
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"itos": {0: "a"}, "run": os.getcwd}, f)
    code, _, err = run_cli(capsys, "import", "nanogpt", tmp_path / "ckpt.pt", "--out", tmp_path / "run2",
                           "--tokenizer", tmp_path / "evil.pkl")
    assert code == 2 and "plain values" in err and not (tmp_path / "run2").exists()
