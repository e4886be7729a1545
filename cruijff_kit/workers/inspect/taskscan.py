"""Static checks of inspect-ai task scripts (ast only: the CLI side never imports inspect_ai)."""
from __future__ import annotations

import ast
from pathlib import Path


def task_functions(script: str | Path) -> dict[str, bool]:
    """{function name: decorated with @task} for every top-level function of the script."""
    tree = ast.parse(Path(script).read_text(), filename=str(script))
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
    if not path.is_file():
        return f"task script not found: {path}"
    try:
        found = task_functions(path)
    except SyntaxError as exc:
        return f"{path}:{exc.lineno}: Python syntax error: {exc.msg}"
    if function not in found:
        return f"Function '{function}' not found in {path}"
    if not found[function]:
        return f"Function '{function}' in {path} is not decorated with @task"
    return ""
