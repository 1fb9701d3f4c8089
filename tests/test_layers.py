"""The package's layers hold: each module imports only modules of its own layer or below, and
no two modules import each other, directly or around a loop (docs/architecture.md, "Layers").

Layers, bottom up: base (``holly/*.py``: errors, config, atomic, checksums, units) ←
``holly.method`` ← ``holly.data`` ← ``holly.run`` ← {``holly.train``, ``holly.results``} ←
{``holly.commands``, ``holly.cli``, ``holly.plan``}. ``train`` and ``results`` never import each
other. Every import counts, at module level or inside a function: a function-level import is
for start-up time only, never a way around this order. The test reads the source (``ast``), so
it needs no import to succeed and names the file and line of each violation. No exceptions list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import holly

PACKAGE = Path(holly.__file__).parent
BASE_MODULES = ("errors", "config", "atomic", "checksums", "units")
TOP_MODULES = ("cli", "plan", "__main__")
STAGES = {"method": 1, "data": 2, "run": 3, "train": 4, "results": 4, "commands": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> tuple[int, str]:
    """(layer, group) of a holly module; the group tells train and results apart."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE_MODULES:
        return 0, "base"
    if parts[1] in STAGES:
        return STAGES[parts[1]], parts[1]
    if parts[1] in TOP_MODULES:
        return 5, "top"
    raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py's map")


def holly_imports(path: Path) -> list[tuple[str, int]]:
    """Every ``holly...`` module that ``path`` imports, anywhere in the file, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; spell the module out")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("holly"):
            for alias in node.names:  # `from holly.method import geometry` imports a module
                sub = f"{node.module}.{alias.name}"
                found.append(
                    (
                        sub
                        if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file()
                        else node.module,
                        node.lineno,
                    )
                )
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("holly")]
    return found


def import_graph() -> dict[str, list[tuple[str, int, Path]]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[module_name(path)] = [(m, line, path) for m, line in holly_imports(path)]
    return graph


def test_every_import_points_down_the_layers():
    problems = []
    for module, imports in import_graph().items():
        layer, group = rank(module)
        for target, line, path in imports:
            if target == "holly":  # the package itself: __version__
                continue
            t_layer, t_group = rank(target)
            sideways = t_layer == layer == 4 and t_group != group
            if t_layer > layer or sideways:
                problems.append(f"{path}:{line}: {module} ({group}) imports {target} ({t_group})")
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_no_import_cycles():
    imports = import_graph()
    graph = {m: {t for t, _, _ in imps if t in imports} for m, imps in imports.items()}
    done, on_path, cycles = set(), [], []

    def visit(node):
        if node in on_path:
            cycles.append(on_path[on_path.index(node) :] + [node])
            return
        if node in done:
            return
        on_path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        on_path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_layer_map_knows_every_module():
    for name in import_graph():
        rank(name)
