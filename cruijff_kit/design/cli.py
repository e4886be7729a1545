"""Design helpers the design-experiment skill calls; each step is logged to design-experiment.log.

  expand FILE    fill `runs` (and a default evaluation matrix) from variables x models
  verify FILE    check models, datasets, eval tasks and disk; log every check
  summary FILE   render experiment_summary.md (the human plan) into the experiment directory
  save DRAFT     after approval: write the drafted design into its experiment directory (absolute paths)
  files          where the schema, the example designs and the settings example are (plugin or clone)
"""
from __future__ import annotations

import sys
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.experiment import layout


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="{expand,verify,summary,save,files}", required=True)
    p = sub.add_parser("expand", help="fill runs from variables x models (names {model}_{param}{value})")
    p.add_argument("file", help="experiment_summary.yaml")
    p.add_argument("--controls", action="store_true", help="add a {model}_base control run per model")
    p.add_argument("--force", action="store_true",
                   help="re-expand a design that has runs: new runs get matrix rows, existing runs keep theirs")
    p.add_argument("--yes", action="store_true", help="allow more than 1,000 runs")
    p.add_argument("--dry-run", action="store_true", help="print the run names, write nothing")
    p = sub.add_parser("verify", help="check models, datasets, eval tasks and disk; log each check")
    p.add_argument("file", help="experiment_summary.yaml (or its directory)")
    p.add_argument("--profile", help="apply a profile from the design's `profiles:`")
    p.add_argument("--no-log", action="store_true", help="do not append to design-experiment.log")
    p.add_argument("--force", action="store_true",
                   help="log into a non-empty experiment dir cruijff_kit did not create")
    p = sub.add_parser("summary", help="render experiment_summary.md from the design")
    p.add_argument("file", help="experiment_summary.yaml (or its directory)")
    p.add_argument("--profile", help="apply a profile from the design's `profiles:`")
    p.add_argument("--out", help="where to write (default: the experiment directory)")
    p.add_argument("--priors", action="append", default=[], metavar="DIR",
                   help="another scratch dir with prior runs for the Compute Estimates (as `estimate --priors`)")
    p.add_argument("--dry-run", action="store_true", help="print the Markdown, write nothing")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty experiment dir cruijff_kit did not create")
    p = sub.add_parser("save", help="after approval: write the draft as {experiment_dir}/experiment_summary.yaml")
    p.add_argument("file", help="the drafted experiment_summary.yaml (outside the experiment directory)")
    p.add_argument("--force", action="store_true", help="replace a different design already saved there")
    p = sub.add_parser("files", help="print where the schema, example designs and settings example are")
    p.add_argument("--json", action="store_true", help="print a JSON object")


def main(args) -> int:
    return {"expand": expand_main, "verify": verify_main, "summary": summary_main,
            "save": save_main, "files": files_main}[args.action](args)


def save_main(args) -> int:
    from cruijff_kit.design.draft import absolutize
    from cruijff_kit.experiment.load import SUMMARY_FILE, load_experiment, read_yaml, resolve_design_path
    from cruijff_kit.files import atomic_write, yaml_dump

    draft = resolve_design_path(args.file)
    exp = load_experiment(draft)  # exits 2 with every problem of an invalid draft
    target = exp.dir / SUMMARY_FILE
    if target.resolve() == draft.resolve():
        print(f"{target}: already in the experiment directory")
        return 0
    text = yaml_dump(absolutize(read_yaml(draft), draft.parent.resolve()))
    if target.exists() and target.read_text() != text and not args.force:
        raise UserError("a different design is already saved there", where=str(target),
                        hint="pass --force to replace it, or choose another experiment name")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, text)
    print(f"wrote {target} ({len(exp.runs)} runs, {len(exp.cells())} eval cells)")
    return 0


# files a design session reads, relative to the pack root (a clone, or the installed plugin's copy)
PACK_FILES = {"example_sanity_check": f"sanity_checks/predictable_or_not/{layout.DESIGN}",
              "example_sweep": f"examples/lora_rank_sweep/{layout.DESIGN}",
              "example_staged": f"examples/sft_then_dpo/{layout.DESIGN}",
              "settings_example": "claude.local.md.example"}


def pack_root() -> Path | None:
    """$CLAUDE_PLUGIN_ROOT (an installed plugin), else the checkout the package was installed from."""
    import os

    import cruijff_kit

    for candidate in (os.environ.get("CLAUDE_PLUGIN_ROOT"), Path(cruijff_kit.__file__).resolve().parent.parent):
        if candidate and (Path(candidate) / PACK_FILES["settings_example"]).is_file():
            return Path(candidate).resolve()
    return None


