"""Build preference pairs (chosen / rejected) for DPO by sampling from a checkpoint.

  cruijff-kit prefs generate --checkpoint DIR --dataset FILE.json --out prefs.json
      [--split train] [--k 4] [--scorer match|includes|exact|f1|numeric|pattern|python:module:function]
      [--scorer-param key=value ...] [--threshold 0.5] [--use-reference]
      [--max-tokens 64] [--temperature 0.8] [--top-p 1.0] [--seed 0] [--limit N]
      [--prompt '{input}'] [--system-prompt ''] [--dataset-type auto|chat_completion|text_completion]
      [--device cpu] [--dtype auto] [--pairs-per-prompt 1] [--base-model DIR] [--dry-run]

For each record of the split, k completions are sampled (seeded per prompt), judged against the record's
`output` with the scorer (the same scorers, with the same parameters, as evaluation), and one correct
completion (chosen) is paired with an incorrect one (rejected). With --use-reference the reference output
is chosen when no completion is correct. Prompts with no pair are skipped as all_correct, none_correct or
duplicate. Writes {"<split>": [{"prompt", "chosen", "rejected", ...}]} to --out (other splits in the file
are kept) and counts to <out>.report.json. Use the same --prompt / --system-prompt as the SFT run, and the
same in the DPO config. Exit status: 0 with pairs written, 1 when no pair could be formed, 2 for bad input.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from cruijff_kit.errors import ProblemList, UserError, closest

WHERE = "cruijff-kit prefs generate"
# config key (cruijff_kit.tools.prefs.generate) -> command-line flag
FLAGS = {"checkpoint": "--checkpoint", "dataset": "--dataset", "split": "--split", "k": "--k",
         "scorer": "--scorer", "threshold": "--threshold", "out": "--out", "max_tokens": "--max-tokens",
         "temperature": "--temperature", "top_p": "--top-p", "seed": "--seed", "prompt": "--prompt",
         "system_prompt": "--system-prompt", "dataset_type": "--dataset-type", "limit": "--limit",
         "device": "--device", "dtype": "--dtype", "use_reference": "--use-reference",
         "pairs_per_prompt": "--pairs-per-prompt", "base_model": "--base-model", "config": "--config"}
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    gen = sub.add_parser("generate", help="sample k answers per prompt, judge them, write chosen/rejected pairs",
                         description=__doc__, prog="cruijff-kit prefs generate",
                         formatter_class=parser.formatter_class)
    gen.add_argument("--checkpoint", required=True, metavar="DIR",
                     help="model directory to sample from (e.g. an SFT run's epoch_N/)")
    gen.add_argument("--base-model", metavar="DIR", help="base model, when --checkpoint holds only an adapter")
    gen.add_argument("--dataset", required=True, metavar="FILE.json", help='{"train": [{"input", "output"}], ...}')
    gen.add_argument("--split", default="train", help="split of --dataset to sample for (default train)")
    gen.add_argument("--k", type=int, default=4, help="samples per prompt (default 4)")
    gen.add_argument("--scorer", default="match",
                     help="match, includes, exact, f1, numeric, pattern, or python:module:function (default match)")
    gen.add_argument("--scorer-param", action="append", default=[], metavar="KEY=VALUE",
                     help="scorer parameter, repeatable (e.g. location=exact, tolerance=0.5, pattern='(\\d+)')")
    gen.add_argument("--threshold", type=float, default=0.5,
                     help="a sample is correct when its score >= this (default 0.5)")
    gen.add_argument("--use-reference", action="store_true",
                     help="when no sample is correct, use the record's output as the chosen response")
    gen.add_argument("--out", required=True, metavar="FILE.json", help="pairs file to write (atomically)")
    gen.add_argument("--max-tokens", type=int, default=64, help="new tokens per sample (default 64)")
    gen.add_argument("--temperature", type=float, default=0.8, help="sampling temperature, > 0 (default 0.8)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling cut (default 1.0 = none)")
    gen.add_argument("--seed", type=int, default=0, help="seed (each prompt i samples with seed and i)")
    gen.add_argument("--prompt", default="{input}", help="prompt template with {input}, as in training")
    gen.add_argument("--system-prompt", default="", help="system prompt, as in training (default none)")
    gen.add_argument("--dataset-type", default="auto", choices=["auto", "chat_completion", "text_completion"],
                     help="chat template or raw text (default auto: chat when the tokenizer has a template)")
    gen.add_argument("--limit", type=int, help="use only the first N records")
    gen.add_argument("--pairs-per-prompt", type=int, default=1, help="most pairs per prompt (default 1)")
    gen.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, mps (default cpu)")
    gen.add_argument("--dtype", default="auto", help="auto, fp32, bf16, fp16 (default auto)")
    gen.add_argument("--dry-run", action="store_true", help="check everything and print the plan; load no model")


def _coerce(name: str, key: str, raw: str, rule: dict | None):
    kind = (rule or {}).get("type", "str")
    if kind == "bool":
        low = raw.strip().lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise ValueError(f"{raw!r} is not true/false")
    if kind == "number":
        try:
            return int(raw)
        except ValueError:
            return float(raw)
    if kind == "list":
        if raw.strip().startswith("["):
            value = json.loads(raw)
            if not isinstance(value, list):
                raise ValueError(f"{raw!r} is not a list")
            return value
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def scorer_spec(name: str, params: list[str], problems: ProblemList):
    """The scorer as the sampler takes it: {"name", "params"} or the python:... string."""
    from cruijff_kit.workers.inspect.evaluator import SCORERS, known_scorers, scorer_problems

    if name.startswith("python:"):
        if params:
            problems.error("--scorer-param", "a python: scorer takes no parameters",
                           "read them inside your function instead")
        return name
    if name not in SCORERS:
        hint = closest(name, SCORERS)
        problems.error("--scorer", f"unknown scorer {name!r}",
                       (f"{hint} " if hint else "") + f"known scorers: {known_scorers()}, or python:module:function")
        return None
    parsed = {}
    for item in params:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.error("--scorer-param", f"{item!r} is not KEY=VALUE", "write e.g. --scorer-param ignore_case=true")
            continue
        try:
            parsed[key] = _coerce(name, key, raw, SCORERS[name].get(key))
        except ValueError as exc:
            problems.error(f"--scorer-param {key}", str(exc), f"give {key} a {SCORERS[name][key]['type']} value")
    spec = {"name": name, "params": parsed}
    for suffix, message, hint in scorer_problems(spec):
        problems.error("--scorer" + (f"-param {suffix.split('.')[-1]}" if suffix.startswith(".params.") else ""),
                       message, hint)
    return spec


def build_config(args, problems: ProblemList) -> dict:
    from cruijff_kit.workers.inspect.evaluator import dataset_splits

    dataset = Path(args.dataset).expanduser()
    if not dataset.is_file():
        problems.error("--dataset", f"{dataset} not found", "give the path of a JSON data file")
    else:
        splits = dataset_splits(str(dataset.resolve()), dataset.stat().st_mtime)
        if isinstance(splits, str):
            problems.error("--dataset", f"{dataset}: {splits}", "fix the data file")
        elif args.split not in splits:
            problems.error("--split", f"{dataset} has no split {args.split!r} (splits: {', '.join(splits) or 'none'})",
                           f"use one of {', '.join(splits)}" if splits else "add the split to the file")
    out = Path(args.out).expanduser()
    if out.is_dir():
        problems.error("--out", f"{out} is a directory", "give a file name such as prefs.json")
    return {
        "checkpoint": str(Path(args.checkpoint).expanduser().resolve()),
        "base_model": str(Path(args.base_model).expanduser().resolve()) if args.base_model else None,
        "dataset": str(dataset.resolve()), "split": args.split, "k": args.k,
        "scorer": scorer_spec(args.scorer, args.scorer_param, problems), "threshold": args.threshold,
        "use_reference": args.use_reference, "out": str(out.resolve()), "max_tokens": args.max_tokens,
        "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed, "prompt": args.prompt,
        "system_prompt": args.system_prompt, "dataset_type": args.dataset_type, "limit": args.limit,
        "pairs_per_prompt": args.pairs_per_prompt, "device": args.device, "dtype": args.dtype,
    }


def main(args) -> int:
    from cruijff_kit.tools.prefs import generate  # stdlib at import; torch etc. only inside run()

    problems = ProblemList(WHERE)
    config = build_config(args, problems)
    seen = {p.path for p in problems.problems}
    for p in generate.check({k: v for k, v in config.items() if v is not None or k == "limit"}):
        flag = FLAGS.get(p.key, p.key)
        if flag not in seen and not (p.key == "scorer" and config["scorer"] is None):
            problems.error(flag, p.message, p.hint)
    problems.raise_if_errors()
    if args.dry_run:
        scorer = config["scorer"]
        print(f"would sample {config['k']} x {'first ' + str(config['limit']) if config['limit'] else 'every'} "
              f"record(s) of {config['dataset']}:{config['split']} from {config['checkpoint']}, judge with "
              f"{scorer if isinstance(scorer, str) else json.dumps(scorer)}, and write {config['out']} and "
              f"{generate.report_path(config['out'])}")
        return 0
    try:
        report = generate.run(config)
    except generate.PrefsError as exc:
        raise UserError(exc.message, where=WHERE, path=FLAGS.get(exc.key, exc.key), hint=exc.hint) from None
    skipped = ", ".join(f"{n} {reason}" for reason, n in report["skipped"].items())
    print(f"prompts {report['prompts']}, pairs {report['pairs']}, skipped: {skipped}; "
          f"{report['correct_candidates']}/{report['candidates']} samples correct")
    if not report["pairs"]:
        print(f"{WHERE}: no preference pair could be formed ({skipped}); sample more (--k, --temperature), "
              "change the scorer, or use --use-reference", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("prefs")
