"""Fixtures of the reliability suite: one uninterrupted tiny run shared by the tests that compare against it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reliability_helpers import nanobench, run_args, write_tiny_config


class ReferenceRun:
    """An uninterrupted tiny `nanobench run` (download, tokenizer, pretrain + determinism probe)."""

    def __init__(self, root: Path, proc: subprocess.CompletedProcess) -> None:
        self.root, self.proc = root, proc
        self.run_dir = root / "runs" / "reference"


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> ReferenceRun:
    root = tmp_path_factory.mktemp("reference")
    write_tiny_config(root)
    proc = nanobench(run_args(root, "reference"), root)
    ref = ReferenceRun(root, proc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ref
