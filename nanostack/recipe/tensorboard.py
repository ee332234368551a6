"""TensorBoard export: a run's metrics and probes as event files, for those who already use TensorBoard.

`export(run_dir, logdir)` writes the same scalars and histograms the report draws, with
torch.utils.tensorboard (the `tensorboard` package: the optional extra `nanostack[tensorboard]`):
train/loss, train/lr, train/grad_norm, eval/train_loss, eval/val_loss per step; per probed layer
the activation and gradient std and histograms; per weight matrix the update ratio and the
gradient histogram; and the last doctor's check table as text. Histograms are the probes' own
64 bins (no raw values are kept), handed to add_histogram_raw. Run it again to bring the event
files up to date: each export replaces the previous one in logdir.
"""
import shutil
from pathlib import Path

from nanostack.errors import UserError
from nanostack.recipe.context import read_probes
from nanostack.run import open_run

EVENTS = "nanostack"  # the subfolder of logdir this export owns


def writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package, which is not installed",
                        "pip install 'nanostack[tensorboard]'") from None
    return SummaryWriter


def export(run_dir, logdir) -> Path:
    """Write RUN_DIR's metrics and probes to logdir/nanostack (replacing an earlier export); return that folder."""
    SummaryWriter = writer_class()
    run = open_run(run_dir)
    target = Path(logdir) / EVENTS
    if target.exists():
        shutil.rmtree(target)
    writer = SummaryWriter(log_dir=str(target))
    try:
        for r in run.metrics():
            if r.get("kind") == "train":
                for key in ("loss", "lr", "grad_norm"):
                    if isinstance(r.get(key), (int, float)):
                        writer.add_scalar(f"train/{key}", r[key], r["step"])
            elif r.get("kind") == "eval":
                for key in ("train_loss", "val_loss"):
                    if isinstance(r.get(key), (int, float)):
                        writer.add_scalar(f"eval/{key}", r[key], r["step"])
        for record in read_probes(run.path):
            if record.get("kind") != "probe":
                continue
            step = record["step"]
            for layer in record["layers"]:
                for what in ("act", "grad"):
                    stats = layer.get(what)
                    if stats:
                        writer.add_scalar(f"{what}_std/{layer['name']}", stats["std"], step)
                        histogram(writer, f"{what}/{layer['name']}", stats, stats.get("hist"), step)
            for w in record["weights"]:
                if w.get("update") is not None:
                    writer.add_scalar(f"update_ratio/{w['name']}", w["update"], step)
                if w.get("grad_hist"):
                    histogram(writer, f"weight_grad/{w['name']}", {"mean": 0.0, "std": w.get("grad_std") or 0.0,
                                                                   "absmax": w.get("grad_absmax")}, w["grad_hist"], step)
        report = run.path / "doctor" / "report.json"
        if report.is_file():
            import json  # noqa: PLC0415

            checks = json.loads(report.read_text(encoding="utf-8")).get("checks") or []
            table = "\n".join(f"| {c['status']} | {c['id']} | {c.get('detail', '')} |" for c in checks)
            writer.add_text("doctor", "| status | check | measured |\n|---|---|---|\n" + table, 0)
    finally:
        writer.close()
    return target


def histogram(writer, tag, stats, counts, step) -> None:
    if not counts or not stats.get("absmax"):
        return
    top, bins = stats["absmax"], len(counts)
    limits = [top * (2 * (i + 1) / bins - 1) for i in range(bins)]  # right edges
    n = sum(counts)
    mean, std = stats.get("mean") or 0.0, stats.get("std") or 0.0
    writer.add_histogram_raw(tag, min=-top, max=top, num=n, sum=mean * n, sum_squares=(std ** 2 + mean ** 2) * n,
                             bucket_limits=limits, bucket_counts=counts, global_step=step)
