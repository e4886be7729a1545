"""The reliability figures of issue 18, measured again: hostile inputs and a schema fuzz run through the CLI.

1. Hostile set: every case of tests/hostile_cases.py (the lists the tests use) through the real CLI, each
   in its own `python -m cruijff_kit` process. Clean = exit 2, no traceback, and the first error line
   names the file (and the key path / what is wrong, with a `; fix`) as the case expects; a case that is
   accepted, hangs past the timeout or prints a traceback is not clean.
2. Fuzz: N designs drawn from our JSON Schema (tests/test_fuzz.py's strategies: whole designs, and a valid
   design with one section drawn) through the CLI's entry point (`cruijff_kit.cli.main`, in one process
   for speed: an exception escaping it is the traceback a user would see): `validate`, then, for designs
   validate accepts, `scaffold --dry-run`.

Prints: hostile clean/total and tracebacks/total; fuzz tracebacks/total and
validate-valid-but-scaffold-fails/total (split: failures that need a file the design names, e.g. a task
script, and failures that need none, which validate should have caught).

  python benchmarks/hostile_figures.py [--fuzz 1000] [--no-hostile] [--json OUT]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import yaml  # noqa: E402
from conftest_scaffold import small_design, write_design  # noqa: E402
from hostile_cases import (  # noqa: E402
    BAD_DATA_FILES, BAD_TASK_SCRIPTS, DANGEROUS_DIRS, HOSTILE, JOBS_DAMAGED, LATE, SCAFFOLD_TOO, SETTINGS_NOT_UTF8,
    SETTINGS_TEXTS, STATE_DAMAGED, YAML_HOSTILE, write_bad_file, yaml_bytes,
)

TIMEOUT = 60


class Env:
    """A scratch dir and an empty claude.local.md, like the tests' `scratch` fixture."""

    def __init__(self, root: Path):
        self.root = root
        (root / "scratch").mkdir(parents=True, exist_ok=True)
        (root / "claude.local.md").write_text("# hostile figures\n")
        self.vars = {**os.environ, "CK_SCRATCH": str(root / "scratch"), "CK_SETTINGS": str(root / "claude.local.md"),
                     "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}

    def ck(self, *args, env=None):
        try:
            return subprocess.run([sys.executable, "-m", "cruijff_kit", *map(str, args)], capture_output=True,
                                  text=True, timeout=TIMEOUT, env={**self.vars, **(env or {})}, cwd=self.root)
        except subprocess.TimeoutExpired:
            return None


def verdict(proc, must: str = "", prefix: str = "") -> str:
    """'clean' | 'traceback' | 'hang' | 'accepted' | 'unclear' (exit 2 but the first line misses what it must say)."""
    if proc is None:
        return "hang"
    if "Traceback" in proc.stderr:
        return "traceback"
    if proc.returncode != 2:
        return "accepted" if proc.returncode == 0 else "traceback"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("[", "warning:"))]
    first = lines[0] if lines else ""
    good = first.startswith(prefix) and "; " in first and (must in first or any(must in ln for ln in lines))
    return "clean" if good else "unclear"


