"""Build DPO preference pairs by sampling from a checkpoint (runs inside a job, or in-process).

For every record of one split of an input/output JSON file (``{"train": [{"input", "output"}], ...}``)
this samples ``k`` completions from the checkpoint (transformers ``generate`` with sampling, seeded per
prompt so a result does not depend on ``limit`` or order), presents the prompt exactly as evaluation
does (the tokenizer's chat template for ``chat_completion``; BOS + raw text for ``text_completion``),
judges each completion against the record's ``output`` with a rule-based scorer, and pairs a correct
completion (chosen) with an incorrect one (rejected).

Scorers: inspect-ai's own ``match`` / ``includes`` / ``exact`` / ``f1`` / ``pattern`` and cruijff_kit's
``numeric`` (the very scorer objects evaluation uses, so "correct" means the same thing here and in the
eval logs), or ``python:module:function`` / ``python:path/to/file.py:function`` -- a function
``(completion: str, target: str) -> float | bool``. A completion is correct when its score is at least
``threshold`` (default 0.5; binary scorers give 0 or 1).

Pairs per prompt: chosen = the best-scoring correct completion, rejected = the worst-scoring incorrect
one (``pairs_per_prompt`` > 1 pairs further distinct texts). When no completion is correct and
``use_reference`` is set, the record's reference ``output`` is the chosen response. Prompts without a pair
are skipped with a reason: ``all_correct``, ``none_correct`` or ``duplicate`` (the pair would repeat
one already written, or chosen and rejected are the same text).

Output (written atomically)::

    {"<split>": [{"prompt": <record input>, "chosen": str, "rejected": str, "target": <record output>,
                  "chosen_score": float, "rejected_score": float,
                  "chosen_source": "sample" | "reference", "index": <record index>}, ...]}

Other splits already in the output file are kept, so ``train`` and ``validation`` pairs can go into one
file by two calls. ``prompt`` is the record's raw input: the DPO config applies the same ``prompt`` template
and ``system_prompt`` (``cruijff_kit.tools.torchtune.preference.preference_dataset``). Next to it,
``<out>.report.json`` holds the counts (prompts, pairs, skipped by reason, candidate accuracy), the
settings and the time taken, with per-split counts under ``splits``.

Usage in a job: ``cruijff-kit prefs generate ...`` (the CLI verb), or
``python -m cruijff_kit.tools.prefs.generate CONFIG.json`` with the keys of ``DEFAULTS`` (plus
``checkpoint``, ``dataset``, ``out``). Heavy imports (torch, transformers, inspect_ai) happen inside
``run`` only, so ``check`` is cheap. Judging, pairing and writing live in ``pairs``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cruijff_kit.tools.prefs.pairs import (
    SKIP_REASONS,
    Judge,
    PrefsError,
    make_pairs,
    python_scorer_problem,
    reference_text,
    report_path,
    write_pairs,
)

PREFIX = "[cruijff_kit]"
DATASET_TYPES = ("auto", "chat_completion", "text_completion")
DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
          "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}

DEFAULTS: dict[str, Any] = {
    "split": "train",
    "k": 4,
    "scorer": {"name": "match", "params": {}},  # or "python:module:function"
    "threshold": 0.5,
    "max_tokens": 64,
    "temperature": 0.8,
    "top_p": 1.0,
    "seed": 0,
    "prompt": "{input}",
    "system_prompt": "",
    "dataset_type": "auto",
    "limit": None,
    "device": "cpu",
    "dtype": "auto",
    "use_reference": False,
    "pairs_per_prompt": 1,
    "base_model": None,  # for adapter-only checkpoints: the model the adapter belongs to
}
REQUIRED = ("checkpoint", "dataset", "out")


def say(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


# -- checks (cheap: no torch / transformers / inspect) ----------------------------------------------
def check(config: dict) -> list[PrefsError]:
    """Every problem with a config that can be seen without loading the model (files, numbers, scorer)."""
    cfg = {**DEFAULTS, **config}
    problems: list[PrefsError] = []
    for key in REQUIRED:
        if not cfg.get(key):
            problems.append(PrefsError(key, "is required"))
    ckpt = Path(str(cfg.get("checkpoint") or ""))
    if cfg.get("checkpoint"):
        from cruijff_kit.tools.inspect.run_cell import is_adapter, is_full_model

        if not ckpt.is_dir():
            problems.append(PrefsError("checkpoint", f"{ckpt} not found",
                                       "point --checkpoint at a model directory such as an epoch_N/ dir"))
        elif not is_full_model(ckpt):
            if not is_adapter(ckpt):
                problems.append(PrefsError("checkpoint", f"{ckpt} holds neither a model (config.json + "
                                           "weights) nor an adapter (adapter_config.json + adapter_model.safetensors)",
                                           "point --checkpoint at a model directory"))
            elif not cfg.get("base_model"):
                problems.append(PrefsError("checkpoint", f"{ckpt} holds only a LoRA adapter",
                                           "give --base-model DIR (the model the adapter was trained on)"))
    if cfg.get("base_model") and not Path(str(cfg["base_model"])).is_dir():
        problems.append(PrefsError("base_model", f"{cfg['base_model']} not found", "point it at a model dir"))
    for key, low in (("k", 2), ("max_tokens", 1), ("pairs_per_prompt", 1)):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            problems.append(PrefsError(key, f"{value!r} is not a whole number >= {low}", f"give {key} >= {low}"))
    if cfg.get("limit") is not None and (not isinstance(cfg["limit"], int) or cfg["limit"] < 1):
        problems.append(PrefsError("limit", f"{cfg['limit']!r} is not a whole number >= 1", "give limit >= 1"))
    temp = cfg.get("temperature")
    if not isinstance(temp, (int, float)) or isinstance(temp, bool) or not temp > 0:
        problems.append(PrefsError("temperature", f"{temp!r} must be > 0 (sampling)",
                                   "use e.g. 0.8; k greedy samples would all be the same"))
    top_p = cfg.get("top_p")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        problems.append(PrefsError("top_p", f"{top_p!r} must be in (0, 1]", "use 1.0 for no nucleus cut"))
    if not isinstance(cfg.get("threshold"), (int, float)):
        problems.append(PrefsError("threshold", f"{cfg.get('threshold')!r} is not a number", "use e.g. 0.5"))
    if cfg.get("dataset_type") not in DATASET_TYPES:
        problems.append(PrefsError("dataset_type", f"{cfg.get('dataset_type')!r} is not supported",
                                   f"use one of {', '.join(DATASET_TYPES)}"))
    if str(cfg.get("dtype")) not in DTYPES:
        problems.append(PrefsError("dtype", f"{cfg.get('dtype')!r} is not supported", f"use one of {', '.join(DTYPES)}"))
    if "{input}" not in str(cfg.get("prompt")):
        problems.append(PrefsError("prompt", f"{cfg.get('prompt')!r} has no {{input}} placeholder",
                                   "write e.g. 'Continue: {input}'"))
    scorer = cfg.get("scorer")
    if isinstance(scorer, str) and scorer.startswith("python:"):
        problem = python_scorer_problem(scorer)
        if problem:
            problems.append(PrefsError("scorer", problem, "write python:module:function (module importable) "
                                       "or python:path/to/file.py:function"))
    elif not isinstance(scorer, dict) or not scorer.get("name"):
        problems.append(PrefsError("scorer", f"{scorer!r} is not a scorer", "use e.g. {'name': 'match'}"))
    return problems


# -- the run ---------------------------------------------------------------------------------------
def run(config: dict, *, progress: Callable[[str], None] = say) -> dict:
    """Sample, judge, pair, write ``out`` and its report; return the report. Raises PrefsError on bad input."""
    cfg = {**DEFAULTS, **config}
    problems = check(cfg)
    if problems:
        raise problems[0]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.monotonic()

    from cruijff_kit.tools.inspect.dataset import format_prompt, read_split
    from cruijff_kit.tools.inspect import prompt_format
    from cruijff_kit.tools.inspect.run_cell import CellError, check_device, has_chat_template, prepared_model

    split = cfg["split"]
    try:
        records = read_split(cfg["dataset"], split)
    except (FileNotFoundError, ValueError) as exc:
        raise PrefsError("dataset", str(exc), "give a {\"train\": [{\"input\", \"output\"}], ...} file "
                         "and a split it has") from None
    if cfg["limit"]:
        records = records[: cfg["limit"]]
    if not records:
        raise PrefsError("dataset", f"{cfg['dataset']}: the {split!r} split is empty", "add records")
    judge = Judge(cfg["scorer"])
    try:
        check_device(str(cfg["device"]))
    except CellError as exc:
        raise PrefsError("device", str(exc)) from None

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_cfg = {"model_path": str(cfg["checkpoint"]), "base_model_path": cfg.get("base_model") or None}
    out_path = Path(cfg["out"]).resolve()
    counts = {r: 0 for r in SKIP_REASONS}
    pairs: list[dict] = []
    skipped: list[dict] = []
    n_candidates = n_correct = n_reference = 0
    seen_pairs: set[tuple] = set()
    try:
        with prepared_model(model_cfg) as (model_dir, tokenizer_dir):
            tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
            dataset_type = cfg["dataset_type"]
            if dataset_type == "auto":
                dataset_type = "chat_completion" if has_chat_template(Path(tokenizer_dir)) else "text_completion"
            elif dataset_type == "chat_completion" and not has_chat_template(Path(tokenizer_dir)):
                raise PrefsError("dataset_type", f"tokenizer in {tokenizer_dir} has no chat template",
                                 "use --dataset-type text_completion for a base model")
            model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=DTYPES[str(cfg["dtype"])])
            model.to(cfg["device"]).eval()
            fam = prompt_format.family(tokenizer_dir)
            eos = _stop_ids(model, tok) + [i for i in prompt_format.stop_token_ids(tokenizer_dir, fam)
                                           if i not in _stop_ids(model, tok)]
            pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
            total = len(records)
            every = max(1, total // 20)
            progress(f"prefs: {total} prompts x {cfg['k']} samples from {cfg['checkpoint']} "
                     f"({dataset_type}, temperature {cfg['temperature']}, scorer {judge.label}, "
                     f"device {cfg['device']})")
            for i, record in enumerate(records):
                messages = []
                if cfg["system_prompt"]:
                    messages.append({"role": "system", "content": cfg["system_prompt"]})
                messages.append({"role": "user", "content": format_prompt(cfg["prompt"], str(record["input"]))})
                # torchtune's training format for the family, never the model's own template (prompt_format.py)
                prompt_ids = prompt_format.render(tok, messages, fam, dataset_type)
                text = tok.decode(prompt_ids, skip_special_tokens=False)
                ids = torch.tensor([prompt_ids], device=cfg["device"])
                torch.manual_seed(int(cfg["seed"]) * 1_000_003 + i)
                with torch.no_grad():
                    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                         temperature=float(cfg["temperature"]), top_p=float(cfg["top_p"]),
                                         top_k=None, max_new_tokens=int(cfg["max_tokens"]),
                                         num_return_sequences=int(cfg["k"]), eos_token_id=eos, pad_token_id=pad)
                texts = [tok.decode(seq[ids.shape[1]:], skip_special_tokens=True) for seq in out]
                target = record["output"]
                scored = [(t, judge.score(t, target)) for t in texts]
                n_candidates += len(scored)
                n_correct += sum(1 for _, s in scored if s >= cfg["threshold"])
                made, reason = make_pairs(scored, threshold=float(cfg["threshold"]),
                                          reference=reference_text(target) if cfg["use_reference"] else None,
                                          pairs_per_prompt=int(cfg["pairs_per_prompt"]))
                kept = 0
                for pair in made:
                    key = (text, pair["chosen"], pair["rejected"])
                    if key in seen_pairs:
                        continue
                    seen_pairs.add(key)
                    pairs.append({"prompt": str(record["input"]), **pair, "target": target, "index": i})
                    n_reference += pair["chosen_source"] == "reference"
                    kept += 1
                if not kept:
                    reason = reason or "duplicate"
                    counts[reason] += 1
                    skipped.append({"index": i, "reason": reason})
                done = i + 1
                if done == total or done % every == 0:
                    progress(f"prefs: {done}/{total} prompts, {len(pairs)} pairs, "
                             f"{n_correct}/{n_candidates} samples correct")
    except CellError as exc:
        raise PrefsError("checkpoint", str(exc)) from None
    finally:
        judge.close()

    settings = {k: cfg[k] for k in DEFAULTS}
    settings.update(dataset_type=dataset_type, checkpoint=str(cfg["checkpoint"]), dataset=str(cfg["dataset"]))
    this = {"prompts": len(records), "pairs": len(pairs), "prompts_with_pairs": len({p["index"] for p in pairs}),
            "skipped": counts, "candidates": n_candidates, "correct_candidates": n_correct,
            "candidate_accuracy": n_correct / n_candidates if n_candidates else None,
            "chosen_from_reference": n_reference}
    report = write_pairs(out_path, split, pairs, counts=this, skipped=skipped, settings=settings,
                         seconds=time.monotonic() - started)
    progress(f"prefs: wrote {len(pairs)} pairs ({split}) to {out_path}; skipped "
             + ", ".join(f"{counts[r]} {r}" for r in SKIP_REASONS)
             + f"; {report['seconds']:.1f}s; report {report_path(out_path)}")
    return report


def _stop_ids(model, tok) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model.generation_config, "eos_token_id", None), tok.eos_token_id):
        for i in (source if isinstance(source, (list, tuple)) else [source]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    if not ids:
        raise PrefsError("checkpoint", "the tokenizer and generation config name no end-of-sequence token",
                         "use a model with an eos_token")
    return ids


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m cruijff_kit.tools.prefs.generate CONFIG.json   (or: cruijff-kit prefs generate ...)",
              file=sys.stderr)
        return 2
    try:
        config = json.loads(Path(argv[0]).read_text())
        if not isinstance(config, dict):
            raise PrefsError("config", f"{argv[0]} is not a JSON object")
        run(config)
    except (OSError, ValueError) as exc:
        print(f"{PREFIX} error: {argv[0]}: {exc}", file=sys.stderr, flush=True)
        return 2
    except PrefsError as exc:
        print(f"{PREFIX} error: {exc.line()}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
