"""The data engine's Python API: the same verbs as `nanostack data` and `nanostack engine`.

    import nanostack.dataengine as de
    engine = de.open_engine()                       # the store at NANOSTACK_HOME (default ./.nanostack)
    names = engine.import_path("names.txt", name="names")
    clean = names.dedupe("normalized")              # a new version, filed as names@2 (names@latest)
    score = engine.score("runs/names", clean)       # per-example losses of a trained run
    score.worst(20, split="test")                   # the examples it finds hardest
    engine.compare("runs/before", "runs/after")     # paired change on the pinned test set, with a 95% CI

Ops return the new version; what the op did (n before -> after, whether it was cached) is its
`op_result`.
"""
from nanostack.dataengine import catalog, ops, views
from nanostack.dataengine.importer import import_path
from nanostack.dataengine.report import build_report
from nanostack.dataengine.score import Score, open_score, score_run
from nanostack.dataengine.store import Store
from nanostack.dataengine.version import Version


class DatasetVersion(Version):
    """A version with the curation verbs; each returns the new version (see `op_result`)."""

    op_result = None

    def _done(self, result) -> "DatasetVersion":
        version = DatasetVersion(self.store, result.version.vid, result.version.ref)
        version.op_result = result
        return version

    def dedupe(self, mode="exact", keep="test", threshold=0.8, edit_test=False, name=None):
        return self._done(ops.dedupe(self.store, self, mode, keep, threshold, edit_test, name))

    def drop(self, ids=None, ids_file=None, where=None, score=None, worst=None, edit_test=False, name=None):
        return self._done(ops.drop(self.store, self, ids, ids_file, where, score, worst, edit_test, name))

    def filter(self, where, score=None, edit_test=False, name=None):
        return self._done(ops.filter_rows(self.store, self, where, score, edit_test, name))

    def upweight(self, score, top="5%", factor=2, name=None):
        return self._done(ops.upweight(self.store, self, score, top, factor, name))

    def relabel(self, fixes_file, edit_test=False, name=None):
        return self._done(ops.relabel(self.store, self, fixes_file, edit_test, name))

    def append(self, path, split="train", edit_test=False, name=None):
        return self._done(ops.append(self.store, self, path, split, edit_test, name))

    def report(self, near_dup=False, tokenizer="char", threshold=0.8) -> dict:
        return build_report(self, near_dup, tokenizer, threshold)

    def tag(self, name: str) -> str:
        return catalog.tag(self.store, self, name)

    def log(self) -> list:
        return catalog.lineage(self.store, self)

    def diff(self, other) -> dict:
        return catalog.diff(self, other)


class ScoreView(Score):
    """A score with its views."""

    def worst(self, n=20, split="test"):
        return views.ranked(self.store, self, n, split)

    def best(self, n=20, split="test"):
        return views.ranked(self.store, self, n, split, best=True)

    def tokens(self, n=20, device="cpu"):
        return views.surprising_tokens(self.store, self, n, device)

    def review(self, n=200, split="train") -> str:
        return views.review(self.store, self, n, split)


class Engine:
    def __init__(self, home=None):
        self.store = Store(home)

    def __repr__(self):
        return f"Engine({str(self.store.home)!r})"

    # ---- versions ---------------------------------------------------------------------------------
    def import_path(self, path, examples="lines", name=None, seed=1337) -> DatasetVersion:
        with self.store.lock():
            vid, created, manifest = import_path(self.store, path, examples, name, seed)
            ref = self.store.advance(manifest["name"], vid)
        version = DatasetVersion(self.store, vid, ref)
        version.created = created
        return version

    def version(self, ref) -> DatasetVersion:
        if isinstance(ref, Version):
            return DatasetVersion(self.store, ref.vid, ref.ref)
        return DatasetVersion(self.store, self.store.resolve(str(ref)), str(ref))

    def list(self) -> list:
        return catalog.list_versions(self.store)

    def untag(self, ref: str) -> str:
        return catalog.untag(self.store, ref)

    def verify(self) -> dict:
        return catalog.verify(self.store)

    def gc(self, dry_run=False) -> dict:
        return catalog.gc(self.store, dry_run)

    # ---- the model in the loop --------------------------------------------------------------------
    def score(self, run, version=None, splits=("train", "test"), tokens=False, which="best", device="cpu",
              batch_size=None) -> ScoreView:
        version = None if version is None else self.version(version)
        found = score_run(self.store, run, version, splits, tokens, which, device, batch_size)
        return ScoreView(self.store, found.score_id)

    def open_score(self, ref) -> ScoreView:
        if isinstance(ref, Score):
            return ScoreView(self.store, ref.score_id)
        return ScoreView(self.store, open_score(self.store, ref).score_id)

    def compare(self, run_a, run_b, on=None, n=10, device="cpu") -> dict:
        return views.compare(self.store, run_a, run_b, None if on is None else self.version(str(on).split(":")[0]),
                             n, device)

    def runs(self, version=None) -> list:
        return views.runs(self.store, None if version is None else self.version(version))

    def sql(self, query, version=None, score=None) -> dict:
        return views.sql(self.store, query, None if version is None else self.version(version),
                         None if score is None else self.open_score(score))

    def loop(self, data, preset=None, rounds=1, curate="dedupe=near; drop=worst:0.5%", overrides=None, review=False,
             out=None, device="cpu", log=print) -> dict:
        from nanostack.dataengine.loop import run_loop  # noqa: PLC0415 (imports the trainer)

        return run_loop(self.store, self.version(data), preset, rounds, curate, overrides, review, out, device, log)


def open_engine(home=None) -> Engine:
    return Engine(home)
