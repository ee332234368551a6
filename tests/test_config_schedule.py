import math

import pytest

from nanostack.errors import UserError
from nanostack.run.config import TrainConfig, make_config
from nanostack.train.schedule import get_lr


def test_presets_and_precedence(tmp_path):
    cfg = make_config("shakespeare_char")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.dropout, cfg.batch_size, cfg.max_iters) == \
        (6, 6, 384, 256, 0.2, 64, 5000)
    small = make_config("cpu_small")
    assert (small.n_layer, small.n_head, small.n_embd, small.block_size, small.batch_size, small.max_iters) == \
        (4, 4, 128, 64, 12, 2000)
    toml = tmp_path / "my.toml"
    toml.write_text("n_layer = 3\nlearning_rate = 2e-3\n")
    cfg = make_config(str(toml), {"n_layer": "5"})
    assert cfg.n_layer == 5 and cfg.learning_rate == 2e-3  # flags beat the file, the file beats defaults


def test_unknown_key_suggests_the_right_one(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("n_layers = 3\n")
    with pytest.raises(UserError, match="unknown config key 'n_layers'.*did you mean 'n_layer'"):
        make_config(str(toml))


@pytest.mark.parametrize("overrides, message", [
    ({"n_layer": "-1"}, "n_layer must be positive"),
    ({"n_embd": "100", "n_head": "3"}, "not divisible by n_head"),
    ({"dropout": "1.5"}, "dropout must be in"),
    ({"learning_rate": "fast"}, "bad value 'fast' for learning_rate"),
    ({"bias": "maybe"}, "bad value 'maybe' for bias"),
    ({"dtype": "float8"}, "unknown dtype"),
    ({"device": "tpu"}, "unknown device"),
    ({"min_lr": "1.0"}, "min_lr .* is above learning_rate"),
])
def test_bad_values(overrides, message):
    with pytest.raises(UserError, match=message):
        make_config(None, overrides)


def test_missing_preset():
    with pytest.raises(UserError, match="neither a file nor a preset.*cpu_small"):
        make_config("nope")


def test_lr_schedule():
    args = dict(learning_rate=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    lrs = [get_lr(s, **args) for s in range(200)]
    assert lrs[:10] == pytest.approx([(s + 1) / 11 for s in range(10)])  # linear warmup
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way down the cosine
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay
    assert lrs[110:] == [0.1] * 90


def test_every_field_has_help():
    from dataclasses import fields
    assert all(f.metadata.get("help") for f in fields(TrainConfig))
