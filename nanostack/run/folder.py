"""RunFolder: a run folder's files, and the only code that reads or writes them.

    RUN_DIR/config.json      the settings (train), the model's shape (model), the data's hash and kind
    RUN_DIR/tokenizer.json   the run's own tokenizer: what its token ids mean
    RUN_DIR/metrics.jsonl    one JSON record per logged step and per evaluation
    RUN_DIR/latest/          model.safetensors, optimizer.pt, state.json   (to resume)
    RUN_DIR/best/            model.safetensors, state.json                 (lowest val loss so far)
    RUN_DIR/run.lock         held by the one process that trains in the folder

The trainer writes a run through this module, and every reader (sample, eval, the recipe, the data
engine, the server, chat) opens one through it: config, tokenizer, a model with the chosen
checkpoint, the dataset it was trained on (hash-checked, with the run's own tokenizer), its metrics.
Checkpoint folders are written whole under a temporary name and swapped in, so a crash never
leaves half a checkpoint; weights are safetensors and optimizer state is loaded with
weights_only=True, so nothing read back can run code.
"""
import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from nanostack.errors import UserError
from nanostack.io import existing_dir, file_mode, read_json, replace_dir, write_atomic, write_json
from nanostack.models import ModelConfig
from nanostack.run.config import TrainConfig, config_from_dict
from nanostack.tokenizer import load_tokenizer

CHECKPOINTS = ("latest", "best")
# every name a run may create in its folder (with .tmp / .old companions): --force removes these only
RUN_FILES = ("config.json", "tokenizer.json", "metrics.jsonl", "probes.jsonl", "latest", "best", "doctor",
             "run.lock")


def run_file_names() -> set:
    return {f"{name}{suffix}" for name in RUN_FILES for suffix in ("", ".tmp", ".old")}


