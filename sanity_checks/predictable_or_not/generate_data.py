"""Generate the predictable_or_not data: four scenarios, 1000 examples each, 900 train / 100 validation.

    pp  predictable input, predictable output:   "42,43,44,45,46" -> "47"
    pu  predictable input, unpredictable output: "42,43,44,45,46" -> random 1..1000
    up  unpredictable input, predictable output: 5 random ints    -> "42"
    uu  unpredictable input, unpredictable output

Seeded, so the files are byte-identical on every machine. Writes
data/green/predictable_or_not/{pp,pu,up,uu}.json next to this script (or under --out).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

SCENARIOS = ("pp", "pu", "up", "uu")
N_EXAMPLES, N_TRAIN = 1000, 900


def example(scenario: str, rng: random.Random) -> dict:
    if scenario[0] == "p":
        start = rng.randint(1, 995)
        numbers = list(range(start, start + 5))
    else:
        numbers = [rng.randint(1, 1000) for _ in range(5)]
    if scenario == "pp":
        output = numbers[-1] + 1
    elif scenario == "up":
        output = 42
    else:
        output = rng.randint(1, 1000)
    return {"input": ",".join(str(n) for n in numbers), "output": str(output)}


def scenario_data(scenario: str, seed: int) -> dict:
    rng = random.Random(f"{seed}-{scenario}")
    rows = [example(scenario, rng) for _ in range(N_EXAMPLES)]
    return {"train": rows[:N_TRAIN], "validation": rows[N_TRAIN:]}


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "data/green/predictable_or_not"),
                        help="output directory (default: data/green/predictable_or_not beside this script)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    out = Path(args.out)
    for scenario in SCENARIOS:
        data = scenario_data(scenario, args.seed)
        write_atomic(out / f"{scenario}.json", json.dumps(data, indent=1) + "\n")
        print(f"wrote {out / f'{scenario}.json'} ({len(data['train'])} train, {len(data['validation'])} validation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
