"""Write the sft_then_dpo example's instruction data: data/answer42.json (seeded, small).

Every question asks for "the answer" in a different wording and the answer is always 42: a task a
2-layer random-weight tiny model learns in ~20 LoRA steps, and one it cannot do before training
(so the `verify` stage's gate sees the base model fail). Splits: train, validation, test.

  python examples/sft_then_dpo/make_data.py [--seed 0] [--out examples/sft_then_dpo/data/answer42.json]
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUBJECTS = ["life", "the universe", "everything", "the puzzle", "the riddle", "the question", "the quiz", "the test"]
FORMS = ["What is the answer to {s}? (#{n})", "Tell me the answer to {s}, item {n}.", "Answer for {s} number {n}?"]


def make(seed: int = 0, sizes: dict | None = None) -> dict:
    rng = random.Random(seed)
    sizes = sizes or {"train": 64, "validation": 16, "test": 16}
    out = {}
    for split, n in sizes.items():
        out[split] = [{"input": rng.choice(FORMS).format(s=rng.choice(SUBJECTS), n=rng.randint(1, 999)),
                       "output": "42"} for _ in range(n)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "data" / "answer42.json"))
    args = ap.parse_args()
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(make(args.seed), indent=1) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
