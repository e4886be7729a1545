"""Static checks of inspect-ai task scripts (ast only: the CLI side never imports inspect_ai)."""
from __future__ import annotations

import ast
from pathlib import Path


SCRIPT_LIMIT = 5 * 1024 * 1024  # bytes: a task script is a page of Python, not a data file


class ScriptUnreadable(ValueError):
    """A task script we refuse to parse (not a regular file, too big, not UTF-8, nested too deeply)."""


def read_script(script: str | Path) -> str:
    import stat

    path = Path(script)
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ScriptUnreadable(f"{path} is not a regular file")
    if info.st_size > SCRIPT_LIMIT:
        raise ScriptUnreadable(f"{path} is {info.st_size / 1e6:.0f} MB, too big for a task script")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScriptUnreadable(f"{path} is not UTF-8 text (byte {exc.start})") from None


def parse_script(script: str | Path) -> ast.Module:
    try:
        return ast.parse(read_script(script), filename=str(script))
    except (RecursionError, MemoryError, ValueError) as exc:
        if isinstance(exc, (ScriptUnreadable, SyntaxError)):
            raise
        raise ScriptUnreadable(f"{script} cannot be parsed ({type(exc).__name__})") from None


def task_functions(script: str | Path) -> dict[str, bool]:
    """{function name: decorated with @task} for every top-level function of the script."""
    tree = parse_script(script)
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = any(_is_task_decorator(d) for d in node.decorator_list)
    return found


def _is_task_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name):
        return target.id == "task"
    if isinstance(target, ast.Attribute):
        return target.attr == "task"
    return False


def task_problem(script: str | Path, function: str) -> str:
    """'' when `script` defines `@task def function`, else what is wrong (one line)."""
    path = Path(script)
    if not path.exists():
        return f"task script not found: {path}"
    try:
        found = task_functions(path)
    except SyntaxError as exc:
        return f"{path}:{exc.lineno}: Python syntax error: {exc.msg}"
    except (ScriptUnreadable, OSError) as exc:
        return str(exc) if isinstance(exc, ScriptUnreadable) else f"{path} cannot be read ({exc.strerror})"
    if function not in found:
        return f"Function '{function}' not found in {path}"
    if not found[function]:
        return f"Function '{function}' in {path} is not decorated with @task"
    return ""
