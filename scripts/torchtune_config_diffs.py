"""Every key where our rendered finetune.yaml differs from torchtune's shipped config, per registry model.

  python scripts/torchtune_config_diffs.py            # rewrite docs/torchtune-config-diffs.md
  python scripts/torchtune_config_diffs.py --check    # exit 1 when the committed doc is not current

For each model of cruijff_kit/models/registry (the locally built tiny models have no torchtune config),
a design with one fine-tuned run on that model and the design defaults is scaffolded (dry run, nothing
written); its finetune.yaml is compared, as flat dotted keys, with the torchtune config for the same LoRA
builder and recipe (found through torchtune's recipe registry, as `tune ls` / `tune cp` find them).
The "why" of each row comes from REASONS below, keyed by config key (or the key's top-level section);
tests/test_torchtune_diffs.py fails when a differing key has no reason or the doc is not current.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "torchtune-config-diffs.md"
SCRATCH = "/ck-scratch"  # a fixed fake scratch dir, so the doc does not depend on the machine
RECIPES = {"single_device": "lora_finetune_single_device", "distributed": "lora_finetune_distributed"}
ABSENT = "(absent)"

# key (or its top-level section) -> why ours differs. One line each; every differing key needs one.
REASONS = {
    "output_dir": "ours is the run's output dir under the scratch dir (ck-outputs/EXPERIMENT/ck-out-RUN)",
    "base_model_path": "ours names the base model dir for the eval cells and the adapter merge",
    "model.lora_rank": "the design's `lora_rank` (default 8)",
    "model.lora_alpha": "the design's `lora_alpha` (default 2 x lora_rank, the ratio torchtune's configs use)",
    "model.lora_dropout": "the design's `lora_dropout`",
    "model.lora_attn_modules": "the design's `lora_attn_modules`",
    "model.apply_lora_to_mlp": "the design's `apply_lora_to_mlp`",
    "model.apply_lora_to_output": "the design's `apply_lora_to_output`",
    "tokenizer.path": "ours points at the model dir (models_dir/MODEL), not /tmp",
    "tokenizer.merges_file": "ours points at the model dir (models_dir/MODEL), not /tmp",
    "tokenizer.max_seq_len": "the design's `max_seq_len` (default 512): longer examples are truncated (torchtune: no limit)",
    "checkpointer.checkpoint_dir": "ours points at the model dir (models_dir/MODEL), not /tmp",
    "checkpointer.output_dir": "ours is the run's output dir (torchtune: ${output_dir}, the same place)",
    "checkpointer._component_": "our checkpointer saves epoch_N/ dirs atomically and the adapter where eval reads it",
    "save_adapter_weights_only": "adapter-only is our default: ~1% of a merged checkpoint's disk; eval merges in memory",
    "dataset": "ours reads the design's JSON data file with the design's prompt template and system prompt",
    "dataset_val": "ours adds a validation set (the design's validation split) for validation loss per epoch",
    "run_val_every_n_steps": "validation during training (our single-device recipe; 0 = at epoch ends only)",
    "run_val_at_epoch_end": "validation loss at every epoch end (our single-device recipe; off where validation is off)",
    "batch_size_val": "batch size of the validation loop (our recipe)",
    "seed": "the design's `seed` (default 42): runs are reproducible (torchtune: a random seed)",
    "shuffle": "the design's `shuffle`",
    "batch_size": "the design's `batch_size`",
    "epochs": "the design's `epochs`",
    "max_steps_per_epoch": "the design's `max_steps_per_epoch`",
    "gradient_accumulation_steps": "the design's `gradient_accumulation_steps` (default 1: the batch size is the batch)",
    "optimizer.lr": "the design's `lr`",
    "optimizer.weight_decay": "the design's `weight_decay`",
    "optimizer.fused": "fused AdamW needs CUDA; ours is set from the design's device",
    "lr_scheduler": "the design's `lr_scheduler` and `num_warmup_steps` (default 0: small data sets have few steps)",
    "loss": "ours masks the loss per example (train_on_input) with the chunked cross entropy of torchtune",
    "clip_grad_norm": "the design's `clip_grad_norm`",
    "compile": "the design's `compile`",
    "metric_logger": "ours logs to W&B (offline unless a key is set) or to output_dir/logs (DiskLogger)",
    "extra_metric_loggers": "a W&B logger (offline unless a key is set) fed the same metrics as the DiskLogger; "
                            "read by our single-device recipes",
    "log_every_n_steps": "the design's `log_every_n_steps`",
    "log_peak_memory_stats": "ours records GPU peak memory in training_summary.json (and nvidia-smi in compute.json)",
    "device": "the design's `device`",
    "dtype": "the design's `dtype`",
    "enable_activation_checkpointing": "follows torchtune's reference per model size (on from 3B), or the design's",
    "enable_activation_offloading": "the design's `enable_activation_offloading`",
    "profiler": "ours leaves the profiler out (torchtune ships it disabled)",
    "resume_from_checkpoint": "set by `cruijff-kit run/resubmit` (CK_RESUME=1) on the command line instead",
    "recipe_checkpoint": "ours resumes from the last saved epoch's recipe state",
    "custom_sharded_layers": "torchtune's distributed 70B config shards these layers; our distributed run keeps it",
    "fsdp_cpu_offload": "the distributed recipe's FSDP option, left at torchtune's value or the design's",
    "low_cpu_ram": "the distributed recipe's option for loading 70B on nodes with little RAM",
    "training_summary": "our recipe writes training_summary.json (tokens, tokens/s, losses, peak memory)",
    "checkpointer.checkpoint_files": "ours lists the model's shards as the registry has them",
    "checkpointer.recipe_checkpoint": "ours resumes from the last saved epoch's recipe state",
    "checkpointer.model_type": "the registry's model_type for this model",
    "model._component_": "the registry's LoRA builder for this model",
    "tokenizer._component_": "the registry's tokenizer builder for this model",
    "tokenizer.prompt_template": "ours formats the prompt in the dataset (the design's template), not the tokenizer",
}


def reason(key: str) -> str | None:
    """The why of `key`: its own entry, else that of the longest section that holds it."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in REASONS:
            return REASONS[".".join(parts[:n])]
    return None