def hostile_cases(work: Path):
    """(group, name, verdict) for every hostile case."""
    for name, fn, where in HOSTILE:
        env = Env(work / "design" / name)
        design = small_design(env.root)
        fn(design)
        path = write_design(env.root, design)
        verbs = ("validate", "scaffold") if name in SCAFFOLD_TOO else ("validate",)
        results = [verdict(env.ck(verb, path), where, f"{path}: ") for verb in verbs]
        yield "design", name, next((r for r in results if r != "clean"), "clean")
    for name, fn, expected in LATE:
        env = Env(work / "late" / name)
        design = small_design(env.root)
        fn(design)
        path = write_design(env.root, design)
        yield "late", name, verdict(env.ck("validate", path), f"{path}: {expected}", f"{path}: ")
    for i, text in enumerate([*SETTINGS_TEXTS, SETTINGS_NOT_UTF8]):
        env = Env(work / "settings" / str(i))
        settings = env.root / "bad.local.md"
        settings.write_bytes(text if isinstance(text, bytes) else text.encode())
        yield "settings", repr(text)[:40], verdict(env.ck("config", "show", env={"CK_SETTINGS": str(settings)}),
                                                   "", str(settings))
    for i, target in enumerate(DANGEROUS_DIRS):
        env = Env(work / "dirs" / str(i))
        home = env.root / "home"
        home.mkdir()
        (env.root / "a_file").write_text("not a folder\n")
        (env.root / "busy").mkdir()
        (env.root / "busy" / "thesis.tex").write_text("precious\n")
        design = small_design(env.root)
        design["experiment"]["dir"] = str(home) if target == "~" else target
        path = write_design(env.root, design)
        yield "dir", target, verdict(env.ck("scaffold", path, env={"HOME": str(home)}), "experiment.dir", f"{path}: ")
    for group, kinds, rel, verb in (("task-script", BAD_TASK_SCRIPTS, "numbers_task.py", ("scaffold",)),
                                    ("data-file", BAD_DATA_FILES, "data/numbers.json", ("design", "verify"))):
        for kind in kinds:
            env = Env(work / group / kind)
            path = write_design(env.root, small_design(env.root))
            write_bad_file(env.root / rel, kind)
            must = "verify_dataset numbers.json" if verb[0] == "design" else Path(rel).name
            yield group, kind, verdict(env.ck(*verb, path, *(["--no-log"] if verb[0] == "design" else [])), must)
    for name, (text, message) in YAML_HOSTILE.items():
        env = Env(work / "yaml" / name)
        path = env.root / "experiment_summary.yaml"
        path.write_bytes(yaml_bytes(text))
        yield "yaml", name, verdict(env.ck("validate", path), message, str(path))
    yield from _state_cases(work)


def _state_cases(work: Path):
    from run_fixtures import Fake, build, marker

    def experiment(root: Path) -> Path:
        (root / "marks").mkdir(parents=True)
        return build(root / "exp", [Fake("a.train", marker(root / "marks", "a.train", 0.1)),
                                    Fake("a.eval.task_epoch0", marker(root / "marks", "a.eval", 0.1),
                                         after=["a.train"])])

    for name, (content, message) in STATE_DAMAGED.items():
        env = Env(work / "state" / name.replace(" ", "_"))
        exp = experiment(env.root)
        (exp / ".ck").mkdir(exist_ok=True)
        (exp / ".ck" / "state.json").write_bytes(content)
        for verb in ("status", "run"):
            yield "state.json", f"{name} ({verb})", verdict(env.ck(verb, exp), message, "")
    for i, content in enumerate(JOBS_DAMAGED):
        env = Env(work / "jobs" / str(i))
        exp = experiment(env.root)
        (exp / "jobs.json").write_bytes(content)
        yield "jobs.json", repr(content)[:30], verdict(env.ck("status", exp), "jobs.json", "")


def run_hostile(work: Path) -> dict:
    rows = []
    for group, name, result in hostile_cases(work):
        rows.append({"group": group, "case": name, "verdict": result})
        if result != "clean":
            print(f"  not clean: {group} {name}: {result}", flush=True)
    total = len(rows)
    clean = sum(r["verdict"] == "clean" for r in rows)
    tracebacks = sum(r["verdict"] == "traceback" for r in rows)
    print(f"[hostile] clean {clean}/{total}, tracebacks {tracebacks}/{total}, "
          f"other {total - clean - tracebacks}/{total}", flush=True)
    return {"total": total, "clean": clean, "tracebacks": tracebacks, "rows": rows}


