"""The doctor's report: RUN_DIR/doctor/{report.json, doctor.html, *.png}.

`collect(ctx, results)` gathers what needs the data or a model (the check results, the baselines,
the first batch decoded, the held-out examples with the highest and lowest loss scored token by
token with the run's best checkpoint); `render_report(folder, results, collected)` adds what the
run's files hold (metrics.jsonl, probes.jsonl: predictions on the fixed window, attention maps,
histograms, update ratios), draws the plots and writes report.json and doctor.html. `nanostack
report RUN_DIR` calls render_report alone: it reuses the model-dependent parts of the last
report.json and loads no model. Without matplotlib the report has its tables and says how to get
the plots.
"""
import json
import math
import os
import platform
import sys
from pathlib import Path

from nanostack import __version__
from nanostack.errors import UserError
from nanostack.io import read_json, write_json
from nanostack.recipe import plots
from nanostack.recipe.context import read_probes
from nanostack.recipe.html import render_html
from nanostack.run import RunFolder

SHOWN_EXAMPLES = 20      # hardest and easiest held-out examples in the report
PLOTS_HINT = "pip install 'nanostack[plots]' (matplotlib) for the plots, then run `nanostack report RUN_DIR`"


def collect(ctx, results) -> dict:
    """The report's parts that need the data or a model, from a DoctorContext and the checks' results."""
    by_id = {r.id: r for r in results}
    out = {"checks": [r.to_dict() for r in results], "baselines": ctx.baselines,
           "vocab_size": ctx.vocab_size, "block_size": ctx.block_size}
    if "batch-alignment" in by_id:
        out["first_batch"] = by_id["batch-alignment"].data.get("rows")
    if "lr-range" in by_id:
        out["lr_find"] = by_id["lr-range"].data
    if "update-ratio" in by_id:
        out["update_ratio"] = by_id["update-ratio"].data
    scores = ctx.heldout_scores if ctx.run is not None else None
    if scores is not None:
        out["examples"] = scored_examples(ctx, scores)
    return out


def scored_examples(ctx, scores: dict) -> dict:
    rows = [r for r in scores["rows"] if r["nll"]]
    rows.sort(key=lambda r: -sum(r["nll"]) / len(r["nll"]))

    def shown(r):
        e = r["example"]
        return {"id": e.id, "index": e.index, "source": e.source, "offset": e.offset,
                "loss": sum(r["nll"]) / len(r["nll"]),
                "tokens": [[text, round(n, 3)] for text, n in zip(ctx.token_texts(r["targets"]), r["nll"])]}

    return {"split": ctx.dataset.heldout, "scored": len(rows), "mean": scores["mean"],
            "hardest": [shown(r) for r in rows[:SHOWN_EXAMPLES]],
            "easiest": [shown(r) for r in rows[::-1][:SHOWN_EXAMPLES]]}


def render_report(folder, results=None, collected=None, draw=True) -> Path:
    """Write FOLDER/doctor/report.json, doctor.html and the PNGs; return doctor.html's path. FOLDER is a run
    folder (its metrics and probes are drawn) or the --out of a doctor run before training."""
    folder = Path(folder)
    out_dir = folder / "doctor"
    previous = read_json(out_dir / "report.json", "report") if (out_dir / "report.json").is_file() else {}
    report = {k: v for k, v in previous.items() if k in ("checks", "baselines", "first_batch", "lr_find",
                                                          "update_ratio", "examples", "vocab_size", "block_size")}
    report.update(collected or {})
    if results is not None:
        report["checks"] = [r.to_dict() for r in results]
    run = RunFolder(folder)
    metrics = run.metrics() if run.is_run() else []
    records = read_probes(folder) if run.is_run() else []
    tokenizer = run.tokenizer() if run.is_run() else None
    if run.is_run() and "baselines" not in report:
        report["baselines"] = baselines_of_run(run)
    report.update(run=str(folder), metrics_records=len(metrics), environment=environment(run))
    report.update(probe_summary(records, tokenizer))
    out_dir.mkdir(parents=True, exist_ok=True)
    images = draw_plots(out_dir, report, metrics, records) if draw and plots.available() else {}
    report["plots"] = sorted(images)
    report["plots_note"] = "" if images or not draw else (PLOTS_HINT if not plots.available() else "")
    report = jsonable(report)
    write_json(out_dir / "report.json", report)
    html = render_html(report, {name: out_dir / name for name in images})
    path = out_dir / "doctor.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


