"""The package's module graph has no import cycle, and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trio_voice"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """trio_voice modules that ``path`` imports, anywhere in it: an import only for type checking is still a
    dependency, and a cycle through one is still a cycle in the design."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names if alias.name.startswith("trio_voice"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                if target.startswith("trio_voice"):
                    # "from . import codec" imports trio_voice.codec
                    for alias in child.names:
                        candidate = f"{target}.{alias.name}"
                        found.add(candidate if _exists(candidate) else target)
            visit(child)

    visit(tree)
    return {name for name in found if _exists(name)}


def _exists(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path) - {name} for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_the_module_graph_has_no_cycle() -> None:
    """No trio_voice module imports, directly or through others, a module that imports it back
    (package __init__ re-exports aside: a package's own modules are not its importers)."""
    edges = graph()
    # A package imports its submodules to re-export them; that edge points down, never back up.
    for name in edges:
        edges[name] = {t for t in edges[name] if not name.startswith(t + ".")}
    assert find_cycle(edges) is None, " → ".join(find_cycle(edges) or [])


def test_the_session_modules_import_on_their_own() -> None:
    """Each session module imports first in a fresh interpreter (an import cycle would fail here)."""
    for name in (
        "session",
        "converse",
        "receive",
        "writer",
        "listen",
        "lifecycle",
        "session_state",
        "turn_control",
        "http.streaming",
        "server",
    ):
        result = subprocess.run(
            [sys.executable, "-c", f"import trio_voice.{name}"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"trio_voice.{name}: {result.stderr[-800:]}"
