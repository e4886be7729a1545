"""Train and validation loss per step of one run, from torchtune's DiskLogger files.

    cruijff-kit losses RUN_DIR_OR_OUTPUT_DIR [--csv FILE] [--json FILE]

RUN_DIR is a run directory of an experiment (it holds finetune.yaml, whose `output_dir` names the
training outputs); OUTPUT_DIR is that output directory itself (or its logs/ folder).

torchtune's DiskLogger writes `output_dir/logs/log_<unix time>.txt`, one line per logged step:

    Step 12 | loss:2.3104 lr:0.0003 tokens_per_second_per_gpu:812.4
    Step 10 | val_loss:2.4471

(cruijff_kit's recipe logs `val_loss` on the same step counter). A resumed job starts a new file that
continues the step counter; a file starting again at step 0/1 is a fresh start and replaces older files.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.experiment import layout

LOGS_DIR = layout.LOGS
CONFIG_FILE = layout.FINETUNE_CONFIG
STEP_LINE = re.compile(r"^\s*Step\s+(-?\d+)\s*\|\s*(.*?)\s*$")
FILE_TIME = re.compile(r"(\d+)")
# overfitting: the last val loss exceeds the best by more than max(REL * best, ABS)
OVERFIT_REL, OVERFIT_ABS = 0.05, 0.01


def _number(text: str) -> float | None:
    text = text.strip().rstrip(",")
    if text.startswith("tensor(") and text.endswith(")"):  # a tensor logged without .item()
        text = text[len("tensor("):-1].split(",")[0]
    try:
        return float(text)
    except ValueError:
        return None


def parse_log_text(text: str) -> dict[int, dict[str, float]]:
    """{step: {metric: value}} from DiskLogger text; lines that are not `Step N | k:v ...` are skipped."""
    steps: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        m = STEP_LINE.match(line)
        if not m:
            continue
        values = steps.setdefault(int(m.group(1)), {})
        for token in m.group(2).split():
            key, sep, raw = token.partition(":")
            value = _number(raw) if sep and key else None
            if value is not None:
                values[key] = value
    return {step: values for step, values in steps.items() if values}


def _file_order(path: Path) -> tuple:
    m = FILE_TIME.search(path.stem)
    return (int(m.group(1)) if m else 0, path.stat().st_mtime, path.name)


@dataclass
class LossCurve:
    """Every metric per step of one run, merged over its DiskLogger files."""

    output_dir: Path
    files: list[Path] = field(default_factory=list)
    steps: dict[int, dict[str, float]] = field(default_factory=dict)

    def series(self, metric: str) -> list[tuple[int, float]]:
        return [(s, v[metric]) for s, v in sorted(self.steps.items()) if metric in v and not math.isnan(v[metric])]

    @property
    def train(self) -> list[tuple[int, float]]:
        return self.series("loss")

    @property
    def val(self) -> list[tuple[int, float]]:
        return self.series("val_loss")

    @staticmethod
    def final(points: list[tuple[int, float]]) -> tuple[int, float] | None:
        return points[-1] if points else None

    @staticmethod
    def best(points: list[tuple[int, float]]) -> tuple[int, float] | None:
        return min(points, key=lambda p: (p[1], p[0])) if points else None

    def overfitting(self, rel: float = OVERFIT_REL, abs_margin: float = OVERFIT_ABS) -> str:
        """A one-line finding when the last val loss rose above the best one by the margin, else ''."""
        val = self.val
        if len(val) < 2:
            return ""
        best, last = self.best(val), val[-1]
        if best[0] == last[0] or last[1] - best[1] <= max(rel * abs(best[1]), abs_margin):
            return ""
        return (f"val loss rose from {best[1]:.4f} (best, step {best[0]}) to {last[1]:.4f} "
                f"(last, step {last[0]})")

    def summary(self) -> dict:
        """final/best train and val loss with their steps (None where absent)."""
        out = {}
        for name, points in (("train", self.train), ("val", self.val)):
            final, best = self.final(points), self.best(points)
            out[f"final_{name}_loss"] = final[1] if final else None
            out[f"final_{name}_step"] = final[0] if final else None
            out[f"best_{name}_loss"] = best[1] if best else None
            out[f"best_{name}_step"] = best[0] if best else None
        out["steps"] = max(self.steps) if self.steps else 0
        return out

    def rows(self) -> list[dict]:
        """One row per step: step, train loss, val loss, lr (None where not logged at that step)."""
        def value(v: dict, key: str) -> float | None:
            x = v.get(key)
            return None if x is None or math.isnan(x) else x

        return [{"step": step, "loss": value(v, "loss"), "val_loss": value(v, "val_loss"), "lr": value(v, "lr")}
                for step, v in sorted(self.steps.items()) if "loss" in v or "val_loss" in v]


def log_files(output_dir: str | Path) -> list[Path]:
    """The DiskLogger files under output_dir/logs, oldest first."""
    logs = Path(output_dir) / LOGS_DIR
    if not logs.is_dir():
        return []
    return sorted((p for p in logs.glob("*.txt") if p.is_file()), key=_file_order)


def read_losses(output_dir: str | Path, *, required: bool = True) -> LossCurve | None:
    """The merged loss curve of one run's output dir; UserError (or None) when there are no logs."""
    output_dir = Path(output_dir)
    curve = LossCurve(output_dir)
    for path in log_files(output_dir):
        try:
            steps = parse_log_text(path.read_text(errors="replace"))
        except OSError:
            continue
        if not steps:
            continue
        if min(steps) <= 1:  # a fresh start (not a resume): older files belong to an earlier attempt
            curve.steps = {}
            curve.files = []
        for step, values in steps.items():
            curve.steps.setdefault(step, {}).update(values)
        curve.files.append(path)
    if curve.steps:
        return curve
    if not required:
        return None
    where = output_dir / LOGS_DIR
    state = "holds no `Step N | loss:...` lines" if where.is_dir() else "does not exist"
    raise UserError(f"no training logs: {where} {state}", where=str(output_dir),
                    hint="has the training job started? check `cruijff-kit status`; the run's "
                         "finetune.yaml must log with torchtune's DiskLogger to ${output_dir}/logs")


