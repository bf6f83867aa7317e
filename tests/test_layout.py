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