def flat(node, prefix: str = "") -> dict:
    """{dotted key: value} of a config; lists stay values."""
    if isinstance(node, dict) and node:
        out = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def torchtune_config(spec) -> tuple[str, dict] | None:
    """(config name, parsed YAML) of torchtune's config for this model's LoRA builder and recipe."""
    import torchtune
    from torchtune._recipe_registry import get_all_recipes

    root = Path(torchtune.__file__).resolve().parent.parent / "recipes" / "configs"
    recipe = next(r for r in get_all_recipes() if r.name == RECIPES[spec.recipe])
    for config in recipe.configs:
        path = root / config.file_path
        if not path.is_file():
            continue
        data = load(path.read_text())
        if (data.get("model") or {}).get("_component_") == spec.component:
            return config.name, data
    return None


def _design(folder: Path, specs: dict) -> Path:
    """One fine-tuned run per model (run `m0`, `m1`, ...) with the design defaults."""
    data = folder / "data.json"
    data.write_text(json.dumps({"train": [{"input": "1,2", "output": "3"}] * 8,
                                "validation": [{"input": "2,3", "output": "4"}] * 4}))
    runs = [{"name": f"m{i}", "type": "fine-tuned", "model": key,
             "parameters": {"validation_during_training": False} if spec.gpus > 1 else {}}
            for i, (key, spec) in enumerate(specs.items())]
    design = {"experiment": {"name": "tt_diff", "question": "config diff", "date": "2025-01-01",
                             "type": "experiment", "dir": str(folder / "exp")},
              "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
              "controls": {"prompt": "{input}", "system_prompt": ""},
              "models": {"base": [{"name": key, "path": "{models_dir}/" + key} for key in specs]},
              "data": {"training": {"path": str(data)}}, "runs": runs}
    path = folder / "experiment_summary.yaml"
    path.write_text(yaml.safe_dump(design, sort_keys=False))
    return path


