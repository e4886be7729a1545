"""Training throughput: cruijff_kit's LoRA recipe vs torchtune's stock `lora_finetune_single_device`.

Both recipes train the locally built tiny model on the same config (validation off, constant-target data,
one epoch, batch 4) as `tune run` subprocesses, alternating (A B B A ...) so that other load hits both alike.

Two measures:

* **CPU throughput** (the headline number; robust on a shared machine): each recipe runs once with
  --short and once with --long optimizer steps, single-threaded (OMP_NUM_THREADS=1); the difference in
  the child's CPU time (user + sys) is the cost of the extra steps, start-up and checkpoint cost cancel.
  tokens/s = trained tokens of the extra steps / that CPU time.
* **Wall throughput**: the median of the `tokens_per_second_per_gpu` both recipes log every step (trained
  tokens / step wall time) in the long runs, first --warmup steps dropped. Noisy when other jobs compete.

    python benchmarks/recipe_throughput.py [--short 10] [--long 70] [--repeats 3] [--threads 1] [--json f]

Target: CPU ratio (ours / stock) >= 0.97.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
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


_TPS = re.compile(r"^Step (\d+) \|.*\btokens_per_second_per_gpu:([0-9.eE+-]+)")


def _per_step_tps(log: Path) -> list[float]:
    out = []
    for line in log.read_text().splitlines():
        m = _TPS.match(line)
        if m:
            out.append(float(m.group(2)))
    return out


def _run(kind: str, cfg: Path, out_dir: Path, steps: int, env: dict) -> dict:
    tune = str(Path(sys.executable).parent / "tune")
    recipe = OURS if kind == "ours" else STOCK
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([tune, "run", recipe, "--config", str(cfg), f"output_dir={out_dir}",
                           f"max_steps_per_epoch={steps}"], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tps = _per_step_tps(out_dir / "logs" / "log.txt")
    if len(tps) != steps:
        raise SystemExit(f"{kind}: expected {steps} logged steps, got {len(tps)}")
    return {"wall_s": wall, "cpu_s": cpu, "tps": tps}


def _trained_tokens_per_step(model_dir: Path, data: Path, batch_size: int) -> float:
    """Mean unmasked label tokens per optimizer step (every example of the benchmark data has the same)."""
    from torchtune.models.llama3 import llama3_tokenizer

    from cruijff_kit.tools.torchtune.datasets import input_output_dataset

    ds = input_output_dataset(llama3_tokenizer(str(model_dir / "original" / "tokenizer.model"), max_seq_len=64),
                              source=str(data), split="train")
    counts = [sum(1 for lab in ds[i]["labels"] if lab != -100) for i in range(len(ds))]
    assert len(set(counts)) == 1, "benchmark data should have the same trained tokens per example"
    return counts[0] * batch_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", type=int, default=10, help="optimizer steps of the short runs")
    ap.add_argument("--long", type=int, default=70, help="optimizer steps of the long runs")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="short + long runs per recipe, interleaved")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs (0: torch's default)")
    ap.add_argument("--warmup", type=int, default=5, help="steps dropped from the wall measure")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    if not 0 < args.short < args.long:
        ap.error("need 0 < --short < --long")

    import yaml

    from cruijff_kit.models.tiny import lora_config, make_tiny

    with tempfile.TemporaryDirectory(prefix="ck-bench-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp / "tiktoken"), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}
        if args.threads:
            env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", env["TIKTOKEN_CACHE_DIR"])
        model_dir = make_tiny(tmp / "tiny-llama")
        rng = random.Random(0)
        data = tmp / "data.json"
        data.write_text(json.dumps({"train": [
            {"input": ",".join(str(rng.randint(1, 1000)) for _ in range(5)), "output": "42"}
            for _ in range(args.long * args.batch_size)
        ]}))
        per_step = _trained_tokens_per_step(model_dir, data, args.batch_size)
        cfg = tmp / "finetune.yaml"
        # the same config for both recipes; output_dir is set per run on the command line
        cfg.write_text(yaml.safe_dump(lora_config(model_dir, data, tmp / "unused", batch_size=args.batch_size)))
        runs: dict[str, list[dict]] = {"ours": [], "stock": []}
        n = 0
        for i in range(args.repeats):
            pair = {}
            for kind in (("ours", "stock") if i % 2 == 0 else ("stock", "ours")):
                short = _run(kind, cfg, tmp / f"run{n}", args.short, env)
                long_ = _run(kind, cfg, tmp / f"run{n + 1}", args.long, env)
                n += 2
                extra_cpu = long_["cpu_s"] - short["cpu_s"]
                r = {"cpu_tokens_per_s": per_step * (args.long - args.short) / extra_cpu,
                     "wall_tokens_per_s": statistics.median(long_["tps"][args.warmup:]),
                     "cpu_s_per_step": extra_cpu / (args.long - args.short),
                     "process_wall_s": long_["wall_s"], "process_cpu_s": long_["cpu_s"]}
                runs[kind].append(r)
                pair[kind] = r
                print(f"repeat {i} {kind:5s}: {r['cpu_tokens_per_s']:7.1f} tokens/CPU-s "
                      f"({1000 * r['cpu_s_per_step']:.0f} ms CPU/step), wall {r['wall_tokens_per_s']:6.1f} "
                      f"tokens/s, long run {r['process_wall_s']:.1f}s wall", flush=True)
            print(f"repeat {i} ratio: cpu {pair['ours']['cpu_tokens_per_s'] / pair['stock']['cpu_tokens_per_s']:.3f}"
                  f", wall {pair['ours']['wall_tokens_per_s'] / pair['stock']['wall_tokens_per_s']:.3f}", flush=True)

    def agg(kind: str) -> dict:
        rs = runs[kind]
        return {key: statistics.median(r[key] for r in rs) for key in rs[0]} | {
            "per_repeat_cpu_tokens_per_s": [round(r["cpu_tokens_per_s"], 2) for r in rs]}

    result = {"ours": agg("ours"), "stock": agg("stock"), "trained_tokens_per_step": per_step,
              "short_steps": args.short, "long_steps": args.long, "batch_size": args.batch_size,
              "repeats": args.repeats, "threads": args.threads or "default", "device": "cpu",
              "model": "tiny-llama (8.3M params, vocab 128256)"}
    result["ratio_cpu"] = result["ours"]["cpu_tokens_per_s"] / result["stock"]["cpu_tokens_per_s"]
    result["ratio_wall"] = result["ours"]["wall_tokens_per_s"] / result["stock"]["wall_tokens_per_s"]
    for kind in ("ours", "stock"):
        r = result[kind]
        print(f"{kind:5s}: {r['cpu_tokens_per_s']:.1f} trained tokens per CPU-second, "
              f"{r['wall_tokens_per_s']:.1f} tokens/s wall")
    print(f"ratio ours/stock: cpu {result['ratio_cpu']:.3f}, wall {result['ratio_wall']:.3f} (target >= 0.97)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
