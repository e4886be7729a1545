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


# Names people carry over from other tools and from upstream cruijff_kit: suggested when the new name is a
# candidate where the old one was written. Spelling is left to difflib.
RENAMES = {
    "learning_rate": "lr", "directory": "dir", "scorer": "scorers", "label": "dataset_label",
    "max_seq_length": "max_seq_len", "num_epochs": "epochs", "torchtune_model_name": "model_name",
    "cpus_per_task": "cpus", "base_recipe": "custom_recipe", "gpus_per_node": "gpus", "memory": "mem",
    "rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout", "warmup_steps": "num_warmup_steps",
    "grad_accum": "gradient_accumulation_steps", "gradient_accumulation": "gradient_accumulation_steps",
}
# multi-word keys share letters by chance: 0.6 (difflib's default) offered project_dir -> objective and
# model_checkpoint -> model_component; single words (model names, values) keep 0.6 (Llama-9B -> Llama-3.2-1B)
CLOSE_ENOUGH = {True: 0.75, False: 0.6}


def closest(word: str, candidates) -> str:
    """'did you mean X?' for a misspelt key or value (or a known rename), or '' when nothing is close."""
    import difflib

    names = [str(c) for c in candidates]
    renamed = RENAMES.get(str(word))
    if renamed in names:
        return f"did you mean {renamed}?"
    match = difflib.get_close_matches(str(word), names, n=1, cutoff=CLOSE_ENOUGH["_" in str(word)])
    return f"did you mean {match[0]}?" if match else ""
