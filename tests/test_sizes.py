"""On the method's path (``holly/method/``, ``holly/train/``) every function and class body is at
most 60 lines (house style, issue #23): a longer one is split by concept. A body runs from its
first statement (the docstring, if any) to its last line; the test reads the source (``ast``)
and names the file, the name and the length of each one over. No exceptions list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import holly

PACKAGE = Path(holly.__file__).parent
ON_THE_PATH = ("method", "train")
MAX_BODY_LINES = 60


def long_bodies(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``file:line: name is N lines`` (``file`` relative to ``root``) for each function or class
    in ``path`` whose body is too long."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            length = node.end_lineno - node.body[0].lineno + 1
            if length > MAX_BODY_LINES:
                where = path.relative_to(root).as_posix()
                found.append(f"{where}:{node.lineno}: {node.name} is {length} lines")
    return found


def test_method_and_train_bodies_are_at_most_60_lines():
    files = sorted(p for folder in ON_THE_PATH for p in (PACKAGE / folder).rglob("*.py"))
    assert files
    too_long = [line for path in files for line in long_bodies(path)]
    assert not too_long, f"bodies over {MAX_BODY_LINES} lines:\n" + "\n".join(too_long)


def test_a_long_body_is_named(tmp_path):
    source = tmp_path / "holly" / "train" / "long.py"
    source.parent.mkdir(parents=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    source.write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert long_bodies(source, tmp_path) == ["holly/train/long.py:5: long is 61 lines"]
