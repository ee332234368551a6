"""`nanostack engine score RUN`: every example of a version scored by a trained run, optionally every token.

The losses are nanostack.loss's (example_losses, and token_nll for per-token losses), on the version
as an example-per-row Dataset read with the run's own tokenizer, each example once (weights are not
repeated), so a score's rows line up with the version's rows. A score is stored once per
(version, checkpoint weights, settings): score_id = sha256 of those, and scoring again is a lookup.

    scores/<score_id>/manifest.json
    scores/<score_id>/example_loss-RANK.parquet   row, example_id, split, nll_sum, tokens, nll_mean,
                                                  token_start (with --tokens)
    scores/<score_id>/token_loss-RANK.f16         per-token NLL, float16, 2 bytes a token

Beyond one process: under torchrun (WORLD_SIZE > 1) each rank scores the examples whose id mod
WORLD_SIZE is its rank and writes its own files; rank 0 writes the manifest after a gloo barrier.
Every rank pads rows to the same length, so 2 ranks give what 1 process gives.
"""
import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np

from nanostack.data.versions import DATASET_KIND, open_version
from nanostack.dataengine.store import canonical, sha256_file
from nanostack.dataengine.tables import read_parquet, write_parquet
from nanostack.errors import UserError
from nanostack.io import read_json, write_json
from nanostack.run import open_run

SPLITS = ("train", "test")


def parse_splits(text) -> tuple:
    splits = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    splits = ["test" if s == "val" else s for s in splits]
    if not splits or any(s not in SPLITS for s in splits):
        raise UserError(f"--splits {text!r} names no split or an unknown one", "use train, test or train,test")
    return tuple(dict.fromkeys(splits))


class Score:
    """One stored score: its manifest, and its per-example (and per-token) losses."""

    def __init__(self, store, score_id: str):
        self.store = store
        self.score_id = score_id
        self.path = store.scores_dir / score_id
        self.manifest = read_json(self.path / "manifest.json", "score manifest")
        self._table = None

    def __repr__(self):
        return f"Score({self.score_id[:12]}, run={self.manifest['run']!r})"

    @property
    def vid(self) -> str:
        return self.manifest["vid"]

    def shards(self) -> list:
        return [self.path / f"example_loss-{r:05d}.parquet" for r in range(self.manifest["world_size"])]

    def table(self) -> dict:
        """row, example_id, split, nll_sum, tokens, nll_mean (and token_start, shard): every scored example,
        in version order."""
        if self._table is None:
            missing = [p for p in self.shards() if not p.is_file()]
            if missing:
                raise UserError(f"score {self.score_id[:12]} has lost {missing[0].name}", "score the run again")
            self._table = read_parquet(self.shards(), order="row")
            self._table["split"] = self._table["split"].astype(object)
        return self._table

    def losses_for(self, version, table: dict) -> dict:
        """nll_sum, tokens, nll_mean per row of `table` (a version's): by row when the score is of that
        version, else by example id (NaN for rows this score does not know)."""
        scored = self.table()
        n = len(table["text"])
        out = {"nll_sum": np.full(n, np.nan), "tokens": np.zeros(n, dtype=np.int64), "nll_mean": np.full(n, np.nan)}
        if version.vid == self.vid and n == version.counts["examples"] and "row" in table:
            index = np.searchsorted(table["row"], scored["row"])
            ok = (index < n) & (table["row"][np.minimum(index, n - 1)] == scored["row"])
            target = index[ok]
            source = np.flatnonzero(ok)
        else:  # another version (a derived one): join on content
            ids, first = np.unique(scored["example_id"], return_index=True)
            where = np.searchsorted(ids, table["example_id"])
            where = np.minimum(where, max(len(ids) - 1, 0))
            ok = (ids[where] == table["example_id"]) if len(ids) else np.zeros(n, dtype=bool)
            target = np.flatnonzero(ok)
            source = first[where[ok]]
        out["nll_sum"][target] = scored["nll_sum"][source]
        out["tokens"][target] = scored["tokens"][source]
        out["nll_mean"][target] = scored["nll_mean"][source]
        return out

    def token_losses(self, shard: int) -> np.ndarray:
        path = self.path / f"token_loss-{shard:05d}.f16"
        if not path.is_file():
            raise UserError(f"score {self.score_id[:12]} holds no per-token losses",
                            "score with --tokens: nanostack engine score RUN --tokens")
        return np.memmap(path, dtype=np.float16, mode="r") if path.stat().st_size else np.zeros(0, np.float16)

    def summary(self) -> dict:
        return self.manifest["summary"]


