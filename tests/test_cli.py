import shutil

import pytest

from testkit import TINY, flags, run_nanostack
from testkit import run_cli as cli
from nanostack.cli import main
from nanostack.run.config import FIELDS


@pytest.fixture
def trained_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), "--data", str(corpus), *flags(TINY)]) == 0
    return out


def test_train_then_sample_through_the_cli(corpus, tmp_path):
    out = tmp_path / "run"
    trained = run_nanostack("train", "--out", out, "--data", corpus, *flags(TINY))
    assert trained.returncode == 0, trained.stderr
    assert f"nanostack sample {out}" in trained.stdout
    sampled = run_nanostack("sample", out, "--prompt", "the ", "--max-new-tokens", 50, "--num-samples", 2,
                            "--seed", 7, "--top-k", 5, "--top-p", 0.9, "--temperature", 0.8)
    assert sampled.returncode == 0, sampled.stderr
    samples = sampled.stdout.rstrip("\n").split("\n---\n")
    assert len(samples) == 2
    assert all(s.startswith("the ") and len(s) == 4 + 50 for s in samples)
    assert set("".join(samples)) <= set(corpus.read_text())
    again = run_nanostack("sample", out, "--prompt", "the ", "--max-new-tokens", 50, "--num-samples", 2,
                          "--seed", 7, "--top-k", 5, "--top-p", 0.9, "--temperature", 0.8)
    assert again.stdout == sampled.stdout  # --seed fixes the samples


def test_prepare_prints_path_and_stats(capsys, corpus):
    code, out, _ = cli(capsys, "prepare", "--data", corpus)
    assert code == 0
    assert "shards: " in out and "vocab 28" in out and "train 2" in out


def test_help_explains_every_option(capsys):
    for command in ("prepare", "train", "sample"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        if command == "train":
            for name in FIELDS:
                assert f"--{name.replace('_', '-')}" in text
            assert "--resume" in text and "--force" in text


def test_module_entry_point_runs():
    result = run_nanostack("--help")
    assert result.returncode == 0 and "prepare" in result.stdout and "sample" in result.stdout


def assert_one_line_error(code, err, message):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("make_data, message", [
    (lambda d: d / "missing.txt", "does not exist"),
    (lambda d: (d / "empty.txt").write_text("") and None or d / "empty.txt", "is empty"),
    (lambda d: (d / "x.bin").write_bytes(b"\x00\x01\x02") and None or d / "x.bin", "x.bin is binary or not UTF-8"),
    (lambda d: (d / "short.txt").write_text("just a few words here") and None or d / "short.txt",
     "fewer than one block"),
])
def test_bad_data(capsys, tmp_path, make_data, message):
    data = make_data(tmp_path)
    code, _, err = cli(capsys, "train", "--out", tmp_path / "run", "--data", data, *flags(TINY))
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run" / "latest").exists()


@pytest.mark.parametrize("args, message", [
    (["--n-layer", "-2"], "n_layer must be positive"),
    (["--n-embd", "30", "--n-head", "4"], "not divisible by n_head"),
    (["--learning-rate", "abc"], "bad value 'abc' for learning_rate"),
    (["--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
    (["--config", "nope"], "neither a file nor a preset"),
    (["--device", "cuda:7"], "CUDA is not available"),
])
def test_bad_config(capsys, corpus, tmp_path, args, message):
    code, _, err = cli(capsys, "train", "--out", tmp_path / "run", "--data", corpus, *flags(TINY), *args)
    assert_one_line_error(code, err, message)


def test_unknown_key_in_config_file(capsys, corpus, tmp_path):
    (tmp_path / "c.toml").write_text("block_sise = 8\n")
    code, _, err = cli(capsys, "train", "--out", tmp_path / "run", "--data", corpus, "--config", tmp_path / "c.toml")
    assert_one_line_error(code, err, "unknown config key 'block_sise'")


def test_existing_run_without_resume(capsys, trained_run, corpus):
    code, _, err = cli(capsys, "train", "--out", trained_run, "--data", corpus, *flags(TINY))
    assert_one_line_error(code, err, "already holds a run")


def test_resume_without_a_run(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "--out", tmp_path / "nothing", "--resume")
    assert_one_line_error(code, err, "no run to resume")


def test_truncated_checkpoint(capsys, trained_run):
    for which in ("best", "latest"):
        path = trained_run / which / "model.safetensors"
        path.write_bytes(path.read_bytes()[:1000])
    code, _, err = cli(capsys, "sample", trained_run)
    assert_one_line_error(code, err, "truncated or corrupt")
    code, _, err = cli(capsys, "train", "--out", trained_run, "--resume", "--max-iters", "40")
    assert_one_line_error(code, err, "truncated or corrupt")


def test_missing_checkpoint(capsys, trained_run):
    shutil.rmtree(trained_run / "best")
    shutil.rmtree(trained_run / "latest")
    code, _, err = cli(capsys, "sample", trained_run)
    assert_one_line_error(code, err, "has no checkpoint yet")
    code, _, err = cli(capsys, "sample", trained_run / "nope")
    assert_one_line_error(code, err, "is not a run folder")


def test_checkpoint_from_another_vocabulary(capsys, trained_run, tmp_path):
    other_text = tmp_path / "other.txt"
    other_text.write_text("0123456789 " * 500)
    other = tmp_path / "other"
    assert main(["train", "--out", str(other), "--data", str(other_text), *flags(TINY)]) == 0
    capsys.readouterr()
    shutil.copy(other / "latest" / "model.safetensors", trained_run / "best" / "model.safetensors")
    code, _, err = cli(capsys, "sample", trained_run)
    assert_one_line_error(code, err, "is for a vocabulary of 11 tokens, but this run's tokenizer has 28")


def test_prompt_outside_the_vocabulary(capsys, trained_run):
    code, _, err = cli(capsys, "sample", trained_run, "--prompt", "QZ!")
    assert_one_line_error(code, err, "not in the vocabulary: '!', 'Q', 'Z'")


def test_bad_sampling_options(capsys, trained_run):
    code, _, err = cli(capsys, "sample", trained_run, "--top-p", "1.5")
    assert_one_line_error(code, err, "top_p must be in (0, 1]")
    code, _, err = cli(capsys, "sample", trained_run, "--temperature", "-1")
    assert_one_line_error(code, err, "temperature must be >= 0")
