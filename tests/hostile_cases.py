"""Hostile inputs, shared by the tests (test_hostile.py, test_compat_yaml.py, test_state_recovery.py) and
benchmarks/hostile_figures.py, which runs them all through the real CLI and prints the issue's figures.

Each list holds data only: the mutation of conftest_scaffold.small_design or the bytes to write, and what
the one-line error must say. Add a case here and both the tests and the figures pick it up.
"""
from __future__ import annotations

import os
from pathlib import Path

PWNED = "/tmp/ck-pwned-{}"


def _control(d):
    return d["runs"][2]  # llama_base, the control run: no training, so the trainer never checked it


def _set(path, value):
    def fn(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return fn


# (id, mutation of small_design, text the first stderr line must contain)
HOSTILE = [
    ("dir-newline", _set(["experiment", "dir"], "exp\ntouch " + PWNED.format(1)), "experiment.dir"),
    ("dir-trailing-newline", _set(["experiment", "dir"], "exp\n"), "experiment.dir"),
    ("dir-space", _set(["experiment", "dir"], "my exp"), "experiment.dir"),
    ("dir-dollar", _set(["experiment", "dir"], "exp$(touch x)"), "experiment.dir"),
    ("control-partition-newline", lambda d: _control(d).update(
        slurm_overrides={"partition": "debug\ntouch " + PWNED.format(2)}), "runs[2].slurm_overrides.partition"),
    ("control-account-trailing-newline", lambda d: _control(d).update(slurm_overrides={"account": "acct\n"}),
     "runs[2].slurm_overrides.account"),
    ("control-constraint-space", lambda d: _control(d).update(slurm_overrides={"constraint": "a b"}),
     "runs[2].slurm_overrides.constraint"),
    ("control-time-words", lambda d: _control(d).update(slurm_overrides={"time": "2 hours"}),
     "runs[2].slurm_overrides.time"),
    ("train-partition-cr", lambda d: d["runs"][0].update(slurm_overrides={"partition": "gpu\rid"}),
     "runs[0].slurm_overrides.partition"),
    ("run-name-trailing-newline", lambda d: (d["runs"][0].update(name="llama_r4\n"),
                                             d["evaluation"]["matrix"][0].update(run="llama_r4\n")), "runs[0].name"),
    ("run-name-300", lambda d: (d["runs"][0].update(name="r" * 300),
                                d["evaluation"]["matrix"][0].update(run="r" * 300)), "is 300 characters long; use at most 100"),
    ("model-name-newline", lambda d: d["models"]["base"][0].update(name="m\nid"), "models.base[0].name"),
    ("model-path-nul", lambda d: d["models"]["base"][0].update(path="/models/a\x00b"), "models.base[0].path"),
    ("model-path-nosuchuser", lambda d: d["models"]["base"][0].update(path="~nosuchuser_ck/models"),
     "models.base[0].path"),
    ("data-path-nul", _set(["data", "training", "path"], "data/a\x00.json"), "data.training.path"),
    ("task-script-tab", lambda d: d["evaluation"]["tasks"][0].update(script="a\tb.py"),
     "evaluation.tasks[0].script"),
    ("task-name-newline", lambda d: (d["evaluation"]["tasks"][0].update(name="t\nx"),), "evaluation.tasks[0].name"),
    ("control-checkpoint-newline", lambda d: d["runs"].append(
        {"name": "ev", "type": "eval-only", "model": "Llama-3.2-1B-Instruct", "checkpoint_path": "/c\nid"}),
     "runs[3].checkpoint_path"),
    ("key-with-newline", lambda d: d["controls"].update({"lr\nx": 1}), "the key 'lr\\nx' contains a newline"),
    ("seed-2-70", _set(["controls", "seed"], 2 ** 70), "controls.seed"),
    ("eval-seed-negative", _set(["evaluation", "seed"], -1), "evaluation.seed"),
    ("prompt-nul", _set(["controls", "prompt"], "{input}\x00"), "controls.prompt"),
    ("base-run-newline", lambda d: d["runs"][1].update(base_run="llama_r4\n"), "runs[1].base_run"),
    ("matrix-run-newline", lambda d: d["evaluation"]["matrix"][0].update(run="x\ny"), "evaluation.matrix[0].run"),
]
SCAFFOLD_TOO = {"dir-newline", "control-partition-newline", "control-account-trailing-newline",
                "run-name-trailing-newline", "model-path-nul", "model-path-nosuchuser"}




# late failures (validate and scaffold used to accept them, the job died later): validate's own errors
LATE = [
    ("extra-placeholder", lambda d: d["controls"].update(prompt="{input} in {language}"),
     "controls.prompt: the prompt template has the placeholder {language}"),
    ("bad-braces", lambda d: d["controls"].update(prompt="{input} {"), "controls.prompt: the prompt template cannot"),
    ("task-prompt-attr", lambda d: d["evaluation"]["tasks"][0].update(prompt="{input.x}"),
     "evaluation.tasks[0].prompt: the prompt template has the placeholder {input.x}"),
    ("nan-lr", lambda d: d["controls"].update(lr=float("nan")), "controls.lr: nan is not a finite number"),
    ("inf-temperature", lambda d: d["evaluation"].update(temperature=float("inf"), do_sample=True),
     "evaluation.temperature: inf is not a finite number"),
    ("base-run-cycle", lambda d: (d["runs"][0].update(base_run="qwen_base_r8"), d["runs"][1].update(
        base_run="llama_r4")), "runs[0].base_run: base_run goes round in a circle: llama_r4 -> qwen_base_r8 -> llama_r4"),
    # what scaffold's workers refuse without reading a file: validate refuses it too
    ("unknown-task-scorer", lambda d: d["evaluation"]["tasks"][0].update(scorers=["mach"]),
     "evaluation.tasks[0].scorers[0]: unknown scorer 'mach'"),
    ("unknown-scorer-param", lambda d: d["evaluation"]["scorers"][0].update(params={"locaton": "exact"}),
     "evaluation.scorers[0].params.locaton: scorer 'match' takes no parameter 'locaton'"),
    ("cuda-without-gpu", lambda d: d["runs"][0].update(slurm_overrides={"gpus": 0}),
     "controls.device: device: cuda but the job requests no GPU"),
    ("text-completion-system-prompt", lambda d: d["controls"].update(dataset_type="text_completion"),
     "controls.system_prompt: text_completion has no system turn"),
    ("eval-prompt-differs", lambda d: d["evaluation"]["tasks"][0].update(prompt="Q: {input}"),
     "evaluation.tasks[0].prompt: differs from the training prompt template"),
    ("dpo-packed", lambda d: (d["data"].update(preference={"path": "data/numbers.json"}), d["runs"][0].update(
        type="dpo", parameters={"packed": True, "train_on_input": False})),
     "runs[0].parameters.packed: dpo runs cannot pack sequences"),
    ("date-arabic-indic-digits", lambda d: d["experiment"].update(date="٢٠٢٥-١٠-٢٧"),
     "experiment.date: '٢٠٢٥-١٠-٢٧' is not a date"),
    ("date-month-13", lambda d: d["experiment"].update(date="2025-13-01"),
     "experiment.date: '2025-13-01' is not a calendar date"),
    ("two-models-one-name", lambda d: d["models"]["base"].append(dict(d["models"]["base"][0])),
     "models.base[2].name: 'Llama-3.2-1B-Instruct' is used twice"),
]




# claude.local.md lines that must be a one-line settings error (`config show`)
SETTINGS_TEXTS = ["# settings\n- Default time: 2 hours\n", "- SLURM partition: gpu$(id)\n",
                  "- Default mem: lots\n", "- Scratch directory: /tmp/a b\n",
                  "- SLURM account: acct\x1b[0m\n", "- Scratch directory: ~nosuchuser_ck/s\n"]
SETTINGS_NOT_UTF8 = b"- Scratch directory: /tmp/\xff\xfe\n"

# experiment.dir values scaffold and `design verify` refuse ("~" is the test's $HOME; a_file and busy are
# made by the test: a file, and a folder holding someone's work)
DANGEROUS_DIRS = ["/", "~", "/proc/self", "/etc/ck", "/usr/local/ck", "/tmp", "a_file", "busy"]

# a task script or a data file that is not what it claims (write_bad_file makes it)
BAD_TASK_SCRIPTS = ["fifo", "not-utf8", "nested", "nul"]
BAD_DATA_FILES = ["fifo", "not-utf8", "list", "truncated"]


def write_bad_file(path: Path, kind: str) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    contents = {"not-utf8": b'{"train": [{"input": "\xff"}]}' if path.suffix == ".json"
                else b"# \xff\xfe\nfrom inspect_ai import task\n",
                "nested": ("x = " + "[" * 100_000 + "]" * 100_000 + "\n").encode(),
                "nul": b"x = 1\x00\n", "list": b"[1, 2]", "truncated": b'{"train": ['}
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(contents[kind])


# YAML texts the one reader refuses (files.yaml_load): (text, what the one line says)
_BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                  + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]) + "\n"
DEEP_YAML = ["[" * 100_000, "{a: " * 100_000, "- " * 100_000 + "x",
             "".join(" " * i + "k:\n" for i in range(0, 4000, 2))]
