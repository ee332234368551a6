"""The dashboard's data: the runs under --runs-root, each read through nanostack.run (RunFolder).

GET /api/runs                       the runs (folders with a config.json), by name
GET /api/runs/{name}                its config, and whether it has a recipe report or example scores
GET /api/runs/{name}/metrics?since  its metrics.jsonl records from index `since` on, and the next index
GET /api/runs/{name}/examples       its examples sorted by loss (when the data engine scored it)
GET /api/runs/{name}/report         the recipe's report (doctor/doctor.html), when there is one

Runs are named, never given as paths (security.run_path); only fixed file names are read.
"""
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from nanostack.errors import UserError
from nanostack.run import RunFolder
from nanostack.serve.api_errors import APIError
from nanostack.serve.explorer import find_example_scores, read_examples
from nanostack.serve.schemas import Error
from nanostack.serve.security import RUN_NAME, run_path

REPORT = ("doctor", "doctor.html")
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
RunName = Annotated[str, PathParam(pattern=f"^{RUN_NAME.pattern}$", description="a run folder's name under --runs-root")]
ERRORS = {400: {"model": Error, "description": "not a run name"}, 401: {"model": Error, "description": "no token"},
          404: {"model": Error, "description": "no such run"}}


def make_dashboard(runs_root: Path, served_name: str) -> APIRouter:
    router = APIRouter()
    root = Path(runs_root)

    def open_named(name: str) -> RunFolder:
        if not RUN_NAME.fullmatch(name):
            raise APIError(400, "a run is named by its folder name (letters, digits, . _ -), not a path", "name",
                           "invalid_run_name")
        path = run_path(root, name)
        if path is None or not (path / "config.json").is_file():
            raise APIError(404, f"no run named {name!r} under the runs root", "name", "run_not_found")
        return RunFolder(path)

    @router.get("/api/runs", summary="The runs under --runs-root", responses={401: ERRORS[401]})
    def list_runs() -> dict:
        runs = []
        for entry in sorted(root.iterdir()) if root.is_dir() else []:
            path = run_path(root, entry.name)
            if path is not None and (path / "config.json").is_file():
                metrics = path / "metrics.jsonl"
                runs.append({"name": entry.name, "served": entry.name == served_name,
                             "updated": metrics.stat().st_mtime if metrics.is_file() else None})
        return {"runs": runs}

    @router.get("/api/runs/{name}", summary="A run's config", responses=ERRORS)
    def run_info(name: RunName) -> dict:
        run = open_named(name)
        try:
            config = run.config
        except UserError as e:
            raise APIError(404, f"run {name!r} cannot be read: {e.message}", "name", "run_damaged") from None
        return {"name": name, "config": config, "report": (run.path.joinpath(*REPORT)).is_file(),
                "examples": find_example_scores(run) is not None}

    @router.get("/api/runs/{name}/metrics", summary="A run's metrics records from index `since`", responses=ERRORS)
    def run_metrics(name: RunName, since: int = Query(0, ge=0, le=10 ** 9)) -> dict:
        records = open_named(name).metrics()  # complete lines only: a line being written waits for the next poll
        return {"records": records[since:], "next": max(len(records), since)}

    @router.get("/api/runs/{name}/examples", summary="A run's examples by loss (data engine scores)",
                responses=ERRORS)
    def run_examples(name: RunName, sort: Literal["loss"] = "loss", order: Literal["asc", "desc"] = "desc",
                     offset: int = Query(0, ge=0, le=10 ** 9), limit: int = Query(50, ge=1, le=200)) -> dict:
        run = open_named(name)
        table = find_example_scores(run)  # SEAM: the data engine's scores for this run
        if table is None:
            return {"available": False, "examples": []}
        try:
            return {"available": True, "examples": read_examples(run, table, order, offset, limit)}
        except UserError as e:
            raise APIError(404, e.message, "name", "scores_unreadable") from None

    @router.get("/api/runs/{name}/report", summary="The recipe's report", response_class=FileResponse,
                responses={200: {"content": {"text/html": {}}}, **ERRORS})
    def run_report(name: RunName):
        path = open_named(name).path.joinpath(*REPORT)
        if not path.is_file():
            raise APIError(404, f"run {name!r} has no report yet; run `nanostack doctor` on it", "name", "no_report")
        return FileResponse(path, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP})

    return router
