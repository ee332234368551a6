"""UserError: a mistake the user can fix. The CLI prints it as one line and exits 2."""


class UserError(Exception):
    """What is wrong (message) and what to do about it (hint)."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message
