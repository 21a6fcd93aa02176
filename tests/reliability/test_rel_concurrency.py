"""Concurrency: `nanobench run`s started at the same moment on one cache directory.

Two runs with different ids both complete and both bundles verify; the shared download (shipped corpus
shards + their manifest) is written once and intact; a third run racing for an id already being used is
refused with exit 2 and leaves the winner's run directory untouched.
"""

from __future__ import annotations

import json

import pytest

from nanochat_core.download import sha256_file
from reliability_helpers import nanobench, run_args, start_nanobench, write_tiny_config

pytestmark = pytest.mark.slow


def test_concurrent_runs_share_the_cache_without_clobbering(tmp_path):
    root = tmp_path
    write_tiny_config(root)
    phases = "download,tokenizer"
    procs = {
        name: start_nanobench(run_args(root, run_id, phases=phases, probe=False), root, f"{name}.log")
        for name, run_id in (("a", "alpha"), ("b", "beta"), ("a2", "alpha"))
    }
    codes = {name: proc.wait(timeout=400) for name, (proc, _) in procs.items()}
    logs = {name: log.read_text(errors="replace") for name, (_, log) in procs.items()}
    assert codes["b"] == 0, logs["b"][-2000:]
    # exactly one of the two runs that asked for "alpha" got it; the other was refused up front
    assert sorted((codes["a"], codes["a2"])) == [0, 2], logs
    loser = "a" if codes["a"] == 2 else "a2"
    assert "another nanobench process is running" in logs[loser] or "already exists" in logs[loser]

    runs = root / "runs"
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == ["alpha", "beta"]
    for run_id in ("alpha", "beta"):
        verify = nanobench(["verify", str(runs / run_id), "--no-preset-pins"], root)  # a custom tiny config: not the pinned smoke workload
        assert verify.returncode == 0, f"{run_id}: {verify.stdout}{verify.stderr}"
        launch = json.loads((runs / run_id / "launch.json").read_text())
        assert launch["argv"][launch["argv"].index("--run-id") + 1] == run_id  # not overwritten by the loser

    data_dir = root / "cache" / "shipped_corpus"
    manifest = json.loads((data_dir / "manifest.json").read_text())
    shards = sorted(p.name for p in data_dir.glob("*.parquet"))
    assert shards == sorted(manifest) and len(shards) == 3
    for name, entry in manifest.items():
        assert sha256_file(data_dir / name) == entry["sha256"]
        assert (data_dir / name).stat().st_size == entry["size"]
    assert not [p for p in (root / "cache").rglob("*") if p.name.endswith((".part", ".tmp"))]
    tok = [json.loads((runs / r / "result.json").read_text())["workload"]["tokenizer_sha256"] for r in ("alpha", "beta")]
    assert tok[0] == tok[1] and tok[0]
