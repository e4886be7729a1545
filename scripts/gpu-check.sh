#!/usr/bin/env bash
# GPU check (issue 14 item 8): on a CUDA machine, train + evaluate the tiny model with device cuda and
# bf16 through the normal pipeline, run the prompt-parity check, and print tokens/s and GPU peak memory.
#   scripts/gpu-check.sh            (needs nvidia-smi and a CUDA build of torch in .venv)
# Everything lands under $CK_SCRATCH/gpu-check (default ./ck-scratch/gpu-check). Exit 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
CK="$PY -m cruijff_kit"
command -v nvidia-smi >/dev/null || { echo "gpu-check: nvidia-smi not found; this is not a GPU machine" >&2; exit 1; }
$PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu-check: torch sees no CUDA device (CPU-only torch build?)" >&2; exit 1; }
export CK_SCRATCH="${CK_SCRATCH:-$PWD/ck-scratch}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TIKTOKEN_CACHE_DIR=""
ROOT="$CK_SCRATCH/gpu-check"
rm -rf "$ROOT/exp" && mkdir -p "$ROOT"
printf '# gpu-check settings\n' > "$ROOT/claude.local.md"
export CK_SETTINGS="$ROOT/claude.local.md"

echo "==> tiny models (default and qwen2_5_instruct)"
$CK models make-tiny "$ROOT/models/tiny-llama" >/dev/null
$CK models make-tiny "$ROOT/models/tiny-qwen2_5_instruct" --family qwen2_5_instruct >/dev/null

echo "==> design: fine-tuned + control per model, device cuda, dtype bf16"
ROOT="$ROOT" $PY - <<'PYEOF'
import json, os, random
from pathlib import Path
import yaml
root = Path(os.environ["ROOT"])
rng = random.Random(0)
rec = lambda: {"input": ",".join(str(rng.randint(1, 999)) for _ in range(5)), "output": "42"}
(root / "data").mkdir(exist_ok=True)
(root / "data" / "const.json").write_text(json.dumps({"train": [rec() for _ in range(256)],
                                                      "validation": [rec() for _ in range(32)]}))
task = Path("sanity_checks/predictable_or_not/predictable_or_not_task.py").resolve()
models = [{"name": "tiny-llama", "path": str(root / "models" / "tiny-llama")},
          {"name": "tiny-qwen2_5_instruct", "path": str(root / "models" / "tiny-qwen2_5_instruct")}]
runs, matrix = [], []
for m in models:
    short = "llama" if m["name"] == "tiny-llama" else "qwen"
    runs += [{"name": f"{short}_ft", "type": "fine-tuned", "model": m["name"]},
             {"name": f"{short}_base", "type": "control", "model": m["name"]}]
    matrix += [{"run": f"{short}_ft", "tasks": ["const"], "epochs": [0]},
               {"run": f"{short}_base", "tasks": ["const"], "epochs": None}]
doc = {"experiment": {"name": "gpu_check", "question": "Does the pipeline run on this GPU?", "date": "2025-01-01",
                      "type": "experiment", "dir": str(root / "exp")},
       "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
       "controls": {"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 16, "lr": 0.01, "max_seq_len": 64,
                    "device": "cuda", "dtype": "bf16", "prompt": "{input}", "system_prompt": ""},
       "models": {"base": models}, "data": {"training": {"path": str(root / "data" / "const.json")}},
       "runs": runs,
       "evaluation": {"scorers": [{"name": "match", "params": {"location": "exact"}}],
                      "tasks": [{"name": "const", "script": str(task), "function": "predictable_or_not"}],
                      "matrix": matrix, "max_tokens": 8, "limit": 32}}
(root / "design").mkdir(exist_ok=True)
(root / "design" / "experiment_summary.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
PYEOF

echo "==> scaffold (runs the prompt check) and cruijff-kit prompts"
$CK scaffold "$ROOT/design/experiment_summary.yaml"
$CK prompts "$ROOT/exp"

echo "==> train and evaluate on the GPU (every job samples nvidia-smi every second into its compute.json)"
export CK_GPU_SAMPLE_S=1
START=$(date +%s)
$CK run "$ROOT/exp" --executor local --wait
END=$(date +%s)

echo "==> figures"
ROOT="$ROOT" WALL=$((END - START)) SCRATCH="$CK_SCRATCH" $PY - <<'PYEOF'
import json, os, re
from pathlib import Path
root, scratch = Path(os.environ["ROOT"]), Path(os.environ["SCRATCH"])
rates = []
for log in scratch.glob("ck-outputs/gpu_check/*/logs/*.txt"):
    rates += [float(m.group(1)) for m in re.finditer(r"tokens_per_second_per_gpu:([0-9.]+)", log.read_text())]
print(f"wall {os.environ['WALL']} s for 2 trainings + 4 evals")
print(f"training tokens/s per GPU: mean {sum(rates) / len(rates):.0f}, max {max(rates):.0f}" if rates
      else "training tokens/s: no training log found")
# per job: the nvidia-smi summary the job recorded in its compute.json (cruijff_kit/compute/records.py)
print(f"{'job':<34} {'wall s':>7} {'peak MiB':>9} {'util %':>7} {'mean W':>7} {'peak W':>7}")
for path in sorted((root / "exp").rglob("compute.json")):
    record = json.loads(path.read_text())
    gpu = (record.get("gpu") or {}).get("summary") or {}
    cell = lambda key, form: form.format(gpu[key]) if gpu.get(key) is not None else "-"
    print(f"{record.get('job', path.parent.name):<34} {record.get('wall_s') or 0:>7.1f} "
          f"{cell('peak_memory_mib', '{:.0f}'):>9} {cell('mean_utilization_pct', '{:.0f}'):>7} "
          f"{cell('mean_power_w', '{:.0f}'):>7} {cell('peak_power_w', '{:.0f}'):>7}")
PYEOF
$CK status "$ROOT/exp"
