"""Paired comparisons and replicate aggregates over the per-sample scores of eval logs (numpy + scipy).

A *configuration* is a set of runs that differ only in their seed (`replicates: N` in controls, or `seed`
as a design variable): its replicates. An *arm* is a configuration's cells on one task at one epoch.
Two arms are compared on the samples both scored (matched by sample id and inspect epoch):

* every fine-tuned arm against its control on the same task (the control the cell's `base_run` names);
* within each design variable, every pair of its levels whose other variables are equal (same task,
  same epoch), the later level minus the earlier one in design order.

Per comparison and scorer: the mean difference, a paired bootstrap 95% CI (samples resampled together for
both arms and, when an arm has replicates, its seeds resampled too, so seed variance widens the CI), and a
two-sided p-value: McNemar's exact test (scipy.stats.binomtest on the discordant pairs) when both arms
are one run with 0/1 scores, else the bootstrap p-value (twice the smaller tail of the bootstrap
distribution around 0). p-values are Holm-corrected within each table (one table per task and scorer).

Replicate aggregates: per configuration, task, epoch and score metric, the mean across seeds, a 95%
t-interval across seeds (scipy.stats.t) and the per-seed min / max / sd.

inspect-ai, numpy and scipy are imported inside the functions that use them (the CLI stays light).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RESAMPLES = 10_000
BLOCK = 2_000_000  # resamples x samples held in memory at once
SEED = 20251027
ALPHA = 0.05
REPLICATE_SUFFIX = re.compile(r"_s\d+$|_seed-?\d+")  # `replicates: N` names, and `seed` as a variable


# -- per-sample scores -----------------------------------------------------------------------------
def sample_scores(path: Path) -> dict[str, dict[tuple, float]]:
    """{scorer: {(sample id, epoch): value as float}} of one .eval log (C/I/P/N, bools and numbers)."""
    from inspect_ai.log import read_eval_log
    from inspect_ai.scorer import value_to_float

    to_float = value_to_float()
    out: dict[str, dict[tuple, float]] = {}
    log = read_eval_log(str(path))
    for sample in log.samples or []:
        for name, score in (sample.scores or {}).items():
            value = score.value
            if isinstance(value, dict) or isinstance(value, list):
                continue  # multi-valued scores have no single per-sample number
            try:
                number = float(to_float(value))
            except (TypeError, ValueError):
                continue
            if number == number:  # NaN: unscored
                out.setdefault(name, {})[(str(sample.id), sample.epoch)] = number
    return out


# -- configurations and arms -----------------------------------------------------------------------
def config_key(run) -> tuple:
    """Runs with the same key are replicates of one configuration (they differ only in seed)."""
    params = {k: v for k, v in (run.parameters or {}).items() if k != "seed"}
    return (run.type, run.model, run.dataset_label, tuple(sorted((k, repr(v)) for k, v in params.items())))


def configurations(exp) -> dict[str, list[str]]:
    """{configuration name: [run names]} in design order; a replicated configuration drops the `_sN` suffix."""
    groups: dict[tuple, list] = {}
    for run in exp.runs:
        groups.setdefault(config_key(run), []).append(run.name)
    out = {}
    for names in groups.values():
        stems = {REPLICATE_SUFFIX.sub("", n) for n in names}
        label = stems.pop() if len(names) > 1 and len(stems) == 1 else names[0]
        if label in out:
            label = names[0]
        out[label] = names
    return out


@dataclass
class Arm:
    config: str
    task: str
    epoch: int | str | None  # a number, best / last (each replicate's own pick), None for base
    cells: list = field(default_factory=list)  # successful CellResults, one per replicate
    scores: list = field(default_factory=list)  # per replicate: {scorer: {key: value}}

    @property
    def label(self) -> str:
        return self.config if self.epoch is None else f"{self.config} (epoch {self.epoch})"


def arms(collected, reader=sample_scores) -> dict[tuple, Arm]:
    """{(config, task, epoch): Arm} of the successful cells with a log, per-sample scores read."""
    run_config = {run: name for name, runs in configurations(collected.exp).items() for run in runs}
    out: dict[tuple, Arm] = {}
    for cell in collected.cells:
        if cell.status != "success" or not cell.log:
            continue
        path = Path(cell.log)
        path = path if path.is_absolute() else collected.exp_dir / path
        try:
            scores = reader(path)
        except Exception:  # noqa: BLE001 - an unreadable log was flagged by collect already
            continue
        key = (run_config[cell.run], cell.task, cell.epoch)
        arm = out.setdefault(key, Arm(*key))
        arm.cells.append(cell)
        arm.scores.append(scores)
    return out


def matrix(arm: Arm, scorer: str, keys: list):
    import numpy as np

    return np.array([[s[scorer][k] for k in keys] for s in arm.scores], dtype=float)


def shared_keys(a: Arm, b: Arm, scorer: str) -> list:
    sets = [set(s.get(scorer, {})) for s in (*a.scores, *b.scores)]
    return sorted(set.intersection(*sets), key=repr) if sets else []


# -- the statistics --------------------------------------------------------------------------------
def paired(a, b, *, resamples: int = RESAMPLES, seed: int = SEED, alpha: float = ALPHA) -> dict:
    """b minus a over the same samples. a, b: arrays (replicates, samples) with the same sample columns."""
    import numpy as np
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    (ka, n), kb = a.shape, b.shape[0]
    rng = np.random.default_rng(seed)
    diff = float(b.mean() - a.mean())

    def seed_means(x, k, size):  # per resample: the per-sample mean over resampled seeds, shape (size, n)
        if k == 1:
            return np.broadcast_to(x[0], (size, n))
        weights = rng.multinomial(k, [1 / k] * k, size=size) / k
        return weights @ x

    block = max(1, min(resamples, BLOCK // max(n, 1)))  # bounded memory: (block, n) arrays at a time
    boots, done = [], 0
    while done < resamples:
        size = min(block, resamples - done)
        per_sample = seed_means(b, kb, size) - seed_means(a, ka, size)
        rows = rng.integers(0, n, size=(size, n))  # the resampled samples, the same for both arms
        boots.append(np.take_along_axis(per_sample, rows, axis=1).mean(axis=1))
        done += size
    boot = np.concatenate(boots)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    out = {"n": int(n), "seeds_a": int(ka), "seeds_b": int(kb), "mean_a": float(a.mean()),
           "mean_b": float(b.mean()), "diff": diff, "ci_low": float(low), "ci_high": float(high)}
    binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    if binary and ka == kb == 1:
        only_a = int(((a[0] == 1) & (b[0] == 0)).sum())
        only_b = int(((a[0] == 0) & (b[0] == 1)).sum())
        p = 1.0 if only_a + only_b == 0 else float(binomtest(only_b, only_a + only_b, 0.5).pvalue)
        out.update(test="mcnemar_exact", p=p, only_a=only_a, only_b=only_b)
    else:
        if np.all(boot == 0):
            p = 1.0
        else:
            tail = min((boot <= 0).sum(), (boot >= 0).sum())
            p = min(1.0, 2 * (tail + 1) / (resamples + 1))
        out.update(test="paired_bootstrap", p=float(p))
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    import numpy as np

    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return [float(x) for x in out]


def seed_interval(values: list[float], alpha: float = ALPHA) -> dict:
    """Mean, t-interval, sd, min and max across seeds (interval None with one seed)."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, dtype=float)
    k = len(x)
    mean = float(x.mean())
    out = {"seeds": k, "mean": mean, "sd": None, "ci_low": None, "ci_high": None,
           "min": float(x.min()), "max": float(x.max())}
    if k > 1:
        sd = float(x.std(ddof=1))
        half = float(stats.t.ppf(1 - alpha / 2, k - 1)) * sd / k ** 0.5
        out.update(sd=sd, ci_low=mean - half, ci_high=mean + half)
    return out


