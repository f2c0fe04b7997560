"""The package's shape, checked from its source: functions read as steps, and no room imports
another room's private helpers (a room: a subpackage of gravity, or a top-level module)."""

from __future__ import annotations

import ast
from pathlib import Path

import gravity

PACKAGE = Path(gravity.__file__).parent
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[Path, ast.Module]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 20, paths  # the walk found the package, not an empty folder
    return [(p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p))) for p in paths]


def _room(dotted: str) -> str:
    """gravity.evaluate.runner -> evaluate; gravity.run -> run."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def long_functions(modules: list[tuple[Path, ast.Module]], limit: int) -> list[str]:
    found = []
    for path, tree in modules:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > limit:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    return found


def private_imports_across_rooms(modules: list[tuple[Path, ast.Module]]) -> list[str]:
    found = []
    for path, tree in modules:
        here = _dotted(path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if not node.module.startswith("gravity.") or _room(node.module) == _room(here):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{here} imports {node.module}.{alias.name}")
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    assert long_functions(_modules(), MAX_FUNCTION_LINES) == []


def test_no_room_imports_another_rooms_private_helpers() -> None:
    assert private_imports_across_rooms(_modules()) == []


def test_the_checks_find_what_they_look_for() -> None:
    """Each check flags a planted offender (so an empty result above means something)."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    planted = ast.parse(
        "from gravity.synth.pipeline import _private\n"
        "from gravity.evaluate.metrics import _require\n"
        "from gravity.synth.pipeline import public\n"
        f"def long():\n{body}\n"
        "def short():\n    return 1\n"
    )
    path = PACKAGE / "evaluate" / "planted.py"  # never written: only its dotted name is used
    assert long_functions([(path, planted)], MAX_FUNCTION_LINES) == [
        "gravity/evaluate/planted.py:4 long"
    ]
    assert private_imports_across_rooms([(path, planted)]) == [
        "gravity.evaluate.planted imports gravity.synth.pipeline._private"
    ]
