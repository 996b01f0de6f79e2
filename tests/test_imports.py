"""The package's modules import each other without cycles, also counting the imports made at call time (which
keep ``arssr --help`` fast, and must not hide a cycle)."""

import ast
from pathlib import Path

import pytest

import arssr

PACKAGE = Path(arssr.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(at_call_time: bool = True) -> dict[str, set[str]]:
    """Each arssr module -> the arssr modules it imports at module level (and inside functions)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree) if at_call_time else tree.body:
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    edges.add(child if child in modules else node.module)
        graph[name] = edges - {name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (depth-first search), or ``None``."""
    state, stack = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == "open":
                return stack[stack.index(other):] + [other]
            if other not in state and (found := visit(other)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("at_call_time", [False, True])
def test_no_import_cycle_among_the_package_modules(at_call_time):
    graph = module_imports(at_call_time)
    assert {"arssr.inference", "arssr.gain", "arssr.models.tiling"} <= set(graph)
    assert "arssr.models.tiling" in graph["arssr.gain"] and "arssr.gain" in graph["arssr.inference"]
    assert cycle(graph) is None
