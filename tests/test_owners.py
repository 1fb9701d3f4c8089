"""Every file format has one owner module, and modules share only public names (#23).

Read from the source (``ast``), like tests/test_layers.py: a file name spelled as a path in
another module, or a FITS reader outside :mod:`holly.data.imageio`, means a second writer or
reader of that format; ``from holly.x import _name`` or ``x._name`` across modules means a
private name has become an interface and should be made public.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

import holly
from holly.run.runfolder import check_strict_json, write_evaluation, write_halfsets

PACKAGE = Path(holly.__file__).parent
# file name -> the one module that writes and reads it (path relative to holly/)
OWNERS = {
    "evaluation.json": "run/runfolder.py",
    "halfsets.json": "run/runfolder.py",
    "vs_published.json": "run/runfolder.py",
    "summary.csv": "results/summary.py",
}
# plan.py reserves the name (no experiment may be called so, it would collide with the
# workflow's RESULTS/summary.csv); it neither writes nor reads the file.
RESERVED_ONLY = {("summary.csv", "plan.py")}
FITS_OWNER = "data/imageio.py"
FITS_READERS = ("astropy", "fitsio")  # the packages that read FITS


def sources() -> list[tuple[str, ast.Module]]:
    return [
        (p.relative_to(PACKAGE).as_posix(), ast.parse(p.read_text(), str(p)))
        for p in sorted(PACKAGE.rglob("*.py"))
    ]


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants of a module and of its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def path_literals(tree: ast.Module) -> list[tuple[str, int]]:
    """String constants (f-string parts included, docstrings not) that end in a path to a
    format's file: the name itself, or ``.../name``; help texts that mention it in passing
    do not count."""
    skip = docstrings(tree)
    pattern = re.compile(r"(?:^|/)(" + "|".join(map(re.escape, OWNERS)) + r")$")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            match = pattern.search(node.value)
            if match:
                found.append((match.group(1), node.lineno))
    return found


def test_each_file_name_is_spelled_by_its_owner_only():
    problems = [
        f"holly/{path}:{line}: spells {name!r}; read or write it through holly/{OWNERS[name]}"
        for path, tree in sources()
        for name, line in path_literals(tree)
        if path != OWNERS[name] and (name, path) not in RESERVED_ONLY
    ]
    assert not problems, "\n".join(problems)


def test_owners_spell_their_names():
    """The map above is true: each owner defines its file's name (a renamed owner fails here)."""
    for name, owner in OWNERS.items():
        assert name in (PACKAGE / owner).read_text(), f"{owner} no longer names {name}"


def test_fits_is_read_by_imageio_only():
    problems = []
    for path, tree in sources():
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            if path != FITS_OWNER and any(m.split(".")[0] in FITS_READERS for m in modules):
                problems.append(f"holly/{path}:{node.lineno}: reads FITS; use holly.data.imageio")
    assert not problems, "\n".join(problems)


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> holly module, for every ``import holly.x as y`` / ``from holly import x``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("holly"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "holly"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("holly"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file():
                    aliases[a.asname or a.name] = sub
    return aliases


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_crosses_modules():
    problems = []
    for path, tree in sources():
        aliases = _module_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("holly"):
                problems += [
                    f"holly/{path}:{node.lineno}: imports {node.module}.{a.name}"
                    for a in node.names
                    if _private(a.name)
                ]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                base = _dotted(node.value)
                if base is not None and base.split(".")[0] in aliases:
                    problems.append(f"holly/{path}:{node.lineno}: uses {base}.{node.attr}")
    assert not problems, "\n".join(problems)


# Calls that read or write a file; the method layer (holly/method/) makes none of them.
FILE_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "load", "save"}
FILE_CALLS |= {"savez", "savez_compressed", "loadtxt", "genfromtxt", "files"}


def test_method_layer_reads_and_writes_no_files():
    """The method is pure computation: sigma lists, clouds and images come in as values
    (:mod:`holly.data.sigmas` parses the sigma lists the curriculum schedules)."""
    problems = []
    for path, tree in sources():
        if not path.startswith("method/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in FILE_CALLS:
                    problems.append(f"holly/{path}:{node.lineno}: {name}(...) touches a file")
            elif isinstance(node, ast.ImportFrom) and node.module == "importlib":
                problems.append(f"holly/{path}:{node.lineno}: importlib (package resources)")
    assert not problems, "\n".join(problems)


def test_score_files_keep_their_bytes(tmp_path):
    """evaluation.json and halfsets.json: indented JSON with a newline, NumPy values as plain
    numbers, NaN refused (what `holly evaluate` and `holly compare` always wrote)."""
    result = {"n_points": np.int64(3), "reconstruction": {"chamfer": np.float32(0.5)}, "k": (1, 2)}
    expected = '{\n  "n_points": 3,\n  "reconstruction": {\n    "chamfer": 0.5\n  },\n'
    expected += '  "k": [\n    1,\n    2\n  ]\n}\n'
    for write in (write_evaluation, write_halfsets):
        write(tmp_path / "out.json", result)
        assert (tmp_path / "out.json").read_text() == expected
    assert json.loads(expected)["n_points"] == 3
    with pytest.raises(ValueError):
        check_strict_json({"chamfer": float("nan")})
    with pytest.raises(ValueError):
        write_evaluation(tmp_path / "nan.json", {"chamfer": np.float64("nan")})
    assert not (tmp_path / "nan.json").exists()
