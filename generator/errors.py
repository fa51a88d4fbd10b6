"""Problems found in user input, reported as `path:line: message` lines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    path: str
    message: str
    line: int | None = None
    hint: str = ""
    severity: str = "error"  # "error" or "warning"

    def format(self) -> str:
        """Return the one-line form editors turn into a link: `path:line: message (hint)`."""
        where = f"{self.path}:{self.line}" if self.line else self.path
        prefix = "warning: " if self.severity == "warning" else ""
        text = f"{where}: {prefix}{self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    @property
    def sort_key(self) -> tuple:
        return (self.path, self.line or 0, self.message)


class DigestError(Exception):
    """A user-facing error: bad content or config. Never shown with a traceback."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(path="digest", message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = sorted(problems, key=lambda p: p.sort_key)
        super().__init__("\n".join(p.format() for p in self.problems))


class ReaderError(DigestError):
    """A reader could not make sense of a file (or part of one)."""

    def __init__(self, path: str, message: str, line: int | None = None, hint: str = ""):
        super().__init__(Problem(path=path, message=message, line=line, hint=hint))