# -- the experiment's comparisons ------------------------------------------------------------------
def planned_pairs(collected, found: dict[tuple, Arm]) -> list[tuple[str, Arm, Arm]]:
    """(kind, a, b) for every comparison the design implies, b being the arm compared against a."""
    exp = collected.exp
    configs = configurations(exp)
    first_run = {name: exp.run(runs[0]) for name, runs in configs.items()}
    pairs = []
    for (config, task, _epoch), arm in found.items():  # fine-tuned vs its control
        if first_run[config].kind.baseline:
            continue
        base = next((c.base_run for c in arm.cells if c.base_run), "")
        control = next((name for name, runs in configs.items() if base in runs), None)
        if control and (control, task, None) in found:
            pairs.append(("vs control", found[(control, task, None)], arm))
    variables = [v for v in exp.variables if v not in ("seed",)]
    trained = {k: a for k, a in found.items() if first_run[k[0]].trains}
    values = {name: {v: collected.run(runs[0]).values.get(v, "") for v in variables} for name, runs in configs.items()}
    for var in variables:
        order = [repr(v) for v in exp.variables[var]]
        groups: dict[tuple, list[Arm]] = {}
        for (config, task, epoch), arm in trained.items():
            others = tuple((v, repr(values[config][v])) for v in variables if v != var)
            groups.setdefault((task, epoch, first_run[config].model, others), []).append(arm)
        for group in groups.values():
            level = {id(a): repr(values[a.config][var]) for a in group}
            group.sort(key=lambda a: order.index(level[id(a)]) if level[id(a)] in order else len(order))
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    if level[id(a)] != level[id(b)]:
                        pairs.append((f"variable: {var}", a, b))
    return pairs