# -- fuzz ------------------------------------------------------------------------------------------
def _cli(argv: list[str]) -> tuple[int | None, str, str]:
    """cruijff_kit.cli.main in this process; (None, '', traceback) when an exception escapes it."""
    import traceback

    from cruijff_kit.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    except Exception:  # noqa: BLE001 (the one thing never allowed)
        return None, out.getvalue(), traceback.format_exc()
    return code, out.getvalue(), err.getvalue()


def fuzz_one(design: dict, folder: Path) -> tuple[str, str]:
    from cruijff_kit.errors import UserError
    from cruijff_kit.scaffold.scaffold import scaffold
    from cruijff_kit.settings import load_settings
    from cruijff_kit.workers.check import needs_file

    path = folder / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False, allow_unicode=True))
    code, _, err = _cli(["validate", str(path)])
    if code is None:
        return "traceback", err.strip().splitlines()[-1]
    if code != 0:
        multi = [ln for ln in err.splitlines() if ln and not ln.startswith(str(path)) and not ln.startswith("warning")]
        return ("invalid", "") if not multi else ("invalid-unclear", multi[0])
    code, _, err = _cli(["scaffold", str(path), "--dry-run"])
    if code is None:
        return "traceback", err.strip().splitlines()[-1]
    if code == 0:
        return "valid+scaffold", ""
    try:  # which problems: ones that need a file the design names, or ones validate could have seen
        scaffold(path, settings=load_settings(), dry_run=True, log=False, quiet=True)
    except UserError as exc:
        errors = [p for p in exc.problems if p.level == "error"]
        if errors and all(needs_file(p) for p in errors):
            return "valid+needs-file", errors[0].line()
        return "gap", (errors[0].line() if errors else exc.lines()[0])
    return "gap", err.strip().splitlines()[0] if err.strip() else "scaffold exit without error"


def run_fuzz(n: int, work: Path) -> dict:
    from hypothesis import HealthCheck, given, settings as hsettings
    from test_fuzz import DESIGNS, build

    env = Env(work / "fuzz")
    os.environ.update({k: env.vars[k] for k in ("CK_SCRATCH", "CK_SETTINGS", "HF_HUB_OFFLINE")})
    counts: dict[str, int] = {}
    samples: dict[str, list[str]] = {}

    @hsettings(max_examples=n, deadline=None, database=None, derandomize=True,
               suppress_health_check=list(HealthCheck))
    @given(DESIGNS)
    def draw(drawn):
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            try:
                design = build(drawn, Path(tmp))
            except Exception as exc:  # noqa: BLE001 (a fixture problem, not the CLI's)
                key, line = "build-error", repr(exc)
            else:
                key, line = fuzz_one(design, Path(tmp))
        counts[key] = counts.get(key, 0) + 1
        if line and len(samples.setdefault(key, [])) < 5:
            samples[key].append(line[:200])

    start = time.perf_counter()
    draw()
    total = sum(counts.values())
    valid = sum(v for k, v in counts.items() if k.startswith("valid") or k == "gap")
    fails = counts.get("valid+needs-file", 0) + counts.get("gap", 0)
    print(f"[fuzz] {total} designs in {time.perf_counter() - start:.0f} s: {dict(sorted(counts.items()))}")
    print(f"[fuzz] clean {total - counts.get('traceback', 0)}/{total}, tracebacks {counts.get('traceback', 0)}/{total}, "
          f"validate-valid-but-scaffold-fails {fails}/{total} (of {valid} validate-valid; needing no file: "
          f"{counts.get('gap', 0)})", flush=True)
    for key, lines in samples.items():
        for line in lines:
            print(f"  {key}: {line}")
    return {"total": total, "counts": counts, "valid": valid, "scaffold_fails": fails, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=1000, help="designs to draw (0: no fuzz run)")
    parser.add_argument("--no-hostile", action="store_true", help="skip the hostile set")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory(prefix="ck-hostile-") as tmp:
        if not args.no_hostile:
            report["hostile"] = run_hostile(Path(tmp))
        if args.fuzz:
            report["fuzz"] = run_fuzz(args.fuzz, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
