"""The layout rules of README's "Architecture" section, read from the source itself: the
packages of src/c50k import each other without a cycle, the command line is imported by no
tier, the settings are read from the environment only at a process's edge, and gunicorn's
master loads no metrics library."""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import c50k

SOURCE = Path(c50k.__file__).parent
# Where a process starts and reads its settings from the environment; everything else gets
# them passed down.
SETTINGS_EDGES = {
    "commands/config.py": "the command line",
    "runtime/gunicorn_conf.py": "gunicorn's master, started as plain gunicorn",
    "runtime/worker.py": "a worker booted by plain gunicorn",
    "settings.py": "instance_settings: what an app instance the stack starts will read",
}
COMMAND_LINE = {"cli", "commands", "__main__"}


@dataclass(frozen=True)
class Import:
    source: str  # The importing file, relative to src/c50k.
    line: int
    module: str  # The imported module, absolute.

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} imports {self.module}"


def package_of(relative: str) -> str:
    """c50k's first-level package or module a file or dotted module belongs to."""
    return relative.replace("/", ".").removesuffix(".py").split(".")[0]


@cache
def modules() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(SOURCE)): ast.parse(path.read_text(), str(path))
        for path in sorted(SOURCE.rglob("*.py"))
    }


def imports(relative: str, tree: ast.Module) -> list[Import]:
    """Every import of a c50k module in a file: at the top, inside functions and under
    TYPE_CHECKING alike (a function-local import is still a dependency)."""
    package = ["c50k", *relative.removesuffix(".py").split("/")[:-1]]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            names = [".".join([*base, node.module or ""]).strip(".")]
        else:
            continue
        found += [Import(relative, node.lineno, n) for n in names if n.startswith("c50k.")]
    return found


@cache
def package_graph() -> dict[str, list[Import]]:
    """Package -> the imports that reach another package."""
    edges: dict[str, list[Import]] = defaultdict(list)
    for relative, tree in modules().items():
        for found in imports(relative, tree):
            source, target = package_of(relative), package_of(found.module.removeprefix("c50k."))
            if source != target:
                edges[source].append(found)
    return edges


def test_packages_import_each_other_without_a_cycle() -> None:
    edges = package_graph()
    graph = {
        source: {package_of(i.module.removeprefix("c50k.")) for i in found}
        for source, found in edges.items()
    }
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle: list[str] = exc.args[1]
        # graphlib lists the cycle backwards (each node depends on the one after it).
        hops = list(zip(cycle[1:], cycle, strict=False))
        evidence = [
            i.where
            for source, target in hops
            for i in edges[source]
            if package_of(i.module.removeprefix("c50k.")) == target
        ]
        raise AssertionError(
            f"package cycle {' -> '.join(reversed(cycle))}:\n" + "\n".join(evidence)
        ) from None


def test_no_tier_imports_the_command_line() -> None:
    offenders = [
        i.where
        for source, found in package_graph().items()
        if source not in COMMAND_LINE
        for i in found
        if package_of(i.module.removeprefix("c50k.")) in COMMAND_LINE
    ]
    assert offenders == []


def test_settings_are_read_from_the_environment_only_at_process_edges() -> None:
    readers = {
        f"{relative}:{node.lineno}"
        for relative, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Settings"
        and not node.args
        and not node.keywords
    }
    assert {r.partition(":")[0] for r in readers} <= SETTINGS_EDGES.keys(), sorted(readers)


@dataclass(frozen=True)
class Module:
    tree: ast.Module
    package: str  # What a relative import is relative to: the module itself for __init__.py.


@cache
def by_name() -> dict[str, Module]:
    """c50k's modules by dotted name ("c50k.api" for c50k/api/__init__.py)."""
    found = {}
    for relative, tree in modules().items():
        parts = ["c50k", *relative.removesuffix(".py").split("/")]
        if parts[-1] == "__init__":
            parts.pop()
            found[".".join(parts)] = Module(tree, ".".join(parts))
        else:
            found[".".join(parts)] = Module(tree, ".".join(parts[:-1]))
    return found


def top_level_imports(name: str) -> list[str]:
    """The modules `name` imports when it is imported: not those in functions, nor under
    TYPE_CHECKING."""
    module = by_name()[name]
    base = module.package.split(".")
    found = []
    statements = list(module.tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            statements += node.body + node.orelse
        elif isinstance(node, ast.Try):
            statements += node.body + node.orelse + node.finalbody
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = base[: len(base) - node.level + 1] if node.level else []
            source = ".".join([*prefix, node.module or ""]).strip(".")
            # `from package import module` loads the module too.
            found += [source, *(f"{source}.{a.name}" for a in node.names)]
    return found


def loaded_at_import(name: str) -> set[str]:
    """Every module that importing `name` loads, transitively, parent packages included;
    modules outside c50k by their top-level name."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        parts = todo.pop().split(".")
        for depth in range(1, len(parts) + 1):  # Importing a.b.c imports a and a.b first.
            module = ".".join(parts[:depth])
            if module not in seen:
                seen.add(module)
                if module in by_name():
                    todo += top_level_imports(module)
    return {m if m.startswith("c50k") else m.split(".")[0] for m in seen}


def test_gunicorns_master_loads_no_metrics_library() -> None:
    # prometheus_client picks its mode when imported: the master's on_starting hook must name
    # the metrics directory before anything imports it, or the workers it forks count in
    # memory and the exporter sums nothing (observability/multiprocess.py).
    for entry in ("c50k.cli", "c50k.runtime.serving", "c50k.runtime.worker"):
        assert "prometheus_client" not in loaded_at_import(entry), entry
    assert "prometheus_client" in loaded_at_import("c50k.api.app")  # The check sees it.


def test_the_layout_sees_every_kind_of_import() -> None:
    tree = ast.parse(
        "from c50k.cache import memory\n"
        "from . import routes\n"
        "from ..store.base import ItemStore\n"
        "if TYPE_CHECKING:\n    import c50k.settings\n"
        "def later() -> None:\n    from c50k.cli import app\n"
    )
    found = [i.module for i in imports("api/app.py", tree)]
    assert found == [
        "c50k.cache",
        "c50k.api",
        "c50k.store.base",
        "c50k.settings",
        "c50k.cli",
    ]
