"""The repository is a Claude Code plugin and its own local marketplace.

`claude plugin validate .` (the pinned CLI that `make plugin-check` installs under .ci/node) must pass and
must see every skill and agent of the pack. Without the pinned CLI the validation is skipped here, but
fails under CI=true: CI always validates the plugin.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLAUDE = REPO / ".ci" / "node" / "node_modules" / ".bin" / "claude"
PLUGIN = REPO / ".claude-plugin" / "plugin.json"
MARKETPLACE = REPO / ".claude-plugin" / "marketplace.json"


def pinned_version() -> str:
    m = re.search(r"^CLAUDE_CODE_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert m, "Makefile: CLAUDE_CODE_VERSION is not set"
    return m.group(1)


def pack() -> tuple[set[str], set[str]]:
    skills = {p.parent.name for p in (REPO / "skills").glob("*/SKILL.md")}
    agents = {p.stem for p in (REPO / "agents").glob("*.md")}
    return skills, agents


def test_manifest_and_marketplace_name_one_plugin():
    plugin = json.loads(PLUGIN.read_text())
    market = json.loads(MARKETPLACE.read_text())
    assert plugin["name"] == "cruijff-kit" and re.match(r"^\d+\.\d+\.\d+$", plugin["version"])
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'version = "{plugin["version"]}"' in pyproject, "plugin version follows the package version"
    entries = {p["name"]: p for p in market["plugins"]}
    assert set(entries) == {"cruijff-kit"} and entries["cruijff-kit"]["source"] == "./"
    assert market["owner"]["name"]


def test_pack_has_no_repository_relative_paths():
    """An installed plugin is not a checkout: the pack never tells Claude to open a path 'from the repository
    root'; it asks the CLI (`cruijff-kit design files`) or uses ${CLAUDE_PLUGIN_ROOT}."""
    bad = []
    for path in [*(REPO / "skills").rglob("*.md"), *(REPO / "agents").glob("*.md")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"relative to the repository root|from the repository root|\.venv/bin/cruijff-kit", line):
                bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert not bad, "\n".join(bad)


