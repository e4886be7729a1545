"""The Claude Code skill pack (skills/, agents/, .claude/, claude.local.md.example) against the real CLI.

Every SKILL.md and agent file has valid frontmatter; every relative link resolves (from the source and
through .claude/); every `cruijff-kit ...` / `python -m cruijff_kit...` command in a fenced block parses
with the verb's real argparse parser (placeholders substituted from skills/shared/cli_conventions.md);
inline commands name real verbs and flags; .claude links resolve to the single source; settings.json
allows the CLI; the logging spec matches cruijff_kit/logbook.py; claude.local.md.example parses.

The slow walk-through executes, in order, the commands the skills mark with `<!-- walkthrough: N -->`
(ck-setup -> design -> scaffold -> run (local) -> summarize) on a one-run design with the tiny model.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cruijff_kit import logbook
from cruijff_kit.cli import VERBS, verb_parser
from cruijff_kit.settings import LABELS, Settings, parse_settings

REPO = Path(__file__).resolve().parent.parent
SKILLS = REPO / "skills"
AGENTS = REPO / "agents"
CLAUDE = REPO / ".claude"
CONVENTIONS = SKILLS / "shared" / "cli_conventions.md"
LOGGING_SPEC = SKILLS / "shared" / "logging_spec.md"
EXAMPLE_SETTINGS = REPO / "claude.local.md.example"

REQUIRED_SKILLS = {
    "design-experiment": {"SKILL.md", "param_selection.md", "validation.md", "logging.md",
                          "experiment_generation.md", "estimation.md"},
    "scaffold-experiment": {"SKILL.md"},
    "run-experiment": {"SKILL.md"},
    "check-experiment": {"SKILL.md"},
    "summarize-experiment": {"SKILL.md"},
    "create-inspect-task": {"SKILL.md"},
    "ck-setup": {"SKILL.md"},
}
REQUIRED_AGENTS = {"scaffold-torchtune", "scaffold-inspect", "run-torchtune", "run-inspect"}
SLASH_SKILLS = {"design-experiment", "scaffold-experiment", "run-experiment", "summarize-experiment"}
SKILL_KEYS = {"name", "description", "argument-hint", "allowed-tools", "disable-model-invocation",
              "user-invocable", "model", "context", "agent", "license", "metadata"}
AGENT_KEYS = {"name", "description", "tools", "model", "color", "permissionMode", "skills"}
AGENT_MODELS = {"sonnet", "opus", "haiku", "inherit"}
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
CLI_PROGRAMS = {"cruijff-kit", ".venv/bin/cruijff-kit"}
PYTHONS = {"python", "python3", ".venv/bin/python"}
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
WALK_RE = re.compile(r"<!--\s*walkthrough:\s*(\d+)\s*-->")
PLACEHOLDER_RE = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${VAR} is the shell's


# -- reading the pack --------------------------------------------------------------------------------
def skill_dirs() -> list[Path]:
    return sorted(p.parent for p in SKILLS.glob("*/SKILL.md"))


def agent_files() -> list[Path]:
    return sorted(AGENTS.glob("*.md"))


def pack_files() -> list[Path]:
    return sorted(SKILLS.rglob("*.md")) + agent_files()


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def frontmatter(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    assert text.startswith("---\n"), f"{rel(path)}: must start with a '---' frontmatter block"
    end = text.find("\n---\n", 4)
    assert end > 0, f"{rel(path)}: frontmatter block is not closed with '---'"
    data = yaml.safe_load(text[4:end])
    assert isinstance(data, dict), f"{rel(path)}: frontmatter is not a YAML mapping"
    return data, text[end + 5:]


@dataclass
class Block:
    path: Path
    line: int  # line number of the opening fence
    lang: str
    lines: list[tuple[int, str]]  # (line number, text)
    walkthrough: int | None


def fenced_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i, pending_walk = 0, None
    while i < len(lines):
        stripped = lines[i].strip()
        m = WALK_RE.search(stripped)
        if m:
            pending_walk = int(m.group(1))
            i += 1
            continue
        fence = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
        if fence:
            marker, lang = fence.group(1), fence.group(2).lower()
            body, j = [], i + 1
            while j < len(lines) and not lines[j].strip().startswith(marker):
                body.append((j + 1, lines[j]))
                j += 1
            blocks.append(Block(path, i + 1, lang, body, pending_walk))
            pending_walk, i = None, j + 1
            continue
        if stripped:
            pending_walk = None  # a marker applies to the very next fenced block only
        i += 1
    return blocks


def prose(path: Path) -> list[tuple[int, str]]:
    """Lines outside fenced blocks (and outside the frontmatter)."""
    out, in_fence, marker = [], False, ""
    lines = path.read_text().splitlines()
    start = 0
    if lines and lines[0] == "---":
        start = next(i for i in range(1, len(lines)) if lines[i] == "---") + 1
    for n, line in enumerate(lines[start:], start=start + 1):
        s = line.strip()
        fence = re.match(r"^(`{3,}|~{3,})", s)
        if fence and not in_fence:
            in_fence, marker = True, fence.group(1)
            continue
        if in_fence:
            if s.startswith(marker):
                in_fence = False
            continue
        out.append((n, line))
    return out


def block_commands(block: Block) -> list[tuple[int, str]]:
    """Shell lines of a block, continuation lines joined; comments and blanks dropped."""
    out, buf, first = [], "", 0
    for n, raw in block.lines:
        line = raw.strip()
        if not buf:
            first = n
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        out.append((first, buf + line))
        buf = ""
    if buf:
        out.append((first, buf))
    return out


def placeholders() -> dict[str, str]:
    """The placeholder table of skills/shared/cli_conventions.md: name -> example value."""
    table = {}
    for line in CONVENTIONS.read_text().splitlines():
        m = re.match(r"^\|\s*`\{(\w+)\}`\s*\|[^|]*\|\s*`([^`]*)`\s*\|\s*$", line)
        if m:
            table[m.group(1)] = m.group(2)
    return table


def substitute(text: str, values: dict[str, str]) -> tuple[str, list[str]]:
    unknown = [m.group(1) for m in PLACEHOLDER_RE.finditer(text) if m.group(1) not in values]
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text), unknown


def split_commands(line: str) -> list[list[str]]:
    """One shell line -> simple commands (split on | && || ;), env assignments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return [dropwhile_env(c) for c in commands if dropwhile_env(c)]