YAML_HOSTILE = {
    "billion-laughs": (_BOMB, "aliases expand to more than 1,000,000 values"),
    "recursive-alias": ("a: &a [1, *a]\n", "contains it"),
    **{f"deep-{i}": (text, "nested deeper than") for i, text in enumerate(DEEP_YAML)},
    "duplicate-key": ("controls:\n  lr: 1\n  epochs: 2\n  lr: 3\n", "duplicate key 'lr'"),
    "not-utf8": ("a: 1\nb: caf\udce9\n", "not UTF-8"),  # written with surrogateescape: byte 0xe9
    "nan-lr": ("controls:\n  lr: .nan\n", "is not a finite number"),
}


def yaml_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# .ck/state.json contents: (bytes, what the one line says); every verb refuses them the same way
STATE_DAMAGED = {
    "garbage bytes": (b"\xff\xfe\x00garbage{{", "not UTF-8"),
    "truncated": (b'{"jobs": {"a.train": {"state": "compl', "not valid JSON"),
    "a list": (b"[1, 2]", "expected a dict"),
    "jobs a list": (b'{"jobs": []}', "jobs: holds a JSON list"),
    "job a number": (b'{"jobs": {"a.train": 5}}', "jobs.a.train: holds a JSON int"),
    "unknown state": (b'{"jobs": {"a.train": {"state": "done"}}}', "jobs.a.train.state: \'done\' is not one of"),
    "attempts text": (b'{"jobs": {"a.train": {"attempts": "two"}}}', "jobs.a.train.attempts: \'two\' is not an integer"),
    "env a list": (b'{"jobs": {"a.train": {"env": []}}}', "jobs.a.train.env: [] is not an object"),
    "runner text": (b'{"jobs": {}, "runner": "me"}', "runner: is not a runner record"),
}
# jobs.json contents every verb refuses in one line
JOBS_DAMAGED = [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"jobs": [{"id": 1}]}', b'{"jobs": 3}', b"\x00\x01binary"]
