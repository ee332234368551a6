"""Doctor: run the checks on a context, one by one, and say what they found.

Each check runs with the random state saved and restored around it (the checks draw nothing from
the caller's streams), and its time is measured. A check that raises is reported as a FAIL naming
the exception (a model the checks cannot run is itself a finding); a UserError stops the doctor.
Exit codes: 0 when nothing FAILs (WARNs count only with strict), 1 on a FAIL.
"""
import random
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from nanostack.errors import UserError
from nanostack.recipe import checks_init, checks_train, health  # noqa: F401  (they register the checks)
from nanostack.recipe.context import DoctorContext
from nanostack.recipe.result import CHECKS, CheckResult, finish, thresholds_with


class Doctor:
    def __init__(self, ctx: DoctorContext):
        self.ctx = ctx

    @classmethod
    def from_config(cls, cfg, preset=None, log=None) -> "Doctor":
        """A doctor for a TrainConfig before training (thresholds from preset's [doctor] table, if any)."""
        kwargs = {"log": log} if log else {}
        return cls(DoctorContext.from_config(cfg, thresholds=doctor_thresholds(preset), **kwargs))

    @classmethod
    def from_run(cls, run_dir, preset=None, log=None) -> "Doctor":
        kwargs = {"log": log} if log else {}
        return cls(DoctorContext.from_run(run_dir, thresholds=doctor_thresholds(preset), **kwargs))

    def run(self, only=None, skip=(), quick=False, progress=None) -> list:
        """[CheckResult] of every registered check (or only those in `only`), minus `skip`; with quick, the
        checks that need training steps are reported as SKIP."""
        self.ctx.quick = quick
        results = []
        for cid, spec in CHECKS.items():
            if (only and cid not in only) or cid in skip:
                continue
            if quick and spec.stage == "train":
                result = CheckResult(cid, "SKIP", detail=f"needs training steps ({spec.cost}); --quick skips it")
            else:
                t0 = time.perf_counter()
                with preserved_random_state():
                    try:
                        result = spec.run(self.ctx)
                    except UserError:
                        raise
                    except Exception as e:  # noqa: BLE001  (a model the check cannot run is a finding)
                        result = CheckResult(cid, "FAIL", detail=f"the check could not run: {type(e).__name__}: {e}")
                result.seconds = time.perf_counter() - t0
            results.append(finish(result, spec))
            if progress is not None:
                progress(results[-1])
        return results


def exit_code(results, strict: bool = False) -> int:
    bad = ("FAIL", "WARN") if strict else ("FAIL",)
    return 1 if any(r.status in bad for r in results) else 0


def summary_line(results) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "WARN", "FAIL", "SKIP")}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" in {sum(r.seconds for r in results):.1f}s"


@contextmanager
def preserved_random_state():
    """Every random stream a check may draw from, as it was before the check."""
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def doctor_thresholds(preset) -> dict:
    """The thresholds, with the [doctor] table of preset (a preset name or TOML file) applied."""
    if not preset:
        return thresholds_with({}, "defaults")
    from nanostack.run.config import PRESETS_DIR  # noqa: PLC0415

    path = Path(preset)
    if not path.is_file():
        path = PRESETS_DIR / f"{preset}.toml"
    if not path.is_file():
        return thresholds_with({}, "defaults")  # load_preset names the problem when the config is read
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("doctor", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"config {path} is not valid TOML ({e})", "fix the file") from None
    return thresholds_with(table, str(path))
