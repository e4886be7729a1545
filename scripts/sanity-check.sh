#!/usr/bin/env bash
# The main job: the predictable_or_not sanity check, end to end on this machine's CPU.
#   data -> tiny model -> validate -> scaffold (--profile tiny) -> train 8 runs + eval -> summarize
# Everything lands under $CK_SCRATCH (default ./ck-scratch). Re-running continues where it stopped.
# CK_EXECUTOR=slurm sends the jobs through SLURM; CK_PRIORS=DIR adds an earlier scratch dir of prior runs
# to every estimate (estimate, the plan's Compute Estimates, the scripts' --time).
set -euo pipefail
cd "$(dirname "$0")/.."
export CK_SCRATCH="${CK_SCRATCH:-$PWD/ck-scratch}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE="${WANDB_MODE:-offline}"
CK=".venv/bin/cruijff-kit"
DESIGN=sanity_checks/predictable_or_not
EXECUTOR="${CK_EXECUTOR:-local}"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "1/6 generate the sanity-check data (seeded, 4 scenarios x 1000 examples)"
.venv/bin/python "$DESIGN/generate_data.py"

step "2/6 build the tiny Llama-3.2-architecture model locally (no model hub needed)"
MODELS_DIR="$($CK config show --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["models_dir (resolved)"]["value"])')"
$CK models make-tiny "$MODELS_DIR/tiny-llama"

step "3/6 validate the design and check its resources"
$CK validate "$DESIGN" --profile tiny
$CK design verify "$DESIGN" --profile tiny

step "4/6 scaffold run directories, configs and job scripts; estimate; render the plan"
$CK scaffold "$DESIGN" --profile tiny
$CK estimate "$DESIGN" --profile tiny
$CK design summary "$DESIGN" --profile tiny
EXP_DIR="$($CK validate "$DESIGN" --profile tiny --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["dir"])')"

step "5/6 train 8 runs and evaluate them ($EXECUTOR executor)"
$CK run "$EXP_DIR" --executor "$EXECUTOR" --wait
$CK status "$EXP_DIR"

step "6/6 summarize: losses, eval scores, plots, report"
$CK summarize "$EXP_DIR"

printf '\nDone. Results:\n  plan and status: %s/experiment_summary.md\n  report:          %s/analysis/summary.md\n  plots:           %s/analysis/*.png\n  logs:            %s/run-experiment.log\n' \
  "$EXP_DIR" "$EXP_DIR" "$EXP_DIR" "$EXP_DIR"