def open_score(store, ref: str) -> Score:
    """A score by id (or a unique prefix), or the newest score of a run folder."""
    ref = str(ref)
    folder = store.scores_dir
    if Path(ref).is_dir() and (Path(ref) / "config.json").is_file():
        run = str(Path(ref).resolve())
        found = []
        for path in folder.glob("*/manifest.json") if folder.is_dir() else []:
            manifest = read_json(path, "score manifest")
            if manifest.get("run") == run:
                found.append((manifest.get("created", 0), path.parent.name))
        if not found:
            raise UserError(f"run {ref} has no score yet", f"score it first: nanostack engine score {ref}")
        return Score(store, max(found)[1])
    matches = [p.name for p in folder.glob(f"{ref}*") if len(p.name) == 64] if folder.is_dir() and ref else []
    if len(matches) != 1:
        what = "is ambiguous" if matches else "is unknown"
        raise UserError(f"score {ref!r} {what}", "give a score id from `nanostack engine score` (or a run folder)")
    return Score(store, matches[0])


def distributed():
    """(rank, world size, whether this call joined the group), joining the torchrun group when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist  # noqa: PLC0415

    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), joined


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist  # noqa: PLC0415

        dist.barrier()


def score_run(store, run_dir, version=None, splits=SPLITS, tokens=False, which="best", device="cpu",
              batch_size=None, log=print) -> Score:
    """Score every example of `version` (default: the version the run trained on) with the run's
    checkpoint `which`; cached by content."""
    from nanostack.dataengine.version import Version  # noqa: PLC0415

    run = open_run(run_dir)
    if version is None:
        recorded = run.config.get("data_version")
        if not recorded:
            raise UserError(f"run {run_dir} did not train on a dataset version", "give the version: --data V")
        version = Version(store, store.resolve(recorded["vid"]), recorded.get("ref", ""))
    splits = parse_splits(splits)
    checkpoint = run.checkpoint_for_reading(which)
    weights_hash = sha256_file(checkpoint / "model.safetensors")
    model_config = run.model_config()
    params = {"splits": list(splits), "tokens": bool(tokens), "block_size": model_config.block_size,
              "format": 1}
    score_id = hashlib.sha256(canonical({"vid": version.vid, "weights": weights_hash, **params}).encode()).hexdigest()
    final = store.scores_dir / score_id
    if (final / "manifest.json").is_file():
        return Score(store, score_id)
    run_kind = run.data_kind
    if run_kind != DATASET_KIND[version.kind]:
        raise UserError(f"run {run_dir} was trained on {run_kind} examples; version {version.ref} holds "
                        f"{version.kind}", "score it with a run trained on data of the same kind")
    rank, world, joined = distributed()
    tmp = store.scores_dir / f".tmp-{score_id[:16]}"
    if rank == 0:
        store.ensure()
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(world)
    t0 = time.perf_counter()
    try:
        skipped, _ = score_shard(run, version, splits, tokens, which, device, batch_size, rank, world, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed score leaves nothing behind
        raise
    barrier(world)
    if rank == 0:
        elapsed = time.perf_counter() - t0
        shards = [tmp / f"example_loss-{r:05d}.parquet" for r in range(world)]
        totals = read_parquet(shards, columns=["split", "nll_sum", "tokens"])
        summary = {}
        for split in splits:
            mask = totals["split"] == split
            count = int(totals["tokens"][mask].sum())
            summary[split] = {"examples": int(mask.sum()), "tokens": count,
                              "nll_per_token": float(totals["nll_sum"][mask].sum() / max(count, 1))}
        write_json(tmp / "manifest.json", {
            "score_id": score_id, "run": str(run.path.resolve()), "checkpoint": which,
            "checkpoint_step": run.read_state(checkpoint).get("step"), "weights_sha256": weights_hash,
            "vid": version.vid, "version_ref": version.ref, **params, "world_size": world,
            "skipped_too_long": skipped, "summary": summary, "created": round(time.time(), 3),
            "elapsed_s": round(elapsed, 3), "tokens_per_s": round(int(totals["tokens"].sum()) / max(elapsed, 1e-9))})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    barrier(world)
    if joined:
        import torch.distributed as dist  # noqa: PLC0415

        dist.destroy_process_group()
    return Score(store, score_id)


def score_shard(run, version, splits, tokens, which, device, batch_size, rank, world, out: Path):
    """Score this rank's share of the version (example id mod world == rank) into out/."""
    import torch  # noqa: PLC0415

    from nanostack.loss import example_losses, token_nll  # noqa: PLC0415

    model = run.load_model(which, device)
    tokenizer = run.tokenizer()
    dataset = open_version(str(version.path), tokenizer, repeat=False)
    block = model.config.block_size
    table = version.table()
    columns = {k: [] for k in ("row", "example_id", "split", "nll_sum", "tokens", "token_start")}
    token_chunks, token_count, skipped = [], 0, {}
    kwargs = {"batch_size": batch_size} if batch_size else {}
    for split in splits:
        rows = np.flatnonzero(table["split"] == split)
        rows = rows[table["example_id"][rows] % world == rank]
        words = list(table["text"][rows])
        setattr(dataset, "train_words" if split == "train" else "test_words", words)
        dataset._tensors.clear()
        dataset._longest = 0
        if not words:
            skipped[split] = 0
            continue
        try:
            x, y = dataset.tensors(split)  # every example of this rank, padded to the longest
        except UserError as e:
            raise UserError(f"version {version.ref} has text that run {run.path}'s tokenizer cannot encode "
                            f"({e.message})", "score it with a run trained on this version's vocabulary "
                            f"(nanostack train --data {version.ref})") from None
        length = (y != -1).sum(1)  # tokens predicted: the example's tokens and its boundary
        fits = (length <= block).numpy()
        skipped[split] = int((~fits).sum())
        if not fits.all():  # longer than the model's context: left out, and counted
            width = int(length[torch.from_numpy(fits)].max()) if fits.any() else 1
            x, y = x[torch.from_numpy(fits), :width], y[torch.from_numpy(fits), :width]
            rows = rows[fits]
        dataset._tensors[dataset.split_name(split)] = (x, y)
        if tokens:
            sums, counts = [], []
            for _, bx, by in dataset.batches(split, block, **kwargs):
                nll = token_nll(model, bx.to(device), by.to(device)).cpu()
                mask = by != -1
                sums.append(nll.double().sum(1))
                counts.append(mask.sum(1))
                token_chunks.append(nll[mask].to(torch.float16).numpy())
            sums, counts = torch.cat(sums), torch.cat(counts)
        else:
            sums, counts = example_losses(model, dataset, split, block, device, batch_size)
        counts = counts.numpy().astype(np.int64)
        columns["row"].append(rows)
        columns["example_id"].append(table["example_id"][rows])
        columns["split"].append(np.full(len(rows), split, dtype=object))
        columns["nll_sum"].append(sums.numpy())
        columns["tokens"].append(counts)
        columns["token_start"].append(token_count + np.concatenate([[0], np.cumsum(counts)[:-1]]))
        token_count += int(counts.sum())
    empty = {"split": object, "nll_sum": np.float64}
    table_out = {k: np.concatenate(v) if v else np.zeros(0, dtype=empty.get(k, np.int64)) for k, v in columns.items()}
    table_out["nll_mean"] = table_out["nll_sum"] / np.maximum(table_out["tokens"], 1)
    table_out["shard"] = np.full(len(table_out["row"]), rank, dtype=np.int64)
    if not tokens:
        del table_out["token_start"]
    write_parquet(out / f"example_loss-{rank:05d}.parquet", table_out, categorical=("split",))
    if tokens:
        flat = np.concatenate(token_chunks) if token_chunks else np.zeros(0, np.float16)
        flat.astype(np.float16).tofile(out / f"token_loss-{rank:05d}.f16")
    return skipped, token_count
