"""Check that each eval cell shows the model exactly the prompt it learned from (run it before GPU hours).

  cruijff-kit prompts EXPERIMENT_DIR [--cell NAME] [--json]

For every eval cell of a scaffolded experiment: one sample (the first record of the cell's split) as
training tokenizes it (torchtune tokenizer + our dataset builder, with the loss mask: tokens in the loss
are marked `+`) and as the eval renders its prompt (the format run_cell hands inspect-ai), side by side,
decoded with special tokens visible, and `identical: true|false`. A fine-tuned cell is compared with its
run's finetune.yaml (tokenizer, prompt, system prompt, assistant prefix, dataset type); a control or
eval-only cell with the format training would use for its model. It also checks that the end token training puts in the loss is a
stop token at eval. Exit 1 on any mismatch; cells whose tokenizer files do not exist yet are skipped.

  --json   {"cells": [{"cell": ..., "identical": ..., "first_difference": ..., ...}]}

The token computation runs in a subprocess (python -m cruijff_kit.tools.torchtune.prompt_tokens), so this
module imports no torch/transformers.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from cruijff_kit.errors import Problem, UserError
from cruijff_kit.experiment import layout
from cruijff_kit.files import read_yaml

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def configure(parser) -> None:
    parser.add_argument("experiment_dir", help="a scaffolded experiment directory")
    parser.add_argument("--cell", help="only this eval cell (its directory name)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _yaml(path: Path) -> dict:
    """A rendered config through the one YAML reader; {} when it is missing or unreadable (cell skipped)."""
    try:
        data = read_yaml(path)
    except (OSError, UserError):
        return {}
    return data if isinstance(data, dict) else {}


def _has_tokenizer(path: str | Path, seen: dict) -> bool:
    """Whether a directory holds HF tokenizer files (`seen` caches the answer per directory within one pass:
    a sweep's cells share a few base models)."""
    text = str(path)
    if text not in seen:
        seen[text] = any(os.path.isfile(os.path.join(text, name)) for name in TOKENIZER_FILES)
    return seen[text]


def _tokenizer_dir(config: dict, finetune: dict, seen: dict | None = None) -> Path | None:
    """Where the cell's HF tokenizer lives: the checkpoint or base model (an epoch_best / epoch_last stand-in:
    the epoch the eval job picks, once the run trained), else (a run trained from another run's checkpoint
    that does not exist yet, e.g. DPO after SFT) the root model whose tokenizer training reads."""
    from cruijff_kit.tools.torchtune.pick_epoch import resolve_dir

    seen = {} if seen is None else seen
    for key in ("model_path", "base_model_path"):
        if config.get(key):
            path = Path(config[key])
            if layout.named_epoch_of(path):
                try:
                    path = resolve_dir(path)[0]
                except ValueError:
                    continue
            if _has_tokenizer(path, seen):
                return path
    return _trained_tokenizer_dir(str((finetune.get("tokenizer") or {}).get("path") or ""), seen)


def _trained_tokenizer_dir(trained_with: str, seen: dict) -> Path | None:
    """The folder holding the HF files of the tokenizer a run's finetune.yaml names (its file may sit deeper,
    e.g. original/tokenizer.model)."""
    if not trained_with or "${" in trained_with:
        return None
    return next((p for p in Path(trained_with).parents if _has_tokenizer(p, seen)), None)
    return None


_SIMPLE_LINE = re.compile(r'^(model_path|base_model_path|cell): *(?:"([^"\\\n]*)"|(null)) *$', re.M)
_TRAINED_TOKENIZER = re.compile(r'^tokenizer:\n(?:  [^\n]*\n)*?  path: *"([^"\\\n]*)" *$', re.M)


def _quick_skip(path: Path, seen: dict) -> str | None:
    """The cell's name when its eval_config.yaml, as we render it (each of model_path, base_model_path and
    cell once, at the top level, a plain quoted string or null), names no directory holding tokenizer files,
    no epoch_best/last stand-in of a run that has begun writing checkpoints, and its run's finetune.yaml
    names no tokenizer whose folder exists: a sweep's cells before training are skipped without parsing
    2,000 YAML files. None: parse it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found: dict[str, list] = {}
    for key, value, null in _SIMPLE_LINE.findall(text):
        found.setdefault(key, []).append(None if null else value)
    if any(len(found.get(key, ())) != 1 for key in ("model_path", "base_model_path", "cell")):
        return None
    for key in ("model_path", "base_model_path"):
        value = found[key][0]
        if value and (_has_tokenizer(value, seen) or (layout.named_epoch_of(value)
                                                       and os.path.isdir(os.path.dirname(value)))):
            return None
    if not _run_tokenizer_absent(path.parents[2] / layout.FINETUNE_CONFIG, seen):
        return None
    return found["cell"][0] or path.parent.name


def _run_tokenizer_absent(finetune: Path, seen: dict) -> bool:
    """True when a run has no finetune.yaml, or its tokenizer line names a folder without tokenizer files
    (read with a regex, once per run); False when it has one or the file is not as we render it."""
    key = f"finetune:{finetune}"
    if key not in seen:
        try:
            trained = _TRAINED_TOKENIZER.search(finetune.read_text(encoding="utf-8"))
            seen[key] = trained is not None and _trained_tokenizer_dir(trained.group(1), seen) is None
        except FileNotFoundError:
            seen[key] = True
        except (OSError, UnicodeDecodeError):
            seen[key] = False
    return seen[key]


def cell_specs(exp_dir: Path, cell: str | None = None) -> tuple[list[dict], list[str]]:
    """(one spec per eval cell whose tokenizer exists, names of cells skipped for want of tokenizer files)."""
    specs, skipped, seen = [], [], {}
    for path in sorted(exp_dir.glob(f"*/{layout.EVAL_DIR}/*/{layout.EVAL_CONFIG}")):
        quick = None if cell else _quick_skip(path, seen)
        if quick is not None:
            skipped.append(quick)
            continue
        config = _yaml(path)
        name = str(config.get("cell") or path.parent.name)
        if cell and cell not in (name, path.parent.name):
            continue
        finetune = _yaml(path.parents[2] / layout.FINETUNE_CONFIG)
        tok_dir = _tokenizer_dir(config, finetune, seen)
        args = config.get("task_args") or {}
        if tok_dir is None or not args.get("data_path"):
            skipped.append(name)
            continue
        eval_type = config.get("dataset_type") or "chat_completion"
        spec = {"cell": name, "run": config.get("run"), "tokenizer_dir": str(tok_dir),
                "source": args["data_path"], "split": args.get("split") or "validation",
                "dataset_type": eval_type, "prompt": args.get("prompt"), "system_prompt": args.get("system_prompt"),
                "train_on_input": False, "torchtune_tokenizer": None, "eval_dataset_type": eval_type,
                "eval_prompt": args.get("prompt"), "eval_system_prompt": args.get("system_prompt")}
        if finetune:
            ds, tok = finetune.get("dataset") or {}, dict(finetune.get("tokenizer") or {})
            spec.update(dataset_type=ds.get("dataset_type", eval_type), prompt=ds.get("prompt"),
                        system_prompt=ds.get("system_prompt"), train_on_input=ds.get("train_on_input", False))
            if tok.get("_component_") and not any("${" in str(v) for v in tok.values()):
                spec["torchtune_tokenizer"] = tok
        # the text the assistant turn starts with: training's from finetune.yaml, else the cell's own
        prefix = config.get("assistant_prefix") or ""
        spec.update(assistant_prefix=((finetune.get("dataset") or {}).get("assistant_prefix") or "") if finetune
                    else prefix, eval_assistant_prefix=prefix)
        specs.append(spec)
    return specs, skipped


def compute(specs: list[dict]) -> list[dict]:
    """Token ids per cell from the tools/ subprocess (torch, torchtune and transformers live there)."""
    if not specs:
        return []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TIKTOKEN_CACHE_DIR": ""}
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit.tools.torchtune.prompt_tokens"],
                          input=json.dumps({"cells": specs}), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"prompt check failed: {tail}", hint="is torchtune installed in this environment?")
    return json.loads(proc.stdout)["cells"]


def compare(result: dict) -> dict:
    """identical, first difference and the end-token checks of one cell's token ids."""
    if "error" in result:
        return {"cell": result["cell"], "run": result.get("run"), "identical": False, "error": result["error"]}
    train, ev = result["train_prompt"], result["eval_prompt"]
    out = {"cell": result["cell"], "run": result.get("run"), "family": result["family"], "train_prompt": train, "eval_prompt": ev,
           "train_tokens": result["train_tokens"], "in_loss": result["in_loss"],
           "end_token": result["end_token"], "end_in_loss": result["end_in_loss"],
           "end_is_stop": result["end_is_stop"], "stop_ids": result["stop_ids"]}
    if train is None:
        out.update(identical=False, first_difference=None,
                   error="the answer's tokens were not found at the end of the training tokens (truncated?)")
        return out
    out["identical"] = train == ev
    diff = next((i for i, (a, b) in enumerate(zip(train, ev)) if a != b), None)
    if diff is None and len(train) != len(ev):
        diff = min(len(train), len(ev))
    pieces = result["pieces"]

    def at(seq, i):
        return None if i is None or i >= len(seq) else {"id": seq[i], "text": pieces.get(str(seq[i]), "")}

    out["first_difference"] = None if diff is None else {"index": diff, "train": at(train, diff), "eval": at(ev, diff)}
    out["pieces"] = pieces
    return out


def check(exp_dir: str | Path, cell: str | None = None) -> tuple[list[dict], list[str]]:
    specs, skipped = cell_specs(Path(exp_dir), cell)
    return [compare(r) for r in compute(specs)], skipped


def problems(exp_dir: str | Path) -> list[Problem]:
    """For scaffold / design verify: one error per cell whose eval prompt differs from training (cells
    whose tokenizer files do not exist yet are not checked)."""
    out = []
    for c in check(exp_dir)[0]:
        if c.get("identical") and c.get("end_is_stop", True):
            continue
        where = str(layout.cell_dir(exp_dir, str(c.get("run")), c["cell"]) / layout.EVAL_CONFIG)
        out.append(Problem(where, "", f"cell {c['cell']}: {describe(c)}",
                           "run `cruijff-kit prompts` on the experiment for the tokens side by side"))
    return out


def scaffold_check(exp_dir: str | Path) -> list[Problem]:
    """The hook scaffold (and design verify) call: problems() when torchtune and transformers are installed
    here and CK_SKIP_PROMPT_CHECK is unset; otherwise nothing (the check needs the tokenizers)."""
    from importlib.util import find_spec

    if os.environ.get("CK_SKIP_PROMPT_CHECK") or not (find_spec("torchtune") and find_spec("transformers")):
        return []
    return problems(exp_dir)


def describe(c: dict) -> str:
    if c.get("error"):
        return c["error"]
    d = c.get("first_difference")
    if d is not None:
        def tok(side):
            return f"{side['text']!r} (id {side['id']})" if side else "nothing"
        return (f"eval prompt differs from training at token {d['index']}: training has {tok(d['train'])}, "
                f"eval has {tok(d['eval'])}")
    if not c.get("end_is_stop"):
        return f"the end token training puts in the loss (id {c.get('end_token')}) does not stop generation"
    return "identical"


def _show(seq: list[int], pieces: dict, mask: list[bool] | None = None) -> str:
    parts = []
    for i, t in enumerate(seq):
        text = pieces.get(str(t), "").replace("\n", "\\n")
        parts.append(("+" if mask and mask[i] else "") + f"[{text}]")
    return "".join(parts)


def main(args) -> int:
    exp_dir = Path(args.experiment_dir)
    if not exp_dir.is_dir():
        raise UserError(f"{exp_dir}: not a directory", hint="give a scaffolded experiment directory")
    cells, skipped = check(exp_dir, args.cell)
    if not cells and not skipped:
        raise UserError(f"{exp_dir}: no eval cells" + (f" named {args.cell}" if args.cell else ""),
                        hint="run `cruijff-kit scaffold` first")
    bad = [c for c in cells if not c.get("identical") or not c.get("end_is_stop", False)]
    if args.json:
        print(json.dumps({"cells": cells, "skipped": skipped}, indent=1))
        return 1 if bad else 0
    for c in cells:
        print(f"== {c.get('run')}/{c['cell']}  identical: {str(bool(c.get('identical'))).lower()}  family: {c.get('family')}")
        if "train_tokens" in c:
            pieces = c.get("pieces", {})
            print(f"  training ({len(c['train_tokens'])} tokens, +in loss): "
                  f"{_show(c['train_tokens'], pieces, c['in_loss'])}")
            print(f"  eval prompt ({len(c['eval_prompt'])} tokens): {_show(c['eval_prompt'], pieces)}")
            end = c.get("end_token")
            print(f"  end token {pieces.get(str(end), end)!r}: in loss {str(c['end_in_loss']).lower()}, "
                  f"stops generation {str(c['end_is_stop']).lower()}")
        if c in bad:
            print(f"  MISMATCH: {describe(c)}")
    for name in skipped:
        print(f"== {name}  skipped: the model's tokenizer files do not exist yet")
    print(f"{len(cells) - len(bad)}/{len(cells)} cells identical" + (f", {len(skipped)} skipped" if skipped else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("prompts")
