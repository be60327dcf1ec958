"""No import cycle among the project's modules: common, common.deploy and the task packages.

Read with `ast`, not by importing: every `import` and `from ... import` statement counts wherever it is,
inside functions too (a cycle hidden in a function still ties two modules together), except those under
`if TYPE_CHECKING:`, which never run.
"""

from __future__ import annotations

import ast
import pathlib

from common.tasks import TASKS

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("common", *TASKS)


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, pathlib.Path]:
    """{dotted module name: its file} of every module of PACKAGES, subpackages included."""
    return {_module_name(path): path for package in PACKAGES for path in sorted((REPO_ROOT / package).rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    skipped = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            skipped |= {inner for statement in node.body for inner in ast.walk(statement)}
    return skipped


def imported_modules(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The project modules that module `name` (at `path`) imports, anywhere in its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped, found = _type_checking_only(tree), set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            # `from package import module` imports the module; `from module import name`, the module
            found |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names}
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a module chain that returns to its first module) through each strongly connected group of
    modules that import each other, found by Tarjan's algorithm."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_chain(graph, group) for group in groups]


def _chain(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the first module (by name) of `group`, by breadth-first search."""
    start = min(group)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]] & group):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                paths.append([*path, nxt])
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


def test_the_graph_holds_every_module_and_imports_inside_functions() -> None:
    graph = import_graph()
    assert {"common.cli", "common.deploy.pipeline", "common.summary", "image_classification.task"} <= set(graph)
    assert "common.target_cost" in graph["common.flops"]  # imported inside task_tables
    assert {"common.evaluation", "common.table1"} <= graph["common.reproduce"]
    assert "common.boards" not in graph["common.model_cost"]  # under TYPE_CHECKING only


def test_cycles_are_found_and_printed() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(chain) for chain in found)
