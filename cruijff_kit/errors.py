"""User-facing errors: one line each (FILE: key.path: what is wrong; the fix), never a traceback.

Validation collects every problem first (like `tune validate`), then reports them all at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One problem in one place. `where` is a file, `path` a key path such as runs[3].model."""

    where: str
    path: str
    message: str
    hint: str = ""
    level: str = "error"  # "error" | "warning"

    def line(self) -> str:
        parts = [p for p in (self.where, self.path) if p]
        text = ": ".join(parts + [self.message]) if parts else self.message
        if self.hint:
            text += f"; {self.hint}"
        if not text.isprintable():  # one line, whatever the input held (a newline in a key, a NUL, ...)
            text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        return text if self.level == "error" else f"warning: {text}"

    def as_dict(self) -> dict:
        return {"file": self.where, "path": self.path, "message": self.message,
                "hint": self.hint, "level": self.level, "line": self.line()}


class UserError(Exception):
    """A mistake the user can fix. The CLI prints `line()` (plus any further lines) and exits 2."""

    exit_code = 2

    def __init__(self, message: str, *, where: str = "", path: str = "", hint: str = ""):
        self.problems = [Problem(where, path, message, hint)]
        super().__init__(self.problems[0].line())

    def lines(self) -> list[str]:
        return [p.line() for p in self.problems]


class ValidationFailed(UserError):
    """Several problems found while validating one input; errors and warnings both kept."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        errors = [p for p in self.problems if p.level == "error"]
        Exception.__init__(self, errors[0].line() if errors else "validation failed")


@dataclass
class ProblemList:
    """Collector used by validators: add problems, then `raise_if_errors()` once at the end."""

    where: str
    problems: list[Problem] = field(default_factory=list)

    def error(self, path: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.where, path, message, hint, "error"))

    def warn(self, path: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.where, path, message, hint, "warning"))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ValidationFailed(self.problems)


def closest(word: str, candidates) -> str:
    """'; did you mean X?' for a misspelt key or value, or '' when nothing is close."""
    import difflib

    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"did you mean {match[0]}?" if match else ""