def quiet(*args, **kwargs):
    pass


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)
        self._config = None

    def __repr__(self):
        return f"RunFolder({str(self.path)!r})"

    # ---- what the folder holds ------------------------------------------------------------------
    def is_run(self) -> bool:
        return (self.path / "config.json").is_file()

    def foreign_files(self) -> list:
        """Names in the folder that nanostack did not write (a user's own files)."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name not in run_file_names())

    def require_run(self) -> "RunFolder":
        if not self.is_run():
            raise UserError(f"{self.path} is not a run folder (no config.json)",
                            "give the --out folder of `nanostack train`")
        return self

    # ---- config -----------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """config.json as written (read once)."""
        if self._config is None:
            self._config = read_json(self.require_run().path / "config.json", "run config")
        return self._config

    def train_config(self) -> TrainConfig:
        return config_from_dict(self._section("train"), str(self.path / "config.json"))

    def model_config(self) -> ModelConfig:
        try:
            config = ModelConfig(**self._section("model"))
        except TypeError as e:
            raise UserError(f"run config {self.path / 'config.json'} is damaged ({e})", "restore it or retrain") \
                from None
        problem = config.problem()
        if problem:
            raise UserError(f"run config {self.path / 'config.json'} describes an impossible model: {problem}",
                            "restore config.json, or retrain")
        return config

    def _section(self, name: str) -> dict:
        section = self.config.get(name)
        if not isinstance(section, dict):
            raise UserError(f"run config {self.path / 'config.json'} is damaged (no {name!r} section)",
                            "restore it or retrain")
        return section

    @property
    def data_hash(self):
        return self.config.get("data_hash")

    @property
    def data_kind(self) -> str:
        return self.config.get("data_mode", "stream")

    @property
    def example_boundary(self):
        """The text that wraps every example of an example-per-row run (None for a stream run)."""
        if self.data_kind == "stream":
            return None
        return self.config.get("examples", {}).get("boundary", "\n")

    def write_config(self, cfg: TrainConfig, model_config: ModelConfig, dataset) -> None:
        self._config = {"train": asdict(cfg), "model": asdict(model_config), "data_mode": dataset.kind,
                        "data_hash": dataset.data_hash, **dataset.describe()}
        write_json(self.path / "config.json", self._config)
        if hasattr(dataset, "record_run"):  # a dataset version: the store's runs.jsonl lists runs per version
            dataset.record_run(self.path)

    # ---- tokenizer ----------------------------------------------------------------------------------
    def tokenizer(self):
        return load_tokenizer(self.require_run().path / "tokenizer.json")

    def write_tokenizer(self, tokenizer) -> None:
        tokenizer.save(self.path / "tokenizer.json")

    # ---- checkpoints --------------------------------------------------------------------------------
    def checkpoint(self, which: str):
        """The folder of checkpoint `which` (latest or best), or None."""
        return existing_dir(self.path / which)

    def checkpoint_for_reading(self, which: str = "best") -> Path:
        """best (falling back to latest when no evaluation has run yet) or latest; an error if neither."""
        folder = self.checkpoint(which) or self.checkpoint("latest")
        if folder is None:
            raise UserError(f"{self.path} has no checkpoint yet", "train it for at least --ckpt-interval steps")
        return folder

    def save_checkpoint(self, name: str, model, state: dict, optimizer_state=None) -> None:
        """Write a checkpoint folder whole, then swap it in: weights, optimizer state (plain tensors and
        numbers, as torch.save writes them) and state.json."""
        from nanostack.models.engines import save_weights  # noqa: PLC0415 (imports torch models)

        tmp = self.path / f"{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_weights(model, tmp / "model.safetensors")
        os.chmod(tmp / "model.safetensors", file_mode())  # as every other file of the run, not safetensors' 0600
        if optimizer_state is not None:
            import torch  # noqa: PLC0415 (reading a run's config needs no torch)

            torch.save(optimizer_state, tmp / "optimizer.pt")
        write_json(tmp / "state.json", state)
        replace_dir(tmp, self.path / name)

    def read_state(self, folder: Path) -> dict:
        return read_json(folder / "state.json", "checkpoint state")

    def optimizer_state(self, folder: Path) -> dict:
        import torch  # noqa: PLC0415

        path = folder / "optimizer.pt"
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds for a damaged file
            raise UserError(f"optimizer state {path} is missing or corrupt ({type(e).__name__})",
                            "restore it, or start a new run") from None

    def load_model(self, which: str = "best", device: str = "cpu", backend: str = "torch", tokenizer=None):
        """The run's model with checkpoint `which` loaded, in eval mode, ready to sample or evaluate
        (a numpy model comes behind a torch facade); tokenizer as load_decoder's."""
        from nanostack.models.engines import build_model, for_inference, load_weights  # noqa: PLC0415

        model = build_model(backend, self._model_config_of_tokenizer(tokenizer), seed=0, device="cpu")
        load_weights(model, self.checkpoint_for_reading(which) / "model.safetensors")
        return for_inference(model, device)

    def load_decoder(self, which: str = "best", tokenizer=None):
        """The checkpoint in models/numpy_decode.py's decoder (small GPT-2-style models, no torch), or None
        where that does not apply or the weights are not as expected (load_model then says what is wrong).
        tokenizer: the run's, if the caller has it already (GPT-2's takes ~0.3 s to load)."""
        from nanostack.models.numpy_decode import decoder_problem, read_decoder  # noqa: PLC0415

        model_config = self._model_config_of_tokenizer(tokenizer)
        if decoder_problem(model_config):
            return None
        return read_decoder(model_config, self.checkpoint_for_reading(which) / "model.safetensors")

    def _model_config_of_tokenizer(self, tokenizer=None) -> ModelConfig:
        model_config = self.model_config()
        tokenizer = self.tokenizer() if tokenizer is None else tokenizer
        if tokenizer.vocab_size != model_config.vocab_size:
            raise UserError(f"tokenizer of {self.path} has {tokenizer.vocab_size} tokens but the model has "
                            f"{model_config.vocab_size}", "the run folder mixes files from two runs; retrain")
        return model_config

    # ---- data ---------------------------------------------------------------------------------------
    def dataset(self, log=quiet):
        """The dataset this run trained on, with the run's own tokenizer; refused if the data changed."""
        from nanostack.data import open_dataset  # noqa: PLC0415

        if self.config.get("imported"):
            raise UserError(f"{self.path} has no data of its own: it was imported from "
                            f"{self.config['imported'].get('from', 'elsewhere')}",
                            f"evaluate it on a text: nanostack eval {self.path} --data FILE")
        cfg = self.train_config()
        data = self.config.get("data_version", {}).get("path") or cfg.data  # a version, not where its ref moved
        dataset = open_dataset(data, self.tokenizer(), self.data_kind, cfg.seed, log=log,
                               expect_hash=self.data_hash, reuse=self.config.get("data_shards"))
        dataset.block_size(self.model_config().block_size, log=quiet)  # the same examples as in training
        return dataset

    # ---- metrics ------------------------------------------------------------------------------------
    def metrics(self) -> list:
        """Every complete record of metrics.jsonl (a line cut short by a crash is skipped)."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            record = _record(line)
            if record is not None:
                records.append(record)
        return records

    def open_metrics(self):
        """metrics.jsonl opened for appending (the trainer writes one record per line, flushed)."""
        return open(self.path / "metrics.jsonl", "a", encoding="utf-8")

    def truncate_metrics(self, step: int) -> None:
        """Drop the records after `step` (a resumed run logs those steps again); an atomic rewrite, so
        a crash leaves the old file or the new one."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return
        kept = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
                if (r := _record(line)) is not None and r["step"] <= step]
        write_atomic(path, "".join(line if line.endswith("\n") else line + "\n" for line in kept))

    # ---- ownership ----------------------------------------------------------------------------------
    @contextmanager
    def lock(self):
        """Own the folder while training: a second process is refused, naming the one that holds it.
        The kernel drops the lock when its process ends, so a killed run blocks nothing. A folder this
        call created is removed again if the run fails before writing anything into it."""
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
        failed = True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode("ascii", errors="replace").strip() or "another process"
                raise UserError(f"run folder {self.path} is in use by process {holder}",
                                "wait for it to finish, or stop it, or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield self
            failed = False
        finally:
            if failed and created and [p.name for p in self.path.iterdir()] == ["run.lock"]:
                shutil.rmtree(self.path, ignore_errors=True)
            os.close(fd)  # releases the lock

    def clear(self) -> None:
        """Remove the run's own files (and only those), for --force."""
        for name in sorted(run_file_names() - {"run.lock"}):
            path = self.path / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def _record(line: str):
    try:
        record = json.loads(line)
    except ValueError:
        return None  # a line cut short by a crash
    return record if isinstance(record, dict) and isinstance(record.get("step"), int) else None


def open_run(path) -> RunFolder:
    """The run folder at path; an error if it holds no run."""
    return RunFolder(path).require_run()