def ours(specs: dict) -> dict:
    """{model: our finetune.yaml} for a design with one fine-tuned run per model and the design defaults."""
    from cruijff_kit.scaffold.scaffold import scaffold
    from cruijff_kit.settings import Settings

    os.environ.setdefault("CK_SKIP_PROMPT_CHECK", "1")  # no model files here: nothing to tokenize
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(scratch_dir=SCRATCH, venv="/venv")
        out = scaffold(_design(Path(tmp), specs), settings=settings, dry_run=True, quiet=True, log=False)
        return {key: load(out.files.files[f"m{i}/finetune.yaml"][0].replace(tmp, "<design dir>")
                          .replace(f"ck-out-m{i}", "ck-out-RUN"))
                for i, key in enumerate(specs)}


def load(text: str) -> dict:
    """A config as torchtune reads it (OmegaConf: `3e-4` is a number), interpolations left as written."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.create(text), resolve=False)


def show(value) -> str:
    text = ABSENT if value is ABSENT else json.dumps(value) if not isinstance(value, str) else value
    text = text.replace(SCRATCH, "{scratch}").replace("|", "\\|")
    return f"`{text}`" if len(text) <= 70 else f"`{text[:67]}...`"


def diffs() -> list[dict]:
    """One entry per registry model: its torchtune config and every differing key with both values."""
    from cruijff_kit.models.registry import registry

    found = {key: torchtune_config(spec) for key, spec in registry().items() if not key.startswith("tiny-")}
    found = {key: config for key, config in found.items() if config is not None}
    rendered = ours({key: registry()[key] for key in found})
    out = []
    for key, (name, theirs) in found.items():
        spec = registry()[key]
        a, b = flat(theirs), flat(rendered[key])
        rows = [{"key": k, "torchtune": a.get(k, ABSENT), "ours": b.get(k, ABSENT), "why": reason(k)}
                for k in sorted(set(a) | set(b)) if a.get(k, ABSENT) != b.get(k, ABSENT)]
        out.append({"model": key, "config": name, "recipe": RECIPES[spec.recipe], "rows": rows})
    return out


def document(models: list[dict]) -> str:
    lines = ["# Our finetune.yaml vs torchtune's shipped configs",
             "",
             "Generated by `python scripts/torchtune_config_diffs.py` (tests/test_torchtune_diffs.py checks that it",
             "is current). For each registry model: every key where the finetune.yaml cruijff_kit renders for a",
             "design with the default controls differs from the torchtune 0.6.1 config for the same LoRA builder",
             "and recipe (`tune cp CONFIG .` copies it), and why. `(absent)`: the key is not in that file.",
             "Paths: `{scratch}` is the scratch dir, `<design dir>` the folder holding the design.",
             "The locally built tiny models have no torchtune config.", ""]
    for m in models:
        lines += [f"## {m['model']}", "", f"torchtune config `{m['config']}` (recipe `{m['recipe']}`): "
                  f"{len(m['rows'])} keys differ.", "",
                  "| key | torchtune | ours | why |", "|---|---|---|---|"]
        lines += [f"| `{r['key']}` | {show(r['torchtune'])} | {show(r['ours'])} | {r['why'] or 'MISSING REASON'} |"
                  for r in m["rows"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the doc is not current")
    args = parser.parse_args(argv)
    models = diffs()
    missing = sorted({f"{m['model']}: {r['key']}" for m in models for r in m["rows"] if not r["why"]})
    if missing:
        print("keys with no reason in REASONS: " + ", ".join(missing), file=sys.stderr)
        return 1
    text = document(models)
    if args.check:
        current = DOC.is_file() and DOC.read_text() == text
        print(f"{DOC.relative_to(REPO)} is {'current' if current else 'NOT current: rerun the script'}")
        return 0 if current else 1
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(REPO)}: {sum(len(m['rows']) for m in models)} rows for {len(models)} models")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
