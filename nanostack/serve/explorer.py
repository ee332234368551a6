"""The data explorer's data: a run's examples sorted by the model's loss, when per-example scores exist.

SEAM (data engine, issue 13): `find_example_scores(run)` is the one function that knows where a
run's per-example scores live. The data engine stores them as Parquet (scores/<id>/example_loss-RANK.parquet,
one file per scoring rank, with a manifest naming the run; a glob reads them as one table). It looks for
  - RUN_DIR/example_loss.parquet, then
  - $NANOSTACK_HOME (default ./.nanostack)/scores/*/manifest.json whose "run" is this run's folder.
The page shows the explorer only when this finds a table. The reader takes the columns it knows
(id or example_id; loss, nll_per_token, or nll_sum with tokens; n_tokens or tokens; text; source)
and fills a missing text from the run's own dataset by example id. Read with DuckDB, in memory.
"""
import json
import os
from pathlib import Path

from nanostack.errors import UserError

MAX_TEXT = 2048


def find_example_scores(run):
    """SEAM: the Parquet file of this run's per-example scores, or None."""
    own = run.path / "example_loss.parquet"
    if own.is_file():
        return own
    home = Path(os.environ.get("NANOSTACK_HOME", ".nanostack"))
    found = []
    for manifest in (home / "scores").glob("*/manifest.json"):
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
            same = Path(str(meta.get("run", ""))).resolve() == run.path.resolve()
        except (OSError, ValueError):
            continue
        shards = sorted(manifest.parent.glob("example_loss*.parquet"))  # one per scoring rank
        if same and shards:
            table = shards[0] if len(shards) == 1 else str(manifest.parent / "example_loss*.parquet")
            found.append((manifest.stat().st_mtime, str(table)))
    return Path(max(found)[1]) if found else None


def _columns(con, path) -> set:
    return {row[0] for row in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()}


def read_examples(run, path, order: str = "desc", offset: int = 0, limit: int = 50) -> list:
    """[{id, loss, n_tokens, text, source}] sorted by loss (per token), `limit` from `offset`."""
    import duckdb  # noqa: PLC0415 (an optional dependency, needed only when scores exist)

    con = duckdb.connect()
    cols = _columns(con, path)
    pick = lambda *names: next((n for n in names if n in cols), None)  # noqa: E731
    id_col, tokens_col = pick("id", "example_id"), pick("n_tokens", "tokens")
    loss = pick("loss", "nll_per_token", "nll_mean")
    if loss is None and "nll_sum" in cols and tokens_col:
        loss = f"nll_sum / greatest({tokens_col}, 1)"
    if id_col is None or loss is None:
        raise UserError(f"{path} has no id and loss columns", "score the run with the data engine again")
    text = pick("text")
    source = pick("source")
    sql = (f"SELECT {id_col}, {loss}, {tokens_col or 'NULL'}, {text or 'NULL'}, {source or 'NULL'} "
           f"FROM read_parquet(?) ORDER BY 2 {'ASC' if order == 'asc' else 'DESC'} NULLS LAST LIMIT ? OFFSET ?")
    rows = con.execute(sql, [str(path), limit, offset]).fetchall()
    texts = {} if text else _texts_by_id(run, {r[0] for r in rows})
    return [{"id": int(r[0]), "loss": float(r[1]) if r[1] is not None else None,
             "n_tokens": int(r[2]) if r[2] is not None else None,
             "text": ((r[3] if text else texts.get(int(r[0]))) or "")[:MAX_TEXT],
             "source": None if r[4] is None else str(r[4])} for r in rows]


def _texts_by_id(run, ids: set) -> dict:
    try:
        dataset = run.dataset()
    except UserError:
        return {}
    block = run.model_config().block_size
    texts = {}
    for split in ("train", dataset.heldout):
        for example in dataset.examples(split, block):
            if example.id in ids:
                texts[example.id] = example.text
    return texts
