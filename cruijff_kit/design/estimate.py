"""Estimate before spending: per run and in total — training time, eval time, checkpoint disk, GPU-hours,
cost (with a GPU hourly cost in claude.local.md) and a recommended SLURM --time with a safety margin.

Prior runs are preferred: compute records (`{experiment}/{run}/compute.json`) under the scratch dir (and
any --priors dir) are searched, the most similar run is chosen (same model, then nearest sequence length
and batch size) and time = tokens / measured throughput + measured overhead. Without priors, defaults by
model size are used and marked preliminary. Every step is logged to design-experiment.log
(SEARCH_PRIOR_RUNS, EXTRACT_SPEED, CALCULATE_TIME, CHECK_DISK).

--check compares the last estimate with what the runs actually took, reports the error per run, and
stores it in {scratch}/ck-estimates/history.jsonl so later estimates are calibrated by it.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from cruijff_kit.errors import UserError
from cruijff_kit.experiment import layout

PREDICTIONS = ".ck/estimate.json"
CHECK = ".ck/estimate_check.json"


def configure(parser) -> None:
    parser.add_argument("experiment", help="experiment_summary.yaml or the experiment directory")
    parser.add_argument("--profile", help="apply a profile from the design's `profiles:`")
    parser.add_argument("--priors", action="append", default=[], metavar="DIR",
                        help="another scratch dir to search for prior runs (repeatable; $CK_PRIORS, "
                             "os.pathsep-separated, adds dirs for every command that estimates)")
    parser.add_argument("--check", action="store_true",
                        help="compare the last estimate with the actual run times and store the error")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--no-log", action="store_true", help="do not append to design-experiment.log")


def main(args) -> int:
    from cruijff_kit.experiment.load import load_experiment
    from cruijff_kit.settings import load_settings

    from dataclasses import replace

    settings = load_settings()
    exp = load_experiment(args.experiment, profile=args.profile, settings=settings)
    if layout.is_scaffolded(args.experiment):
        exp = replace(exp, dir=Path(args.experiment).resolve())  # a (moved) experiment dir is where it is
    if args.check:
        return check_main(exp, settings, args)
    return estimate_main(exp, settings, args)


def estimate_main(exp, settings, args) -> int:
    from cruijff_kit import logbook
    from cruijff_kit.compute.estimates import most_similar, plan_estimates, totals
    from cruijff_kit.files import write_json

    plan = plan_estimates(exp, settings, args.priors)
    roots, priors, factor, estimates = plan.roots, plan.priors, plan.calibration, plan.estimates
    total = totals(estimates)
    write_json(exp.dir / PREDICTIONS, {"experiment": exp.name, "calibration": factor,
                                       "runs": {e.run: asdict(e) for e in estimates}, "totals": total})
    if not args.no_log:
        path = exp.dir / logbook.LOG_NAMES["design"]
        logbook.log(path, "SEARCH_PRIOR_RUNS", f"{len(priors)} prior run(s) with compute records",
                    command=f"glob {', '.join(str(r) for r in roots)} for */{layout.RUN_COMPUTE_GLOB}",
                    result=", ".join(sorted({Path(p.path).parent.name for p in priors})) or "none",
                    explanation="measured throughput beats defaults; same model first, then seq len and batch")
        used = {}
        for run in exp.runs:
            prior = most_similar(priors, run.model, run.controls.batch_size, run.controls.max_seq_len, run.name)
            if prior and prior.path not in used:
                used[prior.path] = prior
                logbook.log(path, "EXTRACT_SPEED", f"{Path(prior.path).parent.name}: {prior.tokens_per_s:.0f} tokens/s",
                            command=f"read {prior.path}",
                            result=f"{prior.tokens} tokens in {prior.train_s:.1f} s, "
                                   f"overhead {prior.overhead_per_epoch:.1f} s/epoch",
                            explanation=f"model {prior.model}, batch {prior.batch_size}, seq {prior.max_seq_len}")
        for e in estimates:
            logbook.log(path, "CALCULATE_TIME", f"{e.run}: {e.train_s / 60:.1f} min train, {e.eval_s / 60:.1f} min eval",
                        command="cruijff-kit estimate", result=f"--time {e.recommended_time}, {e.gpu_hours} GPU-h",
                        explanation=f"basis: {e.basis}" + (" (preliminary)" if e.preliminary else ""),
                        calculation=f"{e.tokens} tokens / {e.tokens_per_s:.0f} tokens/s + overhead; "
                                    f"x calibration {factor:.2f}")
        per_epoch = ", ".join(sorted({f"{e.disk_per_epoch_merged_gb:g} GB merged / {e.disk_per_epoch_adapter_gb:g} GB "
                                      f"adapter" for e in estimates if e.disk_per_epoch_merged_gb}))
        logbook.log(path, "CHECK_DISK", f"checkpoints need {total['disk_gb']:.2f} GB",
                    command="cruijff-kit estimate", result=f"{total['disk_gb']:.2f} GB for all runs",
                    explanation="merged model or adapter per saved epoch"
                                + (f" (per epoch: {per_epoch})" if per_epoch else ""))
    if args.json:
        print(json.dumps({"runs": [asdict(e) for e in estimates], "totals": total, "priors": len(priors),
                          "calibration": factor}, indent=2))
        return 0
    print(f"{exp.name}: {len(priors)} prior run(s) found; calibration x{factor:.2f}"
          + ("; PRELIMINARY (defaults by model size)" if total["preliminary"] else ""))
    print(f"{'run':<32} {'train min':>9} {'eval min':>9} {'disk GB':>8} {'GPU-h':>7} {'cost':>7}  --time    "
          f"{'batch':>5}  basis")
    for e in estimates:
        batch = f"{e.recommended_batch_size}" + (f"x{e.recommended_grad_accum}" if e.recommended_grad_accum > 1 else "")
        print(f"{e.run:<32} {e.train_s / 60:>9.1f} {e.eval_s / 60:>9.1f} {e.disk_gb:>8.2f} {e.gpu_hours:>7.3f} "
              f"{e.cost:>7.2f}  {e.recommended_time}  {batch:>5}  {e.basis}")
    print(f"{'total':<32} {total['train_s'] / 60:>9.1f} {total['eval_s'] / 60:>9.1f} {total['disk_gb']:>8.2f} "
          f"{total['gpu_hours']:>7.3f} {total['cost']:>7.2f}")
    return 0


def check_main(exp, settings, args) -> int:
    from cruijff_kit.compute.estimates import HISTORY, eval_walls, experiment_priors
    from cruijff_kit.files import read_json, write_json

    predicted = read_json(exp.dir / PREDICTIONS)
    if not predicted:
        raise UserError("no stored estimate to check", where=str(exp.dir),
                        hint=f"run `cruijff-kit estimate {exp.dir}` before the runs, then --check after")
    actual = {Path(p.path).parent.name: p for p in experiment_priors(exp.dir)}
    rows = []
    for name, est in predicted["runs"].items():
        if name in actual and est["train_s"] > 0:
            real = actual[name].train_s
            row = {"run": name, "predicted_s": est["train_s"], "actual_s": round(real, 1),
                   "error_pct": round(100 * (est["train_s"] - real) / real, 1),
                   "ratio": round(real / est["train_s"], 4), "model": actual[name].model}
            walls = eval_walls(exp.dir / name)
            if walls and est.get("eval_s"):
                row.update(eval_predicted_s=est["eval_s"], eval_actual_s=round(sum(walls), 1), eval_cells=len(walls),
                           eval_error_pct=round(100 * (est["eval_s"] - sum(walls)) / sum(walls), 1))
            rows.append(row)
    if not rows:
        raise UserError("no finished training runs with compute records to compare", where=str(exp.dir),
                        hint="run the experiment first (cruijff-kit run ... --wait)")
    write_json(exp.dir / CHECK, {"experiment": exp.name, "runs": rows})
    history = settings.scratch / HISTORY
    history.parent.mkdir(parents=True, exist_ok=True)
    with open(history, "a") as fh:
        for row in rows:
            fh.write(json.dumps({"experiment": exp.name, **row}) + "\n")
    if args.json:
        print(json.dumps({"runs": rows}, indent=2))
        return 0
    print(f"{'run':<32} {'train: predicted s':>18} {'actual s':>9} {'error':>7}   "
          f"{'eval: predicted s':>17} {'actual s':>9} {'error':>7}")
    for r in rows:
        evals = (f"{r['eval_predicted_s']:>17.1f} {r['eval_actual_s']:>9.1f} {r['eval_error_pct']:>6.1f}%"
                 if "eval_error_pct" in r else f"{'-':>17} {'-':>9} {'-':>7}")
        print(f"{r['run']:<32} {r['predicted_s']:>18.1f} {r['actual_s']:>9.1f} {r['error_pct']:>6.1f}%   {evals}")
    worst = max(abs(r["error_pct"]) for r in rows)
    eval_errors = [abs(r["eval_error_pct"]) for r in rows if "eval_error_pct" in r]
    print(f"worst training error {worst:.1f}% over {len(rows)} run(s)"
          + (f", worst eval error {max(eval_errors):.1f}%" if eval_errors else "")
          + f"; stored in {history} (training ratios calibrate later estimates)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from cruijff_kit.cli import verb_entry

    verb_entry("estimate")