def files_main(args) -> int:
    import json

    import cruijff_kit

    package = Path(cruijff_kit.__file__).resolve().parent
    root = pack_root()
    files = {"package": str(package), "schema": str(package / "experiment" / "schema.json"),
             "templates": str(package / "templates"), "pack_root": str(root) if root else None}
    files.update({key: str(root / rel) if root else None for key, rel in PACK_FILES.items()})
    if args.json:
        print(json.dumps(files, indent=2))
        return 0
    for key, value in files.items():
        print(f"  {key:<22} {value or '- (not found: set CLAUDE_PLUGIN_ROOT or install from a clone)'}")
    return 0


def expand_main(args) -> int:
    from cruijff_kit.errors import ValidationFailed
    from cruijff_kit.experiment.expand import REFUSE_ABOVE, WARN_ABOVE, changes, expand
    from cruijff_kit.experiment.load import check, read_yaml, resolve_design_path
    from cruijff_kit.files import atomic_write, yaml_dump

    path = resolve_design_path(args.file)
    data = read_yaml(path)
    if data.get("runs") and not args.force:
        raise UserError(f"runs already defined ({len(data['runs'])})", where=str(path), path="runs",
                        hint="pass --force to replace them with the expansion")
    expanded = expand(data, controls=args.controls)
    n = len(expanded["runs"])
    if n > REFUSE_ABOVE and not args.yes:
        raise UserError(f"the expansion has {n} runs (over {REFUSE_ABOVE})", where=str(path), path="variables",
                        hint="reduce the variables or pass --yes")
    if n > WARN_ABOVE:
        print(f"warning: {n} runs — a large sweep; check the compute estimate first", file=sys.stderr)
    problems = check(expanded, str(path))
    if problems.errors:
        raise ValidationFailed(problems.problems)
    diff = changes(data, expanded) if data.get("runs") else {"added": [], "kept": [], "removed": []}
    for run in expanded["runs"]:
        mark = "  (new)" if run["name"] in diff["added"] else ""
        print(f"  {run['name']}  ({run['type']}){mark}")
    for name in diff["removed"]:
        print(f"  {name}  (removed, with its evaluation.matrix rows)")
    if diff["kept"]:
        print(f"{len(diff['kept'])} existing runs kept as they were, with their evaluation.matrix rows")
    if args.dry_run:
        print(f"{n} runs (dry run: nothing written)")
        return 0
    atomic_write(path, yaml_dump(expanded))
    print(f"{path}: {n} runs written")
    return 0


def _load(args):
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.settings import load_settings

    settings = load_settings()
    return load_experiment(args.file, profile=args.profile, settings=settings), settings


def verify_main(args) -> int:
    from cruijff_kit.design.verify import verify
    from cruijff_kit.logbook import LOG_NAMES

    from cruijff_kit.experiment.safety import check_experiment_dir, claim_experiment_dir

    exp, settings = _load(args)
    log_path = None if args.no_log else exp.dir / LOG_NAMES["design"]
    if log_path is not None:  # the log goes only into a directory cruijff_kit owns
        check_experiment_dir(exp, force=args.force)
        claim_experiment_dir(exp.dir)
    report = verify(exp, settings.scratch, log_path=log_path)
    for c in report.checks:
        print(f"{'ok  ' if c.ok else 'FAIL'} {c.action:<16} {c.subject}: {c.result}")
    if report.failed:
        for c in report.failed:
            print(c.line(exp.source), file=sys.stderr)
        return 2
    print(f"all {len(report.checks)} checks passed" + (f"; logged to {log_path}" if log_path else ""))
    return 0


def summary_main(args) -> int:
    from cruijff_kit.design.summary import keep_blocks, render_summary
    from cruijff_kit.files import atomic_write
    from cruijff_kit.logbook import LOG_NAMES, log

    from cruijff_kit.experiment.safety import check_experiment_dir, claim_experiment_dir

    exp, settings = _load(args)
    out = Path(args.out) if args.out else layout.summary_md(exp.dir)
    text = keep_blocks(render_summary(exp, settings, priors=args.priors), out)
    if args.dry_run:
        print(text)
        return 0
    check_experiment_dir(exp, force=args.force)  # the design log goes into exp.dir whatever --out says
    claim_experiment_dir(exp.dir)
    atomic_write(out, text)
    log(exp.dir / LOG_NAMES["design"], "CREATE_SUMMARY", f"rendered {out.name}", command=f"cruijff-kit design summary {args.file}",
        result=f"{len(exp.runs)} runs, {len(exp.cells())} eval cells", explanation="the human-readable plan")
    print(f"wrote {out}")
    return 0
