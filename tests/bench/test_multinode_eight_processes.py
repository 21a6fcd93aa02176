"""`smoke` on 8 processes (`--nproc 8 --device cpu`, gloo): it runs to a bundle `verify` accepts, or it
refuses before the first phase with a clear message (issue 13: it used to crash in SFT after three
phases had run, because 8 examples per step do not divide over 8 ranks x device batch 4).

Slow: 8 processes on a 2-core box take a long time; run with `-m slow`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_on_eight_processes_runs_or_refuses_up_front(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "bench.cli", "run", "--preset", "smoke", "--hourly-rate", "1", "--device", "cpu",
           "--nproc", "8", "--runs-dir", str(runs), "--cache-dir", str(tmp_path / "cache"), "--key-dir", str(tmp_path / "keys"),
           "--run-id", "eight", "--yes"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=7200)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    run_dir = runs / "eight"
    if proc.returncode == 2:  # refused: before anything ran, with the reason
        assert "Traceback" not in out and ("divid" in out or "world" in out or "rank" in out), out[-3000:]
        state = run_dir / "state.json"
        assert not state.exists() or not json.loads(state.read_text()).get("phases"), "refused after phases had run"
        assert seconds < 120
        return
    assert proc.returncode == 0, out[-6000:]
    checked = subprocess.run([sys.executable, "-m", "bench.cli", "verify", str(run_dir)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["metrics"]["world_size"] == 8
    assert {p["name"] for p in result["phases"]} >= {"pretrain", "base_eval", "mid_train", "sft", "chat_eval"}
