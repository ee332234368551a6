"""The recipe layer: Karpathy's "A Recipe for Training Neural Networks" and makemore part 3's
diagnostics as a tool. `nanostack doctor` runs the checks (checks_init.py, checks_train.py,
health.py) on a config or a run folder; the trainer's probes (nanostack.train.probes) record
activations, gradients and updates while a run trains; report.py draws them (plots.py) into one
self-contained doctor.html with report.json beside it. Reads runs through nanostack.run; imports
data, models, loss and train, and nothing above it."""
from nanostack.recipe.context import DoctorContext
from nanostack.recipe.doctor import Doctor, exit_code
from nanostack.recipe.report import render_report
from nanostack.recipe.result import CHECKS, CheckResult, check
from nanostack.train.probes import Probe

__all__ = ["CHECKS", "CheckResult", "Doctor", "DoctorContext", "Probe", "check", "exit_code", "render_report"]
