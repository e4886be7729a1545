"""What each eval cell shows the model, next to what its run learned from. Run it before GPU hours.

  cruijff-kit prompts EXPERIMENT_DIR [--cell NAME] [--json]   token level (a scaffolded experiment)
  cruijff-kit prompts DESIGN.yaml [--profile P] [--json]      text level (before scaffolding)

EXPERIMENT_DIR: for every eval cell, one sample's training tokens (with the loss mask) and eval prompt
tokens side by side, decoded with special tokens visible, `identical: true|false`, and whether the end
token training puts in the loss stops generation; exit 1 on any mismatch (workers/inspect/prompts.py).
DESIGN: the prompt template, system prompt and assistant prefix every eval cell uses next to what its run trained on.
Differences are allowed only in tasks marked `prompt_sweep: true` (an eval prompt sweep); elsewhere
`validate` refuses them."""
from __future__ import annotations

import json


def configure(parser) -> None:
    parser.add_argument("design", metavar="EXPERIMENT_DIR|DESIGN",
                        help="a scaffolded experiment directory (token check) or an experiment_summary.yaml (text)")
    parser.add_argument("--cell", help="only this eval cell (its directory name; token check)")
    parser.add_argument("--profile", help="apply a profile from the design's `profiles:` (text check)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def rows(exp, settings) -> list[dict]:
    from cruijff_kit.experiment.resolve import resolve_run
    from cruijff_kit.workers.inspect.evaluator import cell_prefix, cell_prompts

    out = []
    for cell in exp.cells():
        run, task = exp.run(cell.run), exp.task(cell.task)
        kind = resolve_run(exp, run, settings).dataset_type
        prompt, system = cell_prompts(run, task, kind)
        trained = (run.controls.prompt, "" if kind == "text_completion" else run.controls.system_prompt)
        prefix = cell_prefix(run, task)
        out.append({"cell": f"{cell.run}/{cell.dirname}", "task": task.name, "trains": run.trains,
                    "prompt": prompt, "system_prompt": system, "assistant_prefix": prefix,
                    "training_prompt": trained[0], "training_system_prompt": trained[1],
                    "training_assistant_prefix": run.controls.assistant_prefix, "sweep": task.prompt_sweep,
                    "differs": run.trains and (prompt, system, prefix) != (*trained, run.controls.assistant_prefix)})
    return out


def main(args) -> int:
    from pathlib import Path

    from cruijff_kit.experiment import layout

    target = Path(args.design)
    if target.is_dir() and layout.jobs_file(target).is_file():  # scaffolded: compare real token ids
        from cruijff_kit.workers.inspect import prompts as token_check

        args.experiment_dir = str(target)
        return token_check.main(args)
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.settings import load_settings

    settings = load_settings()
    table = rows(load_experiment(args.design, profile=args.profile, settings=settings), settings)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for row in table:
        mark = "  (differs from training: eval prompt sweep)" if row["differs"] else ""
        print(f"{row['cell']}{mark}")
        print(f"  prompt:        {row['prompt']!r}")
        print(f"  system_prompt: {row['system_prompt']!r}")
        if row["assistant_prefix"] or row["training_assistant_prefix"]:
            print(f"  assistant_prefix: {row['assistant_prefix']!r}")
        if row["differs"]:
            print(f"  trained with:  {row['training_prompt']!r} / {row['training_system_prompt']!r}"
                  + (f" / {row['training_assistant_prefix']!r}" if row["training_assistant_prefix"] or
                     row["assistant_prefix"] else ""))
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("prompts")
