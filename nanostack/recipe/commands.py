"""What `nanostack doctor` and `nanostack report` do, for the command line (which only parses arguments)."""
import json

from nanostack.errors import UserError
from nanostack.recipe.doctor import Doctor, exit_code, summary_line
from nanostack.recipe.report import collect, jsonable, render_report, report_run
from nanostack.recipe.result import parse_ids


def doctor(run_dir=None, preset=None, overrides=None, out=None, only=None, skip=None, quick=False, strict=False,
           as_json=False, draw=True, tensorboard=None, say=print, log=None) -> int:
    """Run the checks on a run folder (run_dir) or on a config before training (preset + overrides), print one
    line per check (or JSON), write the report, and return the exit code (0, or 1 on a FAIL)."""
    only_ids, skip_ids = parse_ids(only, "--only"), parse_ids(skip, "--skip")
    if run_dir is not None:
        if overrides:
            flags = ", ".join("--" + k.replace("_", "-") for k in overrides)
            raise UserError(f"{flags} set a training config, but {run_dir} is a run with its own",
                            "drop them, or check a config before training with --data and --config")
        if out is not None:
            raise UserError("--out is for a config before training; a run folder's report goes into RUN_DIR/doctor",
                            "drop --out")
        doc = Doctor.from_run(run_dir, preset, log=log)
        folder = doc.ctx.run.path
    else:
        from nanostack.run.config import make_config  # noqa: PLC0415

        if tensorboard:
            raise UserError("--tensorboard exports a run's metrics and probes", "give a RUN_DIR")
        doc = Doctor.from_config(make_config(preset, overrides or {}), preset, log=log)
        folder = out
    progress = None if as_json else (lambda r: say(r.line()))
    results = doc.run(only=only_ids, skip=skip_ids, quick=quick, progress=progress)
    code = exit_code(results, strict)
    report = None
    if folder is not None:
        report = render_report(folder, results, collect(doc.ctx, results), draw=draw)
    exported = None
    if tensorboard:
        from nanostack.recipe.tensorboard import export  # noqa: PLC0415

        exported = export(folder, tensorboard)
    if as_json:
        say(json.dumps(jsonable({"checks": [r.to_dict() for r in results], "exit_code": code,
                                 "report": str(report) if report else None}), default=str))
    else:
        say(summary_line(results))
        if report:
            say(f"report: {report}")
        if exported:
            say(f"tensorboard: tensorboard --logdir {exported.parent}")
    return code


def report(run_dir, draw=True, tensorboard=None, say=print) -> int:
    path = report_run(run_dir, draw=draw)
    say(f"report: {path}")
    if tensorboard:
        from nanostack.recipe.tensorboard import export  # noqa: PLC0415

        say(f"tensorboard: tensorboard --logdir {export(run_dir, tensorboard).parent}")
    return 0
