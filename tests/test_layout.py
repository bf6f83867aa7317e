"""The tree keeps its direction: the shared basics import nothing above them (no hidden circles)."""

from __future__ import annotations

import ast
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "worker"
BASICS = ("config.py", "logs.py", "errors.py")


def _worker_imports(path: Path) -> set[str]:
    """Every ``worker.*`` module ``path`` imports, including imports inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found |= {n for n in names if n == "worker" or n.startswith("worker.")}
    return found


def test_shared_basics_import_nothing_above_them():
    for name in BASICS:
        assert _worker_imports(WORKER / name) == set(), f"worker/{name} must not import other worker modules"


def test_one_masking_function():
    defs = [
        f"{p.relative_to(WORKER)}"
        for p in WORKER.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name == "redact"
    ]
    assert defs == ["logs.py"]


def test_redact_masks_given_and_key_shaped_secrets():
    from worker.logs import redact

    assert redact("pw=hunter2-long and sk-abcdefgh123", ["hunter2-long"]) == "pw=*** and sk-***"


def test_readme_where_things_are_matches_the_tree():
    """README's "Where things are" table lists every package of worker/, and every path it names exists."""
    import re

    readme = (WORKER.parent / "README.md").read_text()
    table = readme.split("Where things are:", 1)[1].split("\n\n", 2)[1]
    named = re.findall(r"^\| `([^`]+)`", table, re.MULTILINE)
    for path in named:
        assert (WORKER.parent / path).exists(), f"README names {path}, which does not exist"
    packages = {
        f"worker/{p.relative_to(WORKER).parent}/" for p in WORKER.rglob("__init__.py") if p.parent != WORKER
    }
    assert packages <= set(named), f"packages missing from README's table: {sorted(packages - set(named))}"
