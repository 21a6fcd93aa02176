"""The real thing, end to end: `nanobench run --preset smoke` on this machine, then `nanobench verify`.

This is the one full pipeline run CI keeps (several minutes on a 2-core CPU). Everything is real: the
shipped corpus, tokenizer training, pretraining, CORE on the offline subset, mid/SFT, ChatCORE, the
determinism probe, the signed bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Not marked slow on purpose: this is the one real end-to-end run the default test command (and CI) keeps.


def nanobench(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "NANOBENCH_KEY_DIR": str(root / "keys")}
    proc = nanobench(
        "run", "--preset", "smoke", "--hourly-rate", "24", "--price-source", "test fixture rate",
        "--runs-dir", str(root / "runs"), "--cache-dir", str(root / "cache"), "--run-id", "e2e",
        env=env, cwd=root,
    )
    print(proc.stdout[-6000:], proc.stderr[-6000:])
    run_dir = root / "runs" / "e2e"
    return proc, run_dir, env, root


def test_smoke_run_completes_with_every_phase(smoke_run):
    proc, run_dir, _, _ = smoke_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    names = [p["name"] for p in result["phases"]]
    assert names == ["download", "tokenizer", "pretrain", "base_eval", "mid_train", "sft", "chat_eval", "determinism_probe"]
    assert all(p["seconds"] > 0 for p in result["phases"])
    t = result["triple"]
    counted = [p for p in result["phases"] if p["counted"]]
    assert t["minutes"] == pytest.approx(sum(p["seconds"] for p in counted) / 60)
    assert t["usd"] == pytest.approx(24 * sum(p["seconds"] for p in counted) / 3600)
    assert t["core_label"] == "CORE-offline-18"  # the shipped subset is never called CORE
    assert t["core"] is not None and t["chatcore"] is not None
    assert result["determinism"]["class"] == "bitwise"  # CPU, same seed, fresh process
    assert result["valid"] is True
    assert result["metrics"]["val_bpb"] < 3.0
    # Energy on a CPU box without readable RAPL is null with a reason, never zero.
    for p in result["phases"]:
        assert p["energy_joules"] is None or p["energy_joules"] > 0
        if p["energy_joules"] is None:
            assert p["unavailable_reason"]
    assert (run_dir / "phases" / "base_eval" / "core.csv").exists()
    assert (run_dir / "phases" / "chat_eval" / "chat_eval.csv").exists()
    assert "triple" in proc.stdout


def test_smoke_bundle_verifies_and_tampering_fails(smoke_run):
    proc, run_dir, env, root = smoke_run
    assert proc.returncode == 0
    ok = nanobench("verify", str(run_dir), env=env, cwd=root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    tampered = root / "tampered"
    shutil.copytree(run_dir, tampered, ignore=shutil.ignore_patterns("artifacts"))
    report = tampered / "report.md"
    data = bytearray(report.read_bytes())
    data[len(data) // 2] ^= 0x01
    report.write_bytes(bytes(data))
    bad = nanobench("verify", str(tampered), env=env, cwd=root)
    assert bad.returncode != 0
    assert "report.md" in bad.stdout + bad.stderr