def output_dir_from_config(config: Path) -> Path:
    """`output_dir` of a finetune.yaml, relative paths taken from the run dir (where the job runs)."""
    from cruijff_kit.files import yaml_load

    try:
        data = yaml_load(config.read_text())
    except Exception as exc:  # noqa: BLE001 - any YAML problem is the user's file
        raise UserError(f"cannot read: {str(exc).splitlines()[0]}", where=str(config),
                        hint="re-render it with `cruijff-kit scaffold`") from None
    value = data.get("output_dir") if isinstance(data, dict) else None
    if not value or not isinstance(value, str) or "${" in value:
        raise UserError("no usable output_dir", where=str(config), path="output_dir",
                        hint="set output_dir to the run's output directory (re-scaffold to restore it)")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (config.parent / path).resolve()


def resolve_output_dir(path: str | Path) -> Path:
    """A run dir (with finetune.yaml), an output dir, or an output dir's logs/ -> the output dir."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError("no such directory", where=str(path),
                        hint="pass a run directory (holding finetune.yaml) or its output directory")
    if path.is_file():
        if path.name == CONFIG_FILE:
            return output_dir_from_config(path)
        return path.parent.parent if path.parent.name == LOGS_DIR else path.parent
    if (path / CONFIG_FILE).is_file():
        return output_dir_from_config(path / CONFIG_FILE)
    if path.name == LOGS_DIR and not (path / LOGS_DIR).is_dir():
        return path.parent
    return path


# -- exports ---------------------------------------------------------------------------------------
def fmt(value, digits: int = 4) -> str:
    """A number for tables: '-' for missing, %.{digits}g for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def csv_cell(value) -> str:
    """One CSV field (RFC 4180 quoting; None -> empty; floats in full precision)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    text = str(value)
    if any(c in text for c in ',"\n\r') or text != text.strip():
        text = '"' + text.replace('"', '""') + '"'
    return text


def export(curve: LossCurve, *, csv: str | None = None, json: str | None = None) -> list[Path]:
    from cruijff_kit.files import atomic_write
    from cruijff_kit.render import render

    columns = ["step", "loss", "val_loss", "lr"]
    rows = curve.rows()
    written = []
    if csv:
        text = render("summary/table.csv.j2", header=columns,
                      rows=[[csv_cell(r[c]) for c in columns] for r in rows])
        written.append(atomic_write(csv, text))
    if json:
        text = render("summary/losses.json.j2", output_dir=str(curve.output_dir),
                      files=[str(f) for f in curve.files], summary=curve.summary(),
                      overfitting=curve.overfitting(), rows=rows)
        written.append(atomic_write(json, text))
    return written


# -- verb ------------------------------------------------------------------------------------------
def configure(parser) -> None:
    parser.add_argument("path", metavar="RUN_DIR_OR_OUTPUT_DIR",
                        help="a run directory (holding finetune.yaml) or the run's output directory")
    parser.add_argument("--csv", metavar="FILE", help="also write step,loss,val_loss,lr as CSV")
    parser.add_argument("--json", metavar="FILE", help="also write the steps and a summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="print only the summary, not every step")


def main(args) -> int:
    output_dir = resolve_output_dir(args.path)
    curve = read_losses(output_dir)
    if not args.quiet:
        print(f"{'step':>7}  {'train loss':>10}  {'val loss':>10}  {'lr':>10}")
        for row in curve.rows():
            print(f"{row['step']:>7}  {fmt(row['loss']):>10}  {fmt(row['val_loss']):>10}  {fmt(row['lr']):>10}")
    s = curve.summary()
    print(f"{output_dir}: {len(curve.train)} train / {len(curve.val)} val points from "
          f"{len(curve.files)} log file(s)")
    print(f"train loss: final {fmt(s['final_train_loss'])} (step {fmt(s['final_train_step'])}), "
          f"best {fmt(s['best_train_loss'])} (step {fmt(s['best_train_step'])})")
    if curve.val:
        print(f"val loss:   final {fmt(s['final_val_loss'])} (step {fmt(s['final_val_step'])}), "
              f"best {fmt(s['best_val_loss'])} (step {fmt(s['best_val_step'])})")
    else:
        print("val loss:   none logged (validation off, or not reached yet)")
    finding = curve.overfitting()
    if finding:
        print(f"warning: possible overfitting: {finding}")
    for path in export(curve, csv=args.csv, json=args.json):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("losses")
