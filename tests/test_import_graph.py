"""The workload never imports the harness: no module under nanochat_core/ imports `bench` (AST scan)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nanochat_core"
FORBIDDEN = "bench"


def forbidden_imports(source: str, filename: str = "<string>") -> list[str]:
    """Names of `bench` modules imported anywhere in `source` (top level, functions, try blocks,
    `importlib.import_module("bench...")` / `__import__` with a literal name)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            continue
        found += [n for n in names if n == FORBIDDEN or n.startswith(FORBIDDEN + ".")]
    return found


def test_scanner_catches_every_import_form():
    assert forbidden_imports("import bench") == ["bench"]
    assert forbidden_imports("import os, bench.config as c") == ["bench.config"]
    assert forbidden_imports("from bench.result import x") == ["bench.result"]
    assert forbidden_imports("def f():\n    from bench import cli\n") == ["bench"]
    assert forbidden_imports("try:\n    import bench.power\nexcept ImportError:\n    pass\n") == ["bench.power"]
    assert forbidden_imports("import importlib\nimportlib.import_module('bench.cli')") == ["bench.cli"]
    assert forbidden_imports("__import__('bench')") == ["bench"]
    # not the harness: relative imports, similarly named modules, strings that are not imports
    assert forbidden_imports("from . import bench\nimport benchmark\nimport benches.x\nx = 'bench'") == []


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_modules():
    names = {p.relative_to(PACKAGE).as_posix() for p in _modules()}
    assert {"model.py", "optim.py", "stages/pretrain.py", "stages/__main__.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_does_not_import_bench(path):
    assert forbidden_imports(path.read_text(encoding="utf-8"), str(path)) == []