def dropwhile_env(tokens: list[str]) -> list[str]:
    i = 0
    while i < len(tokens) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[i]):
        i += 1
    return tokens[i:]


def module_to_verb() -> dict[str, str]:
    out = {}
    for verb, (module, _) in VERBS.items():
        runnable = module[: -len(".cli")] if module.endswith(".cli") else module
        out[runnable] = verb
    return out


def cli_call(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(verb, args) when the tokens call our CLI, else None. Raises ValueError for a bad module/verb."""
    if not tokens:
        return None
    if tokens[0] in CLI_PROGRAMS:
        if len(tokens) < 2:
            raise ValueError("no verb given")
        return tokens[1], tokens[2:]
    if tokens[0] in PYTHONS and len(tokens) >= 3 and tokens[1] == "-m" and tokens[2].startswith("cruijff_kit"):
        module = tokens[2]
        if module == "cruijff_kit":
            if len(tokens) < 4:
                raise ValueError("no verb given")
            return tokens[3], tokens[4:]
        verb = module_to_verb().get(module)
        if verb is None:
            if importlib.util.find_spec(module) is None:
                raise ValueError(f"module {module} does not exist")
            return None  # a job-side module (cruijff_kit.tools...), not a verb
        return verb, tokens[3:]
    return None


def parse_cli(verb: str, args: list[str]) -> str:
    """'' when `cruijff-kit VERB ARGS` parses with the real parser, else the reason."""
    if verb not in VERBS:
        return f"'{verb}' is not a cruijff-kit verb (known: {', '.join(VERBS)})"
    try:
        parser = verb_parser(verb)
    except ModuleNotFoundError as exc:
        return f"verb '{verb}' is not available yet: {exc} (module {VERBS[verb][0]} missing)"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as exc:
        if exc.code:
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"
    return ""


def known_flags(verb: str, args: list[str]) -> tuple[set[str], str]:
    """Option strings accepted by VERB (descending into its sub-command if ARGS name one)."""
    parser = verb_parser(verb)
    flags = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for token in args:
                if token in action.choices:
                    return flags | set(action.choices[token]._option_string_actions), token
            return flags, ""
    return flags, ""


def cli_commands(path: Path) -> list[tuple[int, list[str], Block]]:
    """Every CLI call in the shell blocks of PATH: (line, tokens after substitution, block)."""
    values = placeholders()
    out = []
    for block in fenced_blocks(path):
        if block.lang not in SHELL_LANGS:
            continue
        for line_no, line in block_commands(block):
            text, unknown = substitute(line, values)
            if unknown:
                out.append((line_no, ["__unknown_placeholder__", *unknown], block))
                continue
            for tokens in split_commands(text):
                out.append((line_no, tokens, block))
    return out


def inline_spans(path: Path) -> list[tuple[int, str]]:
    spans = []
    for n, line in prose(path):
        for m in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", line):
            spans.append((n, m.group(1)))
    return spans


def md_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for n, line in prose(path):
        line = re.sub(r"`[^`]*`", "", line)
        for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", line):
            links.append((n, m.group(1)))
    return links


def heading_slugs(path: Path) -> set[str]:
    slugs = set()
    for _, line in prose(path):
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            title = m.group(1).strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def allow_matches(rule: str, command: str) -> bool:
    """Claude Code Bash permission rule `Bash(pattern)`: * is a wildcard; a trailing ' *' is optional."""
    m = re.match(r"^Bash\((.*)\)$", rule)
    if not m:
        return False
    pattern = m.group(1)
    if pattern.endswith(":*"):
        pattern = pattern[:-2] + " *"
    regex = "".join(".*" if ch == "*" else re.escape(ch) for ch in pattern)
    if pattern.endswith(" *"):
        regex = regex[: -len(re.escape(" ") + ".*")] + "(?: .*)?"
    return re.fullmatch(regex, command) is not None


# -- frontmatter -------------------------------------------------------------------------------------
def test_required_skills_and_files_exist():
    for name, files in REQUIRED_SKILLS.items():
        for file in files:
            assert (SKILLS / name / file).is_file(), f"skills/{name}/{file} is missing"
    assert {p.stem for p in agent_files()} >= REQUIRED_AGENTS
    assert LOGGING_SPEC.is_file() and CONVENTIONS.is_file()


@pytest.mark.parametrize("skill", skill_dirs(), ids=lambda p: p.name)
def test_skill_frontmatter(skill):
    data, body = frontmatter(skill / "SKILL.md")
    where = rel(skill / "SKILL.md")
    assert set(data) <= SKILL_KEYS, f"{where}: unknown frontmatter keys {set(data) - SKILL_KEYS}"
    assert data.get("name") == skill.name, f"{where}: name must equal the directory name '{skill.name}'"
    assert NAME_RE.match(data["name"]) and len(data["name"]) <= 64, f"{where}: name must be lowercase-hyphen"
    desc = data.get("description")
    assert isinstance(desc, str) and desc.strip(), f"{where}: description is required"
    assert len(desc) <= 1024, f"{where}: description has {len(desc)} chars (max 1024)"
    assert "<" not in desc and ">" not in desc, f"{where}: no XML-like tags in the description"
    assert body.strip().startswith("#"), f"{where}: the body starts with a heading"
    for shared in ("../shared/logging_spec.md", "../shared/cli_conventions.md"):
        assert f"]({shared})" in body, f"{where}: link {shared} (the one logging spec / CLI conventions)"


@pytest.mark.parametrize("agent", agent_files(), ids=lambda p: p.stem)
def test_agent_frontmatter(agent):
    data, body = frontmatter(agent)
    where = rel(agent)
    assert set(data) <= AGENT_KEYS, f"{where}: unknown frontmatter keys {set(data) - AGENT_KEYS}"
    for key in ("name", "description", "tools", "model"):
        assert data.get(key), f"{where}: '{key}' is required"
    assert data["name"] == agent.stem, f"{where}: name must equal the file name '{agent.stem}'"
    assert NAME_RE.match(data["name"]), f"{where}: name must be lowercase-hyphen"
    assert len(data["description"]) <= 1024
    assert data["model"] in AGENT_MODELS, f"{where}: model must be one of {sorted(AGENT_MODELS)}"
    tools = agent_tools(agent)
    assert not {"Write", "Edit", "NotebookEdit"} & set(tools), f"{where}: agents never write rendered files"
    for tool in tools:
        # `tools:` names whole tools: a Bash(pattern) there grants all of Bash, so it would only pretend to be
        # a boundary. The boundary is .claude/settings.json (see test_settings_*).
        assert tool in {"Bash", "Read", "Glob", "Grep"}, f"{where}: list whole tools, not '{tool}'"
    assert body.strip(), f"{where}: the body is the agent's system prompt"
    # every tool listed is used: shell blocks for Bash, a file read for Read, and nothing unused
    uses = {"Bash": any(b.lang in SHELL_LANGS for b in fenced_blocks(agent)),
            "Read": re.search(r"\bRead\b", body) is not None,
            "Glob": re.search(r"\bGlob\b", body) is not None, "Grep": re.search(r"\bGrep\b", body) is not None}
    assert all(uses[t] for t in tools), f"{where}: lists tools it never uses: {[t for t in tools if not uses[t]]}"


def agent_tools(agent: Path) -> list[str]:
    data, _ = frontmatter(agent)
    tools = data["tools"]
    if isinstance(tools, str):
        tools = [t.strip() for t in re.split(r",\s*(?![^()]*\))", tools) if t.strip()]
    return list(tools)


# -- links and paths ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", pack_files(), ids=rel)
def test_relative_links_resolve(path):
    problems = []
    for n, target in md_links(path):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            if target.startswith("#") and target[1:] not in heading_slugs(path):
                problems.append(f"{rel(path)}:{n}: anchor {target} has no heading")
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve()
        if not resolved.exists():
            problems.append(f"{rel(path)}:{n}: link {target} does not resolve ({resolved})")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in heading_slugs(resolved):
            problems.append(f"{rel(path)}:{n}: {file} has no heading for #{anchor}")
        # Claude Code opens skills through .claude/skills/<name>/: the link must also resolve lexically there
        if path.is_relative_to(SKILLS):
            via = CLAUDE / "skills" / path.relative_to(SKILLS)
        elif path.is_relative_to(AGENTS):
            via = CLAUDE / "agents" / path.relative_to(AGENTS)
        else:
            continue
        lexical = Path(posixpath.normpath(str(via.parent / file)))
        if not lexical.exists():
            problems.append(f"{rel(path)}:{n}: link {target} does not resolve from {rel(via)} ({lexical})")
    assert not problems, "\n".join(problems)


REPO_PATH_RE = re.compile(r"^(cruijff_kit|sanity_checks|examples|templates|scripts|skills|agents)/[\w./-]*[\w/]$")


@pytest.mark.parametrize("path", pack_files(), ids=rel)
def test_repository_paths_exist(path):
    """Code spans naming a repository file (`cruijff_kit/experiment/schema.json`) point at real files."""
    missing = [f"{rel(path)}:{n}: `{span}` does not exist in the repository"
               for n, span in inline_spans(path) if REPO_PATH_RE.match(span) and not (REPO / span).exists()]
    assert not missing, "\n".join(missing)


# -- commands ----------------------------------------------------------------------------------------
def test_placeholder_table_is_complete():
    table = placeholders()
    for name in ("design_file", "experiment_dir", "run_dir", "models_dir", "executor", "n", "input"):
        assert name in table, f"{rel(CONVENTIONS)}: placeholder {{{name}}} missing from the table"


@pytest.mark.parametrize("path", pack_files(), ids=rel)
def test_fenced_cli_commands_parse(path):
    """Every cruijff-kit command in a shell block names a real verb and flags the real parser accepts."""
    problems = []
    for line_no, tokens, _ in cli_commands(path):
        if tokens[0] == "__unknown_placeholder__":
            problems.append(f"{rel(path)}:{line_no}: unknown placeholder(s) {tokens[1:]}; "
                            f"use one from {rel(CONVENTIONS)}")
            continue
        try:
            call = cli_call(tokens)
        except ValueError as exc:
            problems.append(f"{rel(path)}:{line_no}: {' '.join(tokens)}: {exc}")
            continue
        if call is None:
            continue
        reason = parse_cli(*call)
        if reason:
            problems.append(f"{rel(path)}:{line_no}: `{shlex.join(tokens)}`: {reason}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", pack_files(), ids=rel)
def test_inline_cli_commands_use_real_verbs_and_flags(path):
    problems = []
    values = placeholders()
    for n, span in inline_spans(path):
        if "<" in span or "..." in span:
            continue  # prose such as `cruijff-kit <verb> ...`
        text, _ = substitute(span, values)
        try:
            tokens = shlex.split(text)
        except ValueError:
            continue
        if len(tokens) < 2 or (tokens[0] not in CLI_PROGRAMS and tokens[0] not in PYTHONS):
            continue
        try:
            call = cli_call(tokens)
        except ValueError as exc:
            problems.append(f"{rel(path)}:{n}: `{span}`: {exc}")
            continue
        if call is None or not re.match(r"^[a-z][a-z_-]*$", call[0]):
            continue  # `cruijff-kit <verb>`-style prose
        verb, args = call
        if verb not in VERBS:
            problems.append(f"{rel(path)}:{n}: `{span}`: '{verb}' is not a verb")
            continue
        try:
            flags, _ = known_flags(verb, args)
        except ModuleNotFoundError as exc:
            problems.append(f"{rel(path)}:{n}: `{span}`: verb '{verb}' is not available yet: {exc}")
            continue
        for token in args:
            flag = token.split("=", 1)[0]
            if flag.startswith("--") and flag not in flags:
                problems.append(f"{rel(path)}:{n}: `{span}`: {verb} has no option {flag}")
    assert not problems, "\n".join(problems)


def test_every_verb_the_workflow_needs_is_shown():
    """The four workflow skills show the verbs of their stage (in fenced blocks)."""
    expect = {"design-experiment": {"config", "models", "validate", "design", "estimate", "log"},
              "scaffold-experiment": {"validate", "scaffold", "log"},
              "run-experiment": {"run", "status", "estimate", "resubmit", "log"},
              "check-experiment": {"status", "losses"},
              "summarize-experiment": {"summarize", "status", "losses", "view", "wandb", "log"},
              "create-inspect-task": {"task", "validate"},
              "ck-setup": {"config", "models"}}
    for skill, verbs in expect.items():
        shown = set()
        for path in (SKILLS / skill).glob("*.md"):
            for _, tokens, _ in cli_commands(path):
                call = cli_call(tokens) if tokens[0] != "__unknown_placeholder__" else None
                if call:
                    shown.add(call[0])
        assert verbs <= shown, f"skills/{skill}: no command for {sorted(verbs - shown)}"


def test_skill_log_commands_write_parseable_entries(tmp_path):
    """Run every `cruijff-kit log ...` example of the pack for real and read the log back."""
    values = {**placeholders(), "experiment_dir": str(tmp_path)}
    written = []
    for path in pack_files():
        for block in fenced_blocks(path):
            if block.lang not in SHELL_LANGS:
                continue
            for line_no, line in block_commands(block):
                text, unknown = substitute(line, values)
                for tokens in split_commands(text) if not unknown else []:
                    call = cli_call(tokens)
                    if not call or call[0] != "log":
                        continue
                    args = verb_parser("log").parse_args(call[1])
                    assert Path(args.dir) == tmp_path, f"{rel(path)}:{line_no}: log --dir must be {{experiment_dir}}"
                    assert args.log in logbook.LOG_NAMES, f"{rel(path)}:{line_no}: --log must be one of {list(logbook.LOG_NAMES)}"
                    with contextlib.redirect_stdout(io.StringIO()):
                        assert args._main(args) == 0
                    written.append((args.log, args.action, f"{rel(path)}:{line_no}"))
    assert len(written) >= 15
    for log_name in {w[0] for w in written}:
        entries = logbook.read(tmp_path / logbook.LOG_NAMES[log_name])
        expected = [w[1] for w in written if w[0] == log_name]
        assert [e.action for e in entries] == expected
        assert all(e.timestamp and e.description for e in entries)


# -- logging spec --------------------------------------------------------------------------------------
def spec_actions() -> set[str]:
    return set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", LOGGING_SPEC.read_text(), re.M))


def package_actions() -> set[str]:
    """ACTION names the package writes: logbook.log(path, "ACTION", ...), Entry("ACTION"), Check("ACTION")."""
    found = set()
    for file in (REPO / "cruijff_kit").rglob("*.py"):
        if "tools" in file.relative_to(REPO / "cruijff_kit").parts:
            continue
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            index = {"log": 1, "_log": 0, "Entry": 0, "Check": 0}.get(name)
            if index is None or len(node.args) <= index:
                continue
            arg = node.args[index]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and logbook.ACTION_RE.match(arg.value):
                found.add(arg.value)
    return found


def test_logging_spec_matches_logbook():
    text = LOGGING_SPEC.read_text()
    # the entry format is exactly what logbook writes
    entry = logbook.Entry("VERIFY_MODEL", "d", "c", "r", "e", timestamp="2025-01-01 00:00:00").format()
    assert entry.splitlines()[:4] == ["[2025-01-01 00:00:00] VERIFY_MODEL: d", "Command: c", "Result: r", "Explanation: e"]
    assert "[YYYY-MM-DD HH:MM:SS] ACTION: Description" in text
    for key in ("Command:", "Result:", "Explanation:"):
        assert key in text
    positions = [text.index(f"`{key}:`") for key in logbook.EXTRA_KEYS]
    assert positions == sorted(positions), "optional lines listed in logbook.EXTRA_KEYS order"
    for key, file in logbook.LOG_NAMES.items():
        assert f"| `{key}` | `{file}` |" in text, f"log {key} -> {file} missing from the files table"
    # every log flag the spec names exists on the real `log` verb
    flags = set(verb_parser("log")._option_string_actions)
    writing = text[text.index("## Writing an entry"):text.index("## Actions")]
    for flag in re.findall(r"`(--[a-z-]+)`", writing):
        assert flag in flags, f"logging spec names {flag}, which `cruijff-kit log` lacks"


def test_logging_spec_lists_every_action():
    documented = spec_actions()
    used_by_skills = set()
    for path in pack_files():
        for _, tokens, _ in cli_commands(path):
            call = cli_call(tokens) if tokens[0] != "__unknown_placeholder__" else None
            if call and call[0] == "log" and call[1]:
                used_by_skills.add(call[1][0])
    missing = used_by_skills - documented
    assert not missing, f"actions used in skills but not in {rel(LOGGING_SPEC)}: {sorted(missing)}"
    missing = package_actions() - documented
    assert not missing, f"actions the package writes but {rel(LOGGING_SPEC)} does not list: {sorted(missing)}"
    brief = {"VERIFY_MODEL", "VERIFY_DATASET", "SEARCH_PRIOR_RUNS", "CALCULATE_TIME", "CHECK_DISK",
             "DECIDE_NAMING", "CREATE_SUMMARY", "COMPLETE", "SCAFFOLD", "SUBMIT_JOB", "SUBMIT_EVAL",
             "STATE_CHANGE", "JOB_FAILED", "ALL_COMPLETE"}
    assert brief <= documented


def test_logging_spec_verb_actions_exist_in_the_package():
    """Actions the spec attributes to a verb are really written by the package."""
    text = LOGGING_SPEC.read_text()
    section = text[text.index("Written by the verbs"):text.index("Written by the skills")]
    claimed = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", section, re.M))
    source = "\n".join(p.read_text() for p in (REPO / "cruijff_kit").rglob("*.py"))
    written = package_actions() | {a for a in claimed if f'"{a}"' in source or f"'{a}'" in source}
    if '"SCAFFOLD_" + tool' in source:  # scaffold logs one entry per worker: SCAFFOLD_<TOOL>
        from cruijff_kit import workers
        written |= {"SCAFFOLD_" + t.upper().replace("-", "_") for t in {**workers.PREPARATION, **workers.EVALUATION}}
    absent = sorted(claimed - written)
    assert not absent, f"{rel(LOGGING_SPEC)} says verbs write {absent}, but no package code does (yet)"


# -- .claude ---------------------------------------------------------------------------------------------
def test_claude_links_resolve_to_the_sources():
    problems = []
    for source in sorted(p for p in SKILLS.iterdir() if p.is_dir()):
        link = CLAUDE / "skills" / source.name
        if not link.is_symlink():
            problems.append(f"{rel(link)} is not a symlink to skills/{source.name}")
            continue
        target = os.readlink(link)
        if os.path.isabs(target):
            problems.append(f"{rel(link)} -> {target}: use a relative link")
        if link.resolve() != source.resolve():
            problems.append(f"{rel(link)} resolves to {link.resolve()}, not {source}")
        elif source.name in REQUIRED_SKILLS and not (link / "SKILL.md").is_file():
            problems.append(f"{rel(link)}/SKILL.md is not reachable")
    for source in agent_files():
        link = CLAUDE / "agents" / source.name
        if not link.is_symlink() or os.path.isabs(os.readlink(link)) or link.resolve() != source.resolve():
            problems.append(f"{rel(link)} must be a relative symlink to agents/{source.name}")
    for entry in [*(CLAUDE / "skills").iterdir(), *(CLAUDE / "agents").iterdir()]:
        if not entry.exists():
            problems.append(f"{rel(entry)} is a dangling link")
        elif not entry.resolve().is_relative_to(REPO / ("skills" if entry.parent.name == "skills" else "agents")):
            problems.append(f"{rel(entry)} does not point into the sources")
    assert not problems, "\n".join(problems) + "\nfix: scripts/sync-claude.sh"
    for name in SLASH_SKILLS:  # /design-experiment ... are the skills' names
        data, _ = frontmatter(CLAUDE / "skills" / name / "SKILL.md")
        assert data["name"] == name
        assert data.get("user-invocable", True) is not False, f"/{name} must stay user-invocable"


def test_sync_script_check_passes():
    proc = subprocess.run(["bash", str(REPO / "scripts" / "sync-claude.sh"), "--check"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- claude.local.md.example ----------------------------------------------------------------------------
DOCUMENTED_FIELDS = {"scratch_dir", "models_dir", "slurm_account", "slurm_partition", "slurm_constraint",
                     "slurm_time", "slurm_gpus", "full_gpu_constraint", "shared_partition", "conda_env", "venv",
                     "module_loads", "wandb_entity", "executor", "gpu_hourly_cost"}


def test_example_settings_labels_are_known():
    text = EXAMPLE_SETTINGS.read_text()
    bullets = re.findall(r"^- ([^:\n]+):", text, re.M)
    assert bullets, "claude.local.md.example has no `- Label: value` lines"
    unknown = [b for b in bullets if re.sub(r"\s+", " ", b.strip().lower()) not in LABELS]
    assert not unknown, f"labels settings.py does not know: {unknown}"
    fields = {LABELS[re.sub(r"\s+", " ", b.strip().lower())] for b in bullets}
    assert DOCUMENTED_FIELDS <= fields, f"undocumented settings: {sorted(DOCUMENTED_FIELDS - fields)}"


def test_example_settings_parse_as_shipped(tmp_path):
    path = tmp_path / "claude.local.md"
    shutil.copy(EXAMPLE_SETTINGS, path)
    settings = parse_settings(path.read_text(), str(path))
    assert settings.scratch == (tmp_path / "ck-scratch").resolve()
    assert settings.executor == "local" and settings.gpu_hourly_cost == 0.0
    # placeholders are ignored: the defaults stay, so the model registry's resources apply (no slurm_* source)
    defaults = Settings()
    for name in ("models_dir", "slurm_account", "slurm_partition", "slurm_time", "slurm_gpus", "slurm_cpus",
                 "conda_env", "venv", "wandb_entity"):
        assert getattr(settings, name) == getattr(defaults, name), name
    assert set(settings.sources) == {"scratch_dir", "executor", "gpu_hourly_cost"}


def test_example_settings_filled_in_yield_every_field(tmp_path):
    filled = {"Models directory": "/models", "SLURM account": "acct", "SLURM partition": "gpu",
              "SLURM constraint": "h100", "Default mem": "32G", "Default time": "02:30:00", "Default GPUs": "2",
              "CPUs per task": "8", "Full-GPU constraint": "gpu80",
              "Shared/MIG partition": "mig", "GPU type": "H100", "Conda env": "cruijff", "Venv": "/venv",
              "Module loads": "anaconda3/2024.6, cudatoolkit/12.4", "W&B entity": "lab"}
    text = EXAMPLE_SETTINGS.read_text().replace("- Executor: local", "- Executor: slurm")
    for label, value in filled.items():
        text, n = re.subn(rf"^- {re.escape(label)}: <[^>\n]*>$", f"- {label}: {value}", text, flags=re.M)
        assert n == 1, f"claude.local.md.example: no placeholder line for '{label}'"
    settings = parse_settings(text, str(tmp_path / "claude.local.md"))
    assert settings.executor == "slurm"
    assert (settings.models_dir, settings.slurm_account, settings.slurm_partition) == ("/models", "acct", "gpu")
    assert (settings.full_gpu_constraint, settings.shared_partition, settings.slurm_mem) == ("gpu80", "mig", "32G")
    assert (settings.slurm_time, settings.slurm_gpus, settings.slurm_cpus) == ("02:30:00", 2, 8)
    assert settings.module_loads == ["anaconda3/2024.6", "cudatoolkit/12.4"]
    assert (settings.conda_env, settings.venv, settings.wandb_entity) == ("cruijff", "/venv", "lab")
    assert DOCUMENTED_FIELDS <= set(settings.sources)


# -- walk-through ----------------------------------------------------------------------------------------
def walkthrough_commands() -> list[tuple[int, Path, int, str]]:
    """(step, file, line, command) of every block marked `<!-- walkthrough: N -->`, in step order."""
    out = []
    for path in pack_files():
        for block in fenced_blocks(path):
            if block.walkthrough is None:
                continue
            for i, (line_no, line) in enumerate(block_commands(block)):
                out.append((block.walkthrough, path, line_no, line, i))
    out.sort(key=lambda t: (t[0], t[4]))
    return [(s, p, n, c) for s, p, n, c, _ in out]


def test_walkthrough_covers_the_workflow():
    steps = walkthrough_commands()
    verbs = []
    for _, _, _, line in steps:
        tokens = split_commands(substitute(line, placeholders())[0])[0]
        verbs.append(cli_call(tokens)[0])
    for verb in ("config", "models", "design", "validate", "estimate", "log", "scaffold", "run", "status",
                 "summarize"):
        assert verb in verbs, f"no walk-through step uses `cruijff-kit {verb}`"
    order = [verbs.index(v) for v in ("design", "scaffold", "run", "summarize")]
    assert order == sorted(order), "walk-through order: design -> scaffold -> run -> summarize"


def _walk_design(data: Path, name: str) -> dict:
    """A one-run design as the design skill would write it: tiny model, one variable value, no runs yet."""
    return {
        "experiment": {"name": name, "question": "Does the tiny model learn a constant answer?",
                       "hypothesis": "accuracy rises above the base model", "date": "2025-11-01",
                       "type": "experiment"},
        "tools": {"preparation": "torchtune", "evaluation": "inspect-ai"},
        "variables": {"lora_rank": [8]},
        "controls": {"system_prompt": "", "prompt": "{input}", "dataset_type": "chat_completion", "epochs": 1,
                     "batch_size": 8, "max_steps_per_epoch": 4, "lr": 0.01, "max_seq_len": 64,
                     "run_val_every_n_steps": 2, "lora_attn_modules": ["q_proj", "k_proj", "v_proj", "output_proj"],
                     "seed": 7, "device": "cpu", "dtype": "fp32"},
        "models": {"base": [{"name": "tiny-llama", "path": "{models_dir}/tiny-llama", "size_gb": 0.033}]},
        "data": {"training": {"path": str(data), "format": "json", "splits": {"train": 64, "validation": 8}}},
        "output": {"wandb_project": name},
        "evaluation": {"scorers": [{"name": "match", "params": {"location": "exact"}}],
                       "tasks": [{"name": "constant_42",
                                  "script": str(REPO / "sanity_checks/predictable_or_not/predictable_or_not_task.py"),
                                  "function": "predictable_or_not", "split": "validation"}],
                       "do_sample": False, "max_tokens": 4, "seed": 7, "limit": 4},
    }


@pytest.mark.slow
def test_walkthrough_design_scaffold_run_summarize(tmp_path):
    """Execute the skills' marked commands in order on a one-run tiny design; every step exits 0."""
    steps = walkthrough_commands()
    scratch = tmp_path / "scratch"
    models_dir = scratch / "models"
    settings_file = tmp_path / "claude.local.md"
    settings_file.write_text("# walk-through settings\n- Executor: local\n")
    name = "walk_rank_2025-11-01"
    exp_dir = scratch / "ck-experiments" / name
    data = tmp_path / "data" / "constant.json"
    data.parent.mkdir()
    records = [{"input": ",".join(str(i + k) for k in range(5)), "output": "42"} for i in range(72)]
    data.write_text(json.dumps({"train": records[:64], "validation": records[64:]}))
    design_file = exp_dir / "experiment_summary.yaml"
    draft_file = scratch / "ck-drafts" / name / "experiment_summary.yaml"  # the design before approval
    draft_file.parent.mkdir(parents=True)
    draft_file.write_text(yaml.safe_dump(_walk_design(data, name), sort_keys=False))

    values = {**placeholders(), "design_file": str(design_file), "draft_file": str(draft_file),
              "experiment_dir": str(exp_dir),
              "experiment_name": name, "models_dir": str(models_dir), "scratch_dir": str(scratch),
              "executor": "local", "run_name": "tiny-llama_rank8", "run_dir": str(exp_dir / "tiny-llama_rank8")}
    # every step must exist before anything slow runs: name the missing verbs at once
    missing = []
    for step, path, line_no, line in steps:
        for tokens in split_commands(substitute(line, values)[0]):
            reason = parse_cli(*cli_call(tokens))
            if reason:
                missing.append(f"step {step} ({rel(path)}:{line_no}) `{shlex.join(tokens)}`: {reason}")
    assert not missing, "walk-through commands that cannot run yet:\n" + "\n".join(missing)

    env = {**os.environ, "CK_SCRATCH": str(scratch), "CK_SETTINGS": str(settings_file), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline", "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken")}
    exe = Path(sys.executable).parent / "cruijff-kit"
    program = [str(exe)] if exe.exists() else [sys.executable, "-m", "cruijff_kit"]
    transcript = []
    for step, path, line_no, line in steps:
        for tokens in split_commands(substitute(line, values)[0]):
            verb, args = cli_call(tokens)
            if [verb, *args[:1]] == ["design", "save"]:  # nothing in the experiment dir before approval
                assert not design_file.exists() and not (exp_dir / "design-experiment.log").exists()
                assert not (exp_dir / "experiment_summary.md").exists()
            proc = subprocess.run([*program, verb, *args], cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=1200)
            transcript.append(f"$ cruijff-kit {shlex.join([verb, *args])}  [{proc.returncode}]")
            assert proc.returncode == 0, (f"step {step} ({rel(path)}:{line_no}) failed with exit {proc.returncode}:\n"
                                          f"$ {shlex.join(tokens)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print("\n".join(transcript))

    # ck-setup: the tiny model
    assert (models_dir / "tiny-llama" / "config.json").is_file()
    # design: runs expanded, plan rendered, every decision and check logged
    design = yaml.safe_load(design_file.read_text())
    runs = {r["name"]: r for r in design["runs"]}
    assert set(runs) == {"tiny-llama_rank8", "tiny-llama_base"}
    assert (exp_dir / "experiment_summary.md").is_file()
    actions = [e.action for e in logbook.read(exp_dir / "design-experiment.log")]
    for action in ("DECIDE_NAMING", "VERIFY_MODEL", "VERIFY_DATASET", "CALCULATE_TIME", "CHECK_DISK",
                   "CREATE_SUMMARY", "COMPLETE"):
        assert action in actions, f"design-experiment.log lacks {action}: {actions}"
    # scaffold: configs, job scripts, the job graph
    run_dir = exp_dir / "tiny-llama_rank8"
    for file in ("setup_finetune.yaml", "finetune.yaml", "finetune.slurm"):
        assert (run_dir / file).is_file(), file
    jobs = {j["id"]: j for j in json.loads((exp_dir / "jobs.json").read_text())["jobs"]}
    assert set(jobs) == {"tiny-llama_rank8.train", "tiny-llama_rank8.eval.constant_42_epoch0",
                         "tiny-llama_base.eval.constant_42"}
    assert jobs["tiny-llama_rank8.eval.constant_42_epoch0"]["after"] == ["tiny-llama_rank8.train"]
    assert (run_dir / "eval" / "constant_42_epoch0" / "eval_config.yaml").is_file()
    assert {"SCAFFOLD", "COMPLETE"} <= {e.action for e in logbook.read(exp_dir / "scaffold-experiment.log")}
    # run: every job completed, a checkpoint and eval logs exist
    status = subprocess.run([*program, "status", str(exp_dir), "--json"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["done"] and state["counts"]["completed"] == 3, state["counts"]
    assert {j["state"] for j in state["jobs"]} == {"completed"}
    out_dir = scratch / "ck-outputs" / name / "ck-out-tiny-llama_rank8"
    assert (out_dir / "epoch_0").is_dir()
    assert list((run_dir / "eval" / "constant_42_epoch0" / "logs").glob("*.eval"))
    assert list((exp_dir / "tiny-llama_base" / "eval" / "constant_42" / "logs").glob("*.eval"))
    run_actions = {e.action for e in logbook.read(exp_dir / "run-experiment.log")}
    assert {"SUBMIT_JOB", "SUBMIT_EVAL", "ALL_COMPLETE"} <= run_actions, run_actions
    # the scaffold agents' checks, as their files give them, on the scaffolded run and cell
    agent_values = {**values, "run_dir": str(run_dir), "run_name": "tiny-llama_rank8",
                    "cell_dir": str(run_dir / "eval" / "constant_42_epoch0")}
    path_env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    for agent in ("scaffold-torchtune", "scaffold-inspect"):
        for block in fenced_blocks(AGENTS / f"{agent}.md"):
            for line_no, line in block_commands(block) if block.lang in SHELL_LANGS else []:
                for tokens in split_commands(substitute(line, agent_values)[0]):
                    call = cli_call(tokens)
                    argv = [*program, call[0], *call[1]] if call else tokens
                    proc = subprocess.run(argv, cwd=REPO, env=path_env, capture_output=True, text=True, timeout=300)
                    assert proc.returncode == 0, f"agents/{agent}.md:{line_no}: {proc.stdout}{proc.stderr}"
                    if tokens[:2] == ["tune", "validate"]:
                        assert "Config is well-formed!" in proc.stdout + proc.stderr
                    if tokens[:2] == ["bash", "-n"]:
                        assert not proc.stdout.strip() and not proc.stderr.strip()
    assert {"CHECK_TORCHTUNE", "CHECK_INSPECT"} <= {e.action for e in logbook.read(exp_dir / "scaffold-experiment.log")}
    # summarize: tables, report, results block
    analysis = exp_dir / "analysis"
    for file in ("summary.csv", "summary.json", "summary.md"):
        assert (analysis / file).is_file(), file
    assert "tiny-llama_rank8" in (analysis / "summary.md").read_text()
    assert "<!-- ck:results:start -->" in (exp_dir / "experiment_summary.md").read_text()
    losses = (run_dir / "losses.csv").read_text().splitlines()
    assert losses[0].startswith("step") and len(losses) > 2, losses
    assert json.loads((exp_dir / ".ck" / "estimate_check.json").read_text())["runs"][0]["run"] == "tiny-llama_rank8"


# -- the run skill's procedures on a fake-but-real experiment (real local executor, bash job scripts) --------
def skill_cli_calls(path: Path, verbs: set[str], values: dict[str, str]) -> list[tuple[int, str, list[str]]]:
    """(line, verb, args) of the CLI calls of PATH's shell blocks whose verb is in VERBS, in file order."""
    out = []
    for block in fenced_blocks(path):
        if block.lang not in SHELL_LANGS:
            continue
        for line_no, line in block_commands(block):
            for tokens in split_commands(substitute(line, values)[0]):
                call = cli_call(tokens)
                if call and call[0] in verbs:
                    out.append((line_no, call[0], call[1]))
    return out


def _exec(program: list[str], verb: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*program, verb, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _fake_env(tmp_path: Path) -> tuple[list[str], dict]:
    settings_file = tmp_path / "claude.local.md"
    settings_file.write_text("- Executor: local\n")
    env = {**os.environ, "CK_SCRATCH": str(tmp_path / "scratch"), "CK_SETTINGS": str(settings_file)}
    return [sys.executable, "-m", "cruijff_kit"], env


def test_run_skill_failure_procedure_local(tmp_path, monkeypatch):
    """run-experiment's steps on a failing training job: status shows it, the fix + resubmit completes all."""
    run_fixtures = pytest.importorskip("run_fixtures")
    program, env = _fake_env(tmp_path)
    monkeypatch.setenv("CK_SCRATCH", env["CK_SCRATCH"])
    monkeypatch.setenv("CK_SETTINGS", env["CK_SETTINGS"])
    marks, flag = tmp_path / "marks", tmp_path / "fixed.flag"
    broken = f'if [ ! -f "{flag}" ]; then echo "Traceback: flag missing" >&2; exit 3; fi'
    exp = run_fixtures.standard(tmp_path / "exp", marks, runs=("a",), cells=("task_epoch0",),
                                train_extra={"a": broken}, train_sleep=0.1, eval_sleep=0.1)
    skill = SKILLS / "run-experiment" / "SKILL.md"
    values = {**placeholders(), "experiment_dir": str(exp), "executor": "local"}
    # run (the skill's one-command form): the train job fails, its eval cell is cancelled
    run_steps = [(n, v, a) for n, v, a in skill_cli_calls(skill, {"run"}, values) if "--dry-run" not in a]
    proc = _exec(program, run_steps[0][1], run_steps[0][2], env)
    assert proc.returncode != 0
    # monitor: status shows the failure with its log tail
    status = [c for c in skill_cli_calls(skill, {"status"}, values) if "--json" in c[2]][0]
    data = json.loads(_exec(program, status[1], status[2], env).stdout)
    jobs = {j["id"]: j for j in data["jobs"]}
    assert jobs["a.train"]["state"] == "failed" and "Traceback: flag missing" in jobs["a.train"]["tail"]
    assert jobs["a.eval.task_epoch0"]["state"] == "cancelled"
    # the fix, then the skill's failure block: DIAGNOSE log, resubmit --dry-run, resubmit
    flag.write_text("ok")
    for line_no, verb, args in skill_cli_calls(skill, {"log", "resubmit"}, values):
        if verb == "log" and args[0] != "DIAGNOSE":
            continue
        proc = _exec(program, verb, args, env)
        assert proc.returncode == 0, f"{rel(skill)}:{line_no}: {proc.stdout}{proc.stderr}"
    data = json.loads(_exec(program, status[1], status[2], env).stdout)
    assert data["done"] and data["counts"]["completed"] == 2 and data["counts"]["failed"] == 0
    actions = [e.action for e in logbook.read(exp / "run-experiment.log")]
    assert actions.index("JOB_FAILED") < actions.index("DIAGNOSE") < actions.index("RESUBMIT")
    assert actions[-1] == "ALL_COMPLETE"


@pytest.mark.slurm
@pytest.mark.slow
def test_run_agents_on_slurm(tmp_path, monkeypatch):
    """On SLURM the skill's one `run` submits training and evaluation at once (afterok); the agents observe."""
    if shutil.which("sbatch") is None or subprocess.run(["sinfo"], capture_output=True).returncode != 0:
        pytest.skip("no SLURM here (scripts/slurm-local.sh up starts one)")
    run_fixtures = pytest.importorskip("run_fixtures")
    program, env = _fake_env(tmp_path)
    monkeypatch.setenv("CK_SCRATCH", env["CK_SCRATCH"])
    monkeypatch.setenv("CK_SETTINGS", env["CK_SETTINGS"])
    marks = tmp_path / "marks"
    exp = run_fixtures.standard(tmp_path / "exp", marks, runs=("a",), cells=("task_epoch0",),
                                train_sleep=2, eval_sleep=0.1)
    values = {**placeholders(), "experiment_dir": str(exp), "executor": "slurm"}
    skill = SKILLS / "run-experiment" / "SKILL.md"
    for line_no, verb, args in skill_cli_calls(skill, {"run"}, values):
        if "--dry-run" not in args:
            proc = _exec(program, verb, args, env)
            assert proc.returncode == 0, f"{rel(skill)}:{line_no}: {proc.stdout}{proc.stderr}"
    jobs = run_fixtures.state(exp)["jobs"]
    assert all(j["native_id"] for j in jobs.values()), "both stages submitted without waiting"
    status = [c for c in skill_cli_calls(AGENTS / "run-inspect.md", {"status"}, values) if "--json" in c[2]][0]

    def finished():
        proc = _exec(program, status[1], status[2], env)
        assert proc.returncode == 0, proc.stderr
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"`status --json` printed more than JSON:\n{proc.stdout[:2000]}") from None
        return data if data["done"] else None

    data = run_fixtures.wait_for(finished, timeout=180, interval=2, what="all SLURM jobs final")
    assert data["counts"]["completed"] == 2, data["counts"]
    assert run_fixtures.stamp(marks, "a.eval.task_epoch0", "start") >= run_fixtures.stamp(marks, "a.train", "end")
    # the agents' SLURM read commands work on the real job ids
    ids = {j["id"]: j["native_id"] for j in data["jobs"]}
    for block in fenced_blocks(AGENTS / "run-torchtune.md"):
        for _, line in block_commands(block) if block.lang in SHELL_LANGS else []:
            for tokens in split_commands(substitute(line, {**values, "n": str(ids["a.train"])})[0]):
                if tokens[0] in ("squeue", "sacct"):
                    proc = subprocess.run(tokens, capture_output=True, text=True, timeout=60)
                    assert proc.returncode == 0, proc.stderr
                    if tokens[0] == "sacct":
                        assert "COMPLETED" in proc.stdout, proc.stdout


def test_create_inspect_task_commands(tmp_path):
    """The create-inspect-task skill's commands write a task file that defines its @task function."""
    from cruijff_kit.workers.inspect.taskscan import task_problem

    program, env = _fake_env(tmp_path)
    dataset = tmp_path / "capitals.json"
    dataset.write_text(json.dumps({"train": [{"input": "France", "output": "Paris"}],
                                   "validation": [{"input": "Peru", "output": "Lima"}]}))
    values = {**placeholders(), "task_name": "capital_cities", "dataset_file": str(dataset),
              "task_dir": str(tmp_path / "tasks")}
    calls = skill_cli_calls(SKILLS / "create-inspect-task" / "SKILL.md", {"task"}, values)
    assert [("--dry-run" in args) for _, _, args in calls] == [True, False]
    for line_no, verb, args in calls:
        proc = _exec(program, verb, args, env)
        assert proc.returncode == 0, f"create-inspect-task/SKILL.md:{line_no}: {proc.stdout}{proc.stderr}"
        if "--dry-run" in args:
            assert not (tmp_path / "tasks" / "capital_cities_task.py").exists()
    script = tmp_path / "tasks" / "capital_cities_task.py"
    assert script.is_file() and task_problem(script, "capital_cities") == ""
    again = _exec(program, calls[-1][1], calls[-1][2], env)
    assert again.returncode == 2 and "--force" in again.stderr, "never overwritten without --force"


DOCS = [REPO / "README.md", REPO / "sanity_checks" / "predictable_or_not" / "README.md"]


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_readme_cli_commands_parse(path):
    """The READMEs' shell blocks are held to the same standard as the skills."""
    test_fenced_cli_commands_parse(path)


def test_readme_has_both_paths():
    text = (REPO / "README.md").read_text()
    assert "### With Claude Code" in text and "### Without Claude Code" in text
    for skill in ("design-experiment", "scaffold-experiment", "run-experiment", "summarize-experiment"):
        assert f"/{skill}" in text