def test_design_files_prints_the_pack_files(tmp_path):
    """`cruijff-kit design files` is how skills find the schema and the example designs from an installed plugin."""
    import sys

    env = {**os.environ, "CLAUDE_PLUGIN_ROOT": str(REPO), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "cruijff_kit", "design", "files", "--json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)
    for key in ("schema", "example_sanity_check", "example_sweep", "example_staged", "settings_example"):
        assert Path(files[key]).is_file(), (key, files[key])
    assert json.loads(Path(files["schema"]).read_text())["type"] == "object"


def test_claude_plugin_validate():
    if not CLAUDE.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{CLAUDE.relative_to(REPO)} is missing: run `make plugin-check` (CI installs it)")
        pytest.skip("the pinned Claude Code CLI is not installed (make plugin-check)")
    version = subprocess.run([str(CLAUDE), "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith(pinned_version() + " "), version.stdout
    proc = subprocess.run([str(CLAUDE), "plugin", "validate", ".", "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    report = json.loads(proc.stdout)
    errors = [*report["manifest"]["errors"], *(e for c in report["contents"] for e in c["errors"])]
    assert proc.returncode == 0 and report["success"] and not errors, json.dumps(report, indent=1)[:4000]
    assert report["manifest"]["type"] == "marketplace"
    skills, agents = pack()
    assert set(report["provides"]["skills"]) == {f"cruijff-kit:{s}" for s in skills}
    assert set(report["provides"]["agents"]) == {f"cruijff-kit:{a}" for a in agents}
    # the plugin manifest itself validates too
    proc = subprocess.run([str(CLAUDE), "plugin", "validate", str(PLUGIN), "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["success"], proc.stdout[:3000]


# -- the permission boundary: .claude/settings.json -------------------------------------------------------
SETTINGS = REPO / ".claude" / "settings.json"
SPENDING_VERBS = {"run", "resubmit"}  # start jobs; with --dry-run right after the verb they only preview


def decide(command: str) -> str:
    """What Claude Code does with a Bash command under .claude/settings.json: deny, then ask, then allow
    (the first list with a matching rule wins); 'prompt' when no rule matches (the default mode asks)."""
    from test_skills import allow_matches

    perms = json.loads(SETTINGS.read_text())["permissions"]
    for behaviour in ("deny", "ask", "allow"):
        if any(allow_matches(rule, command) for rule in perms.get(behaviour, [])):
            return behaviour
    return "prompt"


def expected(verb: str, args: list[str]) -> str:
    if verb in SPENDING_VERBS:
        return "allow" if args[:1] == ["--dry-run"] else "ask"
    if verb in {"cancel", "prefs", "wandb"}:  # stops jobs / samples a model / uploads: always a question
        return "ask"
    return "allow"


def pack_cli_calls():
    from test_skills import cli_call, cli_commands, pack_files

    for path in pack_files():
        for line_no, tokens, _ in cli_commands(path):
            if tokens[0] == "__unknown_placeholder__":
                continue
            call = cli_call(tokens)
            if call:
                yield path, line_no, tokens, call


def test_settings_allow_read_only_verbs_and_ask_before_spending():
    perms = json.loads(SETTINGS.read_text())["permissions"]
    assert "Bash" not in perms["allow"] and "Bash(*)" not in perms["allow"]
    assert not any(allow_matches_any(r) for r in perms["allow"]), "no rule may allow every cruijff-kit verb"
    exp = "/scratch/me/ck-experiments/x"
    for command in (f"cruijff-kit status {exp}", f"cruijff-kit status {exp} --json", f"cruijff-kit validate {exp}",
                    f"cruijff-kit estimate {exp} --no-log", f"cruijff-kit summarize {exp}",
                    f"cruijff-kit losses {exp}/run", "cruijff-kit config show --json", "cruijff-kit models list",
                    f"cruijff-kit design summary {exp}", f"cruijff-kit design expand {exp} --force",
                    f"cruijff-kit run --dry-run {exp} --executor slurm", f"cruijff-kit resubmit --dry-run {exp} --failed",
                    f"cruijff-kit status {exp} --watch --interval 60", "squeue --me", "sacct -j 12",
                    "scontrol show job 12", "sinfo -s"):
        assert decide(command) == "allow", f"`{command}` should run without a prompt ({decide(command)})"
    for command in (f"cruijff-kit run {exp}", f"cruijff-kit run {exp} --executor slurm --wait",
                    f"cruijff-kit run {exp} --dry-run", "cruijff-kit run ./exp", "cruijff-kit run ~/exp",
                    f"cruijff-kit resubmit {exp} --failed", f"cruijff-kit cancel {exp}",
                    f"cruijff-kit cancel {exp} --stage eval", f"python -m cruijff_kit run {exp}",
                    f"python3 -m cruijff_kit.run {exp}", "scancel 12", "sbatch x.slurm"):
        assert decide(command) == "ask", f"`{command}` spends or stops compute: it must ask ({decide(command)})"
    for command in ("cruijff-kit run exp", "rm -rf /", "scontrol update job 12", "cruijff-kitx status x"):
        assert decide(command) in ("ask", "prompt"), f"`{command}` must not run unasked"


def allow_matches_any(rule: str) -> bool:
    from test_skills import allow_matches

    return allow_matches(rule, "cruijff-kit run /x") or allow_matches(rule, "cruijff-kit resubmit /x --failed")


def test_every_pack_cli_call_gets_the_permission_it_needs():
    """Read-only calls of the skills and agents run unasked; every call that spends or stops compute asks."""
    problems = []
    for path, line_no, tokens, (verb, args) in pack_cli_calls():
        command = " ".join(tokens)
        want, got = expected(verb, args), decide(command)
        if want != got:
            problems.append(f"{path.relative_to(REPO)}:{line_no}: `{command}` is '{got}', should be '{want}'"
                            + (" (write --dry-run right after the verb)" if verb in SPENDING_VERBS else ""))
    assert not problems, "\n".join(problems)


def test_agents_and_monitoring_never_spend():
    """The observer agents and /check-experiment only read: none of their calls submits, resubmits or cancels."""
    watched = [*(REPO / "agents").glob("*.md"), REPO / "skills" / "check-experiment" / "SKILL.md"]
    problems = []
    for path, line_no, tokens, (verb, args) in pack_cli_calls():
        if path in watched and expected(verb, args) != "allow":
            problems.append(f"{path.relative_to(REPO)}:{line_no}: `{' '.join(tokens)}`")
    assert not problems, "observers must not spend:\n" + "\n".join(problems)
    for path in watched:
        text = path.read_text()
        for span in re.findall(r"`(cruijff-kit (?:run|resubmit|cancel)[^`]*)`", text):
            assert "never" in text, f"{path.relative_to(REPO)} names `{span}`; it must say it never runs it"


def test_run_experiment_is_invoked_only_by_the_researcher_and_asks_first():
    from test_skills import block_commands, fenced_blocks, frontmatter, split_commands

    skill = REPO / "skills" / "run-experiment" / "SKILL.md"
    data, body = frontmatter(skill)
    assert data.get("disable-model-invocation") is True, "run-experiment spends compute: /run-experiment only"
    for phrase in ("check on", "monitor", "status", "progress"):
        assert phrase not in data["description"].lower(), f"run-experiment's description must not say '{phrase}'"
    check, _ = frontmatter(REPO / "skills" / "check-experiment" / "SKILL.md")
    assert "disable-model-invocation" not in check and "check on" in check["description"]
    # in the skill's shell blocks, every real run/resubmit comes after a dry run of the same verb, and the
    # first real run after an estimate
    seen: list[tuple[str, bool]] = []
    for block in fenced_blocks(skill):
        for _, line in block_commands(block):
            for tokens in split_commands(line):
                if tokens[:1] == ["cruijff-kit"] and len(tokens) > 1:
                    seen.append((tokens[1], tokens[2:3] == ["--dry-run"]))
    real = [i for i, (verb, dry) in enumerate(seen) if verb in SPENDING_VERBS and not dry]
    assert real, "run-experiment shows no run"
    for i in real:
        verb = seen[i][0]
        assert (verb, True) in seen[:i], f"`cruijff-kit {verb}` shown before its --dry-run preview"
    assert ("estimate", False) in seen[:real[0]], "the estimate (GPU-hours, cost) comes before the first run"
    assert "yes" in body.lower() and "ask" in body.lower()
