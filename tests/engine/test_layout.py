"""The engine's import graph has no circle: every module imports only modules below it.
Read from the source (every import, TYPE_CHECKING ones included), so a circle fails here
even when Python would tolerate it at run time."""

import ast
from pathlib import Path

import xdmvpn.engine

ENGINE = Path(xdmvpn.engine.__file__).parent


def engine_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(ENGINE.glob("*.py")):
        name = path.stem
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:          # from .x import y
                    deps.add(node.module.split(".")[0])
                elif node.level == 1:                        # from . import x
                    deps.update(a.name for a in node.names)
                elif node.module and node.module.startswith("xdmvpn.engine."):
                    deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[2] for a in node.names
                            if a.name.startswith("xdmvpn.engine."))
        deps.discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}            # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_engine_has_no_import_cycle():
    graph = engine_imports()
    assert {"node", "context", "pending", "registration_client", "registration_server",
            "resolution", "shortcut", "purge", "cache"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_handlers_get_the_context_not_the_node():
    """Only stack.py may import node (the dual-stack facade the daemon drives, one node
    per overlay family); no handler does."""
    graph = engine_imports()
    assert [m for m, deps in graph.items() if "node" in deps] == ["stack"]
    assert [m for m, deps in graph.items() if "stack" in deps] == []
