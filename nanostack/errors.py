"""What ends a command early: UserError (a mistake the user can fix; the CLI prints it as one line and
exits 2) and Interrupted (Ctrl-C, after a checkpoint was saved; exit 130)."""
from pathlib import Path


class UserError(Exception):
    """What is wrong (message) and what to do about it (hint)."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class Interrupted(Exception):
    """Ctrl-C stopped training after a checkpoint was saved at `step`."""

    def __init__(self, step: int, run_dir: Path):
        super().__init__(f"interrupted at step {step}")
        self.step, self.run_dir = step, run_dir
