"""Training throughput: cruijff_kit's LoRA recipe vs torchtune's stock `lora_finetune_single_device`.

Both recipes train the locally built tiny model on the same config (validation off, constant-target data,
one epoch) in alternating subprocesses (A B A B ...), so load from other processes hits both alike. The
number compared is what both write to their DiskLogger every step, `tokens_per_second_per_gpu` (trained
tokens / step time); the first --warmup steps of each run are dropped, each run is summarised by its median
and each recipe by the median over its runs. Process wall time is reported too.

    python benchmarks/recipe_throughput.py [--steps 60] [--repeats 3] [--json out.json]

Target: ratio (ours / stock) >= 0.97.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OURS = "cruijff_kit/tools/torchtune/custom_recipes/lora_finetune_single_device_val.py"
STOCK = "lora_finetune_single_device"

CONFIG = """\
output_dir: {output_dir}
model:
  _component_: torchtune.models.llama3_2.lora_llama3_2
  vocab_size: 128256
  num_layers: 2
  num_heads: 4
  num_kv_heads: 2
  embed_dim: 64
  max_seq_len: 2048
  intermediate_dim: 128
  attn_dropout: 0.0
  norm_eps: 1.0e-05
  rope_base: 500000
  scale_factor: 32
  tie_word_embeddings: true
  lora_attn_modules: [q_proj, k_proj, v_proj, output_proj]
  apply_lora_to_mlp: true
  apply_lora_to_output: false
  lora_rank: 8
  lora_alpha: 16
  lora_dropout: 0.0
tokenizer:
  _component_: torchtune.models.llama3.llama3_tokenizer
  path: {model_dir}/original/tokenizer.model
  max_seq_len: 64
checkpointer:
  _component_: torchtune.training.FullModelHFCheckpointer
  checkpoint_dir: {model_dir}
  checkpoint_files: [model.safetensors]
  model_type: LLAMA3_2
  output_dir: ${{output_dir}}
resume_from_checkpoint: false
save_adapter_weights_only: false
dataset:
  _component_: cruijff_kit.tools.torchtune.datasets.input_output_dataset
  source: {data}
  split: train
  dataset_type: chat_completion
  prompt: "{{input}}"
  train_on_input: false
  packed: false
seed: 0
shuffle: true
batch_size: {batch_size}
run_val_every_n_steps: 0
epochs: 1
max_steps_per_epoch: null
gradient_accumulation_steps: 1
optimizer:
  _component_: torch.optim.AdamW
  lr: 0.01
  weight_decay: 0.0
lr_scheduler:
  _component_: torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup
  num_warmup_steps: 0
loss:
  _component_: torchtune.modules.loss.CEWithChunkedOutputLoss
device: cpu
dtype: fp32
enable_activation_checkpointing: false
compile: false
log_every_n_steps: 1
log_peak_memory_stats: false
metric_logger:
  _component_: torchtune.training.metric_logging.DiskLogger
  log_dir: ${{output_dir}}/logs
  filename: log.txt
"""

_TPS = re.compile(r"^Step (\d+) \|.*\btokens_per_second_per_gpu:([0-9.eE+-]+)")


def _per_step_tps(log: Path) -> list[float]:
    out = []
    for line in log.read_text().splitlines():
        m = _TPS.match(line)
        if m:
            out.append(float(m.group(2)))
    return out


def _run(kind: str, cfg: Path, out_dir: Path, env: dict) -> dict:
    tune = str(Path(sys.executable).parent / "tune")
    recipe = OURS if kind == "ours" else STOCK
    t0 = time.perf_counter()
    proc = subprocess.run([tune, "run", recipe, "--config", str(cfg), f"output_dir={out_dir}"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-4000:]}")
    return {"wall_s": wall, "tps": _per_step_tps(out_dir / "logs" / "log.txt")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per run (one epoch)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="runs per recipe, interleaved")
    ap.add_argument("--warmup", type=int, default=5, help="steps dropped at the start of each run")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)

    from cruijff_kit.models.tiny import make_tiny

    with tempfile.TemporaryDirectory(prefix="ck-bench-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp / "tiktoken"), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", env["TIKTOKEN_CACHE_DIR"])
        model_dir = make_tiny(tmp / "tiny-llama")
        rng = random.Random(0)
        n = args.steps * args.batch_size
        data = tmp / "data.json"
        data.write_text(json.dumps({"train": [
            {"input": ",".join(str(rng.randint(1, 1000)) for _ in range(5)), "output": "42"} for _ in range(n)
        ]}))
        cfg = tmp / "finetune.yaml"
        cfg.write_text(CONFIG.format(output_dir=tmp / "unused", model_dir=model_dir, data=data,
                                     batch_size=args.batch_size))
        runs: dict[str, list[dict]] = {"ours": [], "stock": []}
        for i in range(args.repeats):
            for kind in (("ours", "stock") if i % 2 == 0 else ("stock", "ours")):
                r = _run(kind, cfg, tmp / f"{kind}_{i}", env)
                steady = r["tps"][args.warmup:] or r["tps"]
                r["median_tps"] = statistics.median(steady)
                runs[kind].append(r)
                print(f"run {i} {kind:5s}: median {r['median_tps']:.1f} trained tokens/s over {len(steady)} "
                      f"steps, process wall {r['wall_s']:.1f}s", flush=True)

    def agg(kind: str) -> dict:
        rs = runs[kind]
        return {"tokens_per_s": statistics.median(r["median_tps"] for r in rs),
                "per_run_tokens_per_s": [round(r["median_tps"], 2) for r in rs],
                "wall_s": statistics.median(r["wall_s"] for r in rs)}

    result = {"ours": agg("ours"), "stock": agg("stock"), "steps": args.steps, "batch_size": args.batch_size,
              "repeats": args.repeats, "device": "cpu", "model": "tiny-llama (8.3M params)"}
    result["ratio"] = result["ours"]["tokens_per_s"] / result["stock"]["tokens_per_s"]
    print(f"\nours : {result['ours']['tokens_per_s']:.1f} tokens/s (wall {result['ours']['wall_s']:.1f}s)")
    print(f"stock: {result['stock']['tokens_per_s']:.1f} tokens/s (wall {result['stock']['wall_s']:.1f}s)")
    print(f"ratio ours/stock: {result['ratio']:.3f} (target >= 0.97)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