def jsonable(node):
    """The report with every non-finite number as None (JSON has no NaN or infinity) and tuples as lists."""
    if isinstance(node, dict):
        return {str(k): jsonable(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [jsonable(v) for v in node]
    if isinstance(node, float) and not math.isfinite(node):
        return None
    return node


def probe_summary(records: list, tokenizer) -> dict:
    """The window, the predictions at each evaluation and the last attention maps, as the report shows them."""
    probes = [r for r in records if r.get("kind") == "probe"]
    window = next((r for r in records if r.get("kind") == "window"), None)
    evals = [r for r in records if r.get("kind") == "eval"]
    out = {"probes": {"count": len(probes), "steps": [r["step"] for r in probes]}}
    if window is None or tokenizer is None:
        return out

    def texts(ids):
        return [tokenizer.decode_bytes([i]).decode("utf-8", errors="replace") if i >= 0 else "" for i in ids]

    out["predictions"] = {"x": texts(window["x"]), "y": texts(window["y"]),
                          "evals": [{"step": e["step"], "pred": texts(e["pred"]), "nll": e["nll"]} for e in evals]}
    final = next((e for e in reversed(evals) if e.get("attention")), None)
    if final is not None:
        out["attention"] = {"step": final["step"], "tokens": texts(window["x"]), "maps": final["attention"]}
    return out


def draw_plots(out_dir: Path, report: dict, metrics: list, records: list) -> dict:
    """{file name: path} of every picture there is data for."""
    probes = [r for r in records if r.get("kind") == "probe"]
    first, last = (probes[0], probes[-1]) if probes else (None, None)
    if last is first:
        last = None
    update = report.get("update_ratio") or {}
    per_weight = update.get("per_weight") or per_weight_updates(probes)
    band = update.get("band")
    drawn = {
        "loss.png": plots.loss_plot(metrics, report.get("baselines") or {}, out_dir / "loss.png"),
        "lr.png": plots.lr_plot(metrics, out_dir / "lr.png"),
        "act_hist.png": plots.histograms_plot(first, last, "act", out_dir / "act_hist.png"),
        "grad_hist.png": plots.histograms_plot(first, last, "grad", out_dir / "grad_hist.png"),
        "weight_grad_hist.png": plots.weight_grad_plot(first, last, out_dir / "weight_grad_hist.png"),
        "hist_time.png": plots.hist_time_plot(probes, "act", out_dir / "hist_time.png"),
        "update_ratio.png": plots.update_ratio_plot(per_weight, band, out_dir / "update_ratio.png"),
        "lr_find.png": plots.lr_find_plot(report.get("lr_find"), out_dir / "lr_find.png"),
    }
    attention = report.get("attention")
    if attention:
        drawn["attention.png"] = plots.attention_plot(attention["maps"], attention["tokens"], out_dir / "attention.png")
    for name, path in drawn.items():  # a picture with no data now must not survive from an older report
        if path is None and (out_dir / name).exists():
            (out_dir / name).unlink()
    return {name: path for name, path in drawn.items() if path is not None}


def per_weight_updates(probes: list) -> dict:
    out = {}
    for r in probes:
        for w in r.get("weights", []):
            out.setdefault(w["name"], []).append((r["step"], w.get("update")))
    return out


def baselines_of_run(run) -> dict:
    """ln V and the unigram and bigram cross-entropies of the run's data (reads the data, not the model)."""
    from nanostack.recipe.context import compute_baselines  # noqa: PLC0415

    dataset = run.dataset()
    return compute_baselines(dataset, run.model_config().block_size)


def environment(run) -> dict:
    import torch  # noqa: PLC0415

    env = {"nanostack": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "platform": platform.platform(), "cpus": os.cpu_count(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "matplotlib": matplotlib_version()}
    if run.is_run():
        cfg = run.config.get("train", {})
        env.update(device=cfg.get("device"), dtype=cfg.get("dtype"), backend=cfg.get("backend"),
                   compile=cfg.get("compile"))
    return env


def matplotlib_version():
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        return None
    return matplotlib.__version__


def report_run(run_dir, draw=True) -> Path:
    """`nanostack report RUN_DIR`: redraw the report from the run's files (no model is loaded)."""
    run = RunFolder(run_dir).require_run()
    if not run.metrics():
        raise UserError(f"{run.path} has no metrics yet (metrics.jsonl is missing or empty)",
                        "train it for at least --log-interval steps first")
    return render_report(run.path, draw=draw)


def load_report(run_dir) -> dict:
    path = Path(run_dir) / "doctor" / "report.json"
    return json.loads(path.read_text(encoding="utf-8"))
