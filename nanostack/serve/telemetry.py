"""Deployment telemetry (opt-in: --telemetry DIR): every request's prompt and completion, with the
model's per-token loss on the prompt, appended as Parquet files DIR/telemetry-*.parquet that the data
engine imports as a source. Nothing is written without the flag.

One row per choice, with exactly these columns:
    ts double (unix seconds), request_id string (the response id, "#<choice>" when a call has several),
    run string, endpoint string, prompt string, completion string, prompt_tokens int64,
    completion_tokens int64, prompt_nll_mean double (null for a one-token prompt), prompt_token_nll list<float>
Rows are buffered and written by a background thread every few seconds into a new file (written
under a temporary name, then renamed): an append never rewrites a file. Written with DuckDB.
"""
import logging
import os
import threading
import time
from pathlib import Path

COLUMNS = ("ts DOUBLE, request_id VARCHAR, run VARCHAR, endpoint VARCHAR, prompt VARCHAR, completion VARCHAR, "
           "prompt_tokens BIGINT, completion_tokens BIGINT, prompt_nll_mean DOUBLE, prompt_token_nll FLOAT[]")
log = logging.getLogger("nanostack.serve")


class Telemetry:
    def __init__(self, folder, flush_every: float = 5.0, max_rows: int = 1024):
        import duckdb  # noqa: F401, PLC0415 (fail at start-up, not at the first flush, if it is missing)

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.flush_every, self.max_rows = flush_every, max_rows
        self.rows = []
        self.files = 0
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="nanostack-telemetry", daemon=True)
        self.thread.start()

    def record_call(self, run: str, endpoint: str, call_id: str, state, tokenizer) -> None:
        now = time.time()
        rows = []
        for choice in state.choices:
            prompt = state.prompts[choice.prompt]
            nll = [-lp for lp, _ in prompt.scores] if prompt.scores else []
            rid = call_id if len(state.choices) == 1 else f"{call_id}#{choice.index}"
            rows.append((now, rid, run, endpoint, _clean(prompt.text), _clean(choice.text), len(prompt.ids),
                         len(choice.tokens), sum(nll) / len(nll) if nll else None, nll))
        with self.lock:
            self.rows.extend(rows)
            if len(self.rows) >= self.max_rows:
                self.wake.set()

    def _loop(self) -> None:
        while not self.closed:
            self.wake.wait(self.flush_every)
            self.wake.clear()
            self.flush()

    def flush(self) -> None:
        with self.lock:
            rows, self.rows = self.rows, []
        if not rows:
            return
        import duckdb  # noqa: PLC0415

        self.files += 1
        name = f"telemetry-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{self.files:06d}.parquet"
        final = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        try:
            con = duckdb.connect()
            con.execute(f"CREATE TABLE t ({COLUMNS})")
            con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            quoted = str(tmp).replace("'", "''")
            con.execute(f"COPY t TO '{quoted}' (FORMAT parquet)")
            con.close()
            os.replace(tmp, final)
        except Exception:  # telemetry must never take the server down
            log.exception("telemetry: could not write %s", final)
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self.closed = True
        self.wake.set()
        self.thread.join(timeout=10)
        self.flush()


def _clean(text: str) -> str:
    """Parquet strings are UTF-8: a lone surrogate cannot be stored (the API refuses them anyway)."""
    return text.encode("utf-8", "replace").decode("utf-8")
