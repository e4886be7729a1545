"""Write a ready inspect-ai @task file for a cruijff_kit JSON dataset.

    cruijff-kit task new NAME --dataset FILE.json [--split validation] [--prompt "Q: {input}"]
        [--system-prompt "..."] [--scorer match:location=exact] [--scorer numeric:tolerance=0] [--out DIR]

writes DIR/NAME_task.py defining `@task def NAME(data_path, split, prompt, system_prompt, limit)`: each
example's input, formatted with the same prompt template and system prompt as training, is the
question and its output the target. The file is never overwritten without --force. Scorers:
match, includes, exact, f1, pattern, numeric; parameters as NAME:key=value,key=value.
"""
from __future__ import annotations

import keyword
import shlex
from pathlib import Path

from cruijff_kit.errors import ProblemList, UserError

DEFAULT_SCORERS = [{"name": "match", "params": {"location": "exact"}}]
SPLITS = ("train", "validation", "test")


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = sub.add_parser("new", help="write NAME_task.py for a JSON dataset ({train, validation, test})",
                         description=__doc__, formatter_class=parser.formatter_class)
    new.add_argument("name", help="task (and function) name: a Python identifier, e.g. capitals")
    new.add_argument("--dataset", required=True, help="the JSON data file ({\"validation\": [{input, output}]})")
    new.add_argument("--split", default="validation", choices=SPLITS, help="split to evaluate (default validation)")
    new.add_argument("--prompt", default="{input}", help="prompt template used in training (default {input})")
    new.add_argument("--system-prompt", default="", help="system prompt used in training (default none)")
    new.add_argument("--scorer", action="append", default=None, metavar="NAME[:k=v,...]",
                     help="scorer, repeatable (default match:location=exact)")
    new.add_argument("--out", default=".", help="directory for the file (default: current directory)")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.add_argument("--dry-run", action="store_true", help="print the file instead of writing it")


def parse_scorer(text: str) -> dict:
    """'match:location=exact,ignore_case=false' -> {name: match, params: {location: exact, ...}}."""
    from cruijff_kit.files import yaml_load

    name, _, rest = text.partition(":")
    params = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"'{item}' is not key=value", where="--scorer", path=name,
                            hint="write e.g. --scorer match:location=exact,ignore_case=false")
        params[key.strip()] = yaml_load(value.strip()) if value.strip() else ""
    return {"name": name.strip(), "params": params}


def check_inputs(args, problems: ProblemList) -> tuple[Path, list[dict]]:
    from cruijff_kit.workers.inspect.evaluator import dataset_splits, scorer_problems

    if not args.name.isidentifier() or keyword.iskeyword(args.name):
        problems.error("NAME", f"'{args.name}' is not a Python function name",
                       "use letters, digits and underscores, not starting with a digit (e.g. next_value)")
    if "{input}" not in args.prompt:
        problems.error("--prompt", "the prompt template has no {input} placeholder",
                       "add {input} where the example's input goes")
    dataset = Path(args.dataset).expanduser().resolve()
    if not dataset.is_file():
        problems.error("--dataset", f"dataset not found: {dataset}", "give the path of the JSON data file")
    else:
        splits = dataset_splits(str(dataset), dataset.stat().st_mtime)
        if isinstance(splits, str):
            problems.error("--dataset", f"{dataset}: {splits}", "fix the data file")
        elif args.split not in splits:
            problems.error("--split", f"{dataset} has no split '{args.split}' (splits: {', '.join(splits) or 'none'})",
                           f"use --split {next(iter(splits))}" if splits else "add the split to the file")
        elif splits[args.split] == 0:
            problems.error("--split", f"split '{args.split}' of {dataset} is empty", "add examples or pick another split")
        else:
            bad = _first_bad_record(dataset, args.split)
            if bad is not None:
                problems.error("--dataset", f"{dataset}: {args.split}[{bad}] needs 'input' and 'output'",
                               "every example is {\"input\": ..., \"output\": ...}")
    scorers = [parse_scorer(s) for s in args.scorer] if args.scorer else [dict(s) for s in DEFAULT_SCORERS]
    for i, spec in enumerate(scorers):
        for suffix, message, hint in scorer_problems(spec):
            problems.error(f"--scorer[{i}]{suffix}", message, hint)
    return dataset, scorers


def _first_bad_record(path: Path, split: str) -> int | None:
    import json

    records = json.loads(path.read_text())[split]
    return next((i for i, r in enumerate(records) if not (isinstance(r, dict) and {"input", "output"} <= set(r))),
                None)


def command_line(args, dataset: Path) -> str:
    """The command that (re)creates this file, as recorded in its docstring."""
    parts = ["cruijff-kit", "task", "new", args.name, "--dataset", str(dataset), "--split", args.split]
    if args.prompt != "{input}":
        parts += ["--prompt", args.prompt]
    if args.system_prompt:
        parts += ["--system-prompt", args.system_prompt]
    for spec in args.scorer or []:
        parts += ["--scorer", spec]
    return shlex.join(parts)


def new_task(args) -> int:
    from cruijff_kit.files import atomic_write
    from cruijff_kit.render import render

    problems = ProblemList("task new")
    dataset, scorers = check_inputs(args, problems)
    problems.raise_if_errors()
    out = Path(args.out).expanduser().resolve() / f"{args.name}_task.py"
    text = render("inspect/task.py.j2", name=args.name, dataset=str(dataset), dataset_name=dataset.name,
                  split=args.split, prompt=args.prompt, system_prompt=args.system_prompt, scorers=scorers,
                  filename=out.name, command=command_line(args, dataset))
    if args.dry_run:
        print(text, end="")
        return 0
    if out.exists() and not args.force:
        raise UserError(f"{out} already exists", where="task new", path="--out",
                        hint="pass --force to overwrite it or choose another --out / NAME")
    atomic_write(out, text)
    print(f"wrote {out}")
    print("add to the design's evaluation.tasks:")
    print(f"  - {{name: {args.name}, script: {out}, function: {args.name}, split: {args.split}}}")
    return 0


def main(args) -> int:
    if args.action == "new":
        return new_task(args)
    raise UserError(f"unknown action {args.action!r}", hint="use: cruijff-kit task new NAME --dataset FILE.json")


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("task")