def comparisons(collected, *, reader=sample_scores, resamples: int = RESAMPLES, seed: int = SEED) -> list[dict]:
    """Every planned comparison per scorer, with Holm-corrected p-values per (task, scorer) table."""
    found = arms(collected, reader)
    rows = []
    for kind, a, b in planned_pairs(collected, found):
        scorers = [s for s in dict.fromkeys(k for sc in (*a.scores, *b.scores) for k in sc)
                   if all(s in sc for sc in (*a.scores, *b.scores))]
        for scorer in scorers:
            keys = shared_keys(a, b, scorer)
            if not keys:
                continue
            result = paired(matrix(a, scorer, keys), matrix(b, scorer, keys), resamples=resamples, seed=seed)
            rows.append({"task": a.task, "scorer": scorer, "kind": kind, "a": a.label, "b": b.label,
                         "runs_a": [c.run for c in a.cells], "runs_b": [c.run for c in b.cells], **result})
    tables: dict[tuple, list[dict]] = {}
    for row in rows:
        tables.setdefault((row["task"], row["scorer"]), []).append(row)
    for table in tables.values():
        for row, adjusted in zip(table, holm([r["p"] for r in table])):
            row["p_holm"] = adjusted
            row["significant"] = adjusted < ALPHA
            row["comparisons_in_table"] = len(table)
    return rows


def replicate_rows(collected) -> list[dict]:
    """Per replicated configuration, task, epoch and score metric: the across-seed aggregate."""
    out = []
    run_config = {run: name for name, runs in configurations(collected.exp).items() for run in runs}
    groups: dict[tuple, list] = {}
    for cell in collected.cells:
        if cell.status == "success":
            groups.setdefault((run_config[cell.run], cell.task, cell.epoch), []).append(cell)
    for (config, task, epoch), cells in groups.items():
        if len(cells) < 2:
            continue
        for metric in collected.score_metrics:
            values = [c.metrics[metric] for c in cells if metric in c.metrics]
            if len(values) > 1:
                out.append({"config": config, "task": task, "epoch": epoch, "metric": metric,
                            "runs": [c.run for c in cells if metric in c.metrics], **seed_interval(values)})
    return out


# -- calibration -----------------------------------------------------------------------------------
def calibration_points(path: Path, scorer: str) -> tuple[list[float], list[float]]:
    """(confidence, correct) per sample of a calibration scorer, from the score metadata of a log."""
    from inspect_ai.log import read_eval_log

    conf, correct = [], []
    for sample in read_eval_log(str(path)).samples or []:
        score = (sample.scores or {}).get(scorer)
        meta = (score.metadata or {}) if score is not None else {}
        if meta.get("confidence") is not None:
            conf.append(float(meta["confidence"]))
            correct.append(float(meta["correct"]))
    return conf, correct


def add_reliability(collected) -> None:
    """Each successful cell with an `ece` metric gets its reliability bins (the first such scorer's)."""
    from cruijff_kit.tools.inspect.calibration import reliability_bins

    for cell in collected.cells:
        scorer = next((k.rsplit(".", 1)[0] for k in cell.metrics if k.endswith(".ece")), None)
        if cell.status != "success" or not cell.log or scorer is None:
            continue
        path = Path(cell.log)
        try:
            conf, correct = calibration_points(path if path.is_absolute() else collected.exp_dir / path, scorer)
        except Exception:  # noqa: BLE001 - unreadable: flagged by collect already
            continue
        if conf:
            cell.reliability = reliability_bins(conf, correct)
