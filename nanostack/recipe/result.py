"""CheckResult, the registry of checks (`@check`), and their thresholds.

A check is a function of a DoctorContext that returns a CheckResult: PASS, WARN, FAIL, or SKIP
(the check does not apply: no tanh layer to saturate, no run to read, --quick). Each is registered
with its id, its stage (init: one forward and backward at initialization; train: needs training
steps; run: reads a run's files), what it costs, its default thresholds, the source of those
thresholds, and the hint that says what to change when it fails. `--quick` runs every stage but train. A preset's [doctor] table may
override any threshold:

    [doctor.saturation]
    pass = 0.3
"""
from dataclasses import asdict, dataclass, field

from nanostack.errors import UserError

STATUSES = ("PASS", "WARN", "FAIL", "SKIP")
STAGES = ("init", "train", "probes", "run")  # probes: reads a run's probes, trains only without them


@dataclass
class CheckResult:
    id: str
    status: str
    value: object = None       # the measured figure (a number, or None)
    threshold: str = ""        # what passes, in words: "= 1.0", "3.21 .. 4.27"
    source: str = ""           # where the threshold comes from
    hint: str = ""             # what to change when it does not pass
    detail: str = ""           # the measurement in words: "future grad 430"
    seconds: float = 0.0
    data: dict = field(default_factory=dict)  # what the report shows beside it (a curve, a decoded batch)

    def line(self) -> str:
        """One line: `FAIL causality  future grad 430 (want 0) → hint`."""
        text = f"{self.status:<4} {self.id:<16} {self.detail or format_value(self.value)}"
        if self.threshold and self.status != "SKIP":
            text += f" (want {self.threshold})"
        if self.status in ("WARN", "FAIL") and self.hint:
            text += f" → {self.hint}"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Check:
    id: str
    run: object             # the function: DoctorContext -> CheckResult
    stage: str
    cost: str
    thresholds: dict
    source: str
    hint: str


CHECKS = {}  # id -> Check, in the order a doctor runs and prints them


def check(id: str, stage: str = "init", cost: str = "", thresholds=None, source: str = "", hint: str = ""):
    """Register a check function under `id`."""
    assert stage in STAGES, stage

    def register(fn):
        CHECKS[id] = Check(id, fn, stage, cost, dict(thresholds or {}), source, hint)
        return fn

    return register


def finish(result: CheckResult, spec: Check) -> CheckResult:
    """The result with its id, and the registered source and hint where the check left them empty."""
    result.id = spec.id
    result.source = result.source or spec.source
    result.hint = result.hint or spec.hint
    return result


def thresholds_with(overrides: dict, where: str) -> dict:
    """{check id: thresholds}: the defaults, with a [doctor] table's overrides checked and applied."""
    table = {cid: dict(spec.thresholds) for cid, spec in CHECKS.items()}
    if not isinstance(overrides, dict):
        raise UserError(f"[doctor] in {where} must be a table of check ids", "write [doctor.CHECK_ID] tables")
    for cid, values in overrides.items():
        if cid not in CHECKS:
            raise UserError(f"[doctor] in {where} names an unknown check {cid!r}",
                            f"use one of: {', '.join(CHECKS)}")
        if not isinstance(values, dict):
            raise UserError(f"[doctor] {cid} in {where} must be a table of thresholds",
                            f"write [doctor.{cid}] with keys {', '.join(CHECKS[cid].thresholds) or '(none)'}")
        for key, value in values.items():
            if key not in table[cid]:
                raise UserError(f"[doctor.{cid}] in {where} has an unknown threshold {key!r}",
                                f"its thresholds are: {', '.join(CHECKS[cid].thresholds) or '(none)'}")
            default = table[cid][key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"[doctor.{cid}] {key} in {where} must be a number, got {value!r}",
                                f"write e.g. {key} = {default}")
            table[cid][key] = type(default)(value) if isinstance(default, int) and float(value).is_integer() \
                else float(value)
    return table


def parse_ids(text, flag: str) -> list:
    """Check ids from a comma-separated --only or --skip value; unknown ones are an error."""
    if text is None:
        return []
    ids = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [i for i in ids if i not in CHECKS]
    if unknown or not ids:
        import difflib  # noqa: PLC0415

        close = difflib.get_close_matches(unknown[0], CHECKS, n=1) if unknown else []
        hint = f"did you mean {close[0]!r}?" if close else f"the checks are: {', '.join(CHECKS)}"
        raise UserError(f"{flag} names an unknown check {unknown[0] if unknown else text!r}", hint)
    return ids
