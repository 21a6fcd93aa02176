"""Faults: one rank of a 2-process torchrun pretraining (gloo on CPU) dies. The run must fail with a
clear message (which stage, exit code, the log's last lines, how to resume), leave no process behind,
and `nanobench run --resume` must finish it: same data (batch-fingerprint chain) as the 1-process
reference run, and the same val bpb up to reduction order."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time

import psutil
import pytest

from reliability_helpers import (
    nanobench,
    pretrain_outcome,
    run_args,
    stage_processes,
    start_nanobench,
    wait_for_point,
    wait_no_stage_processes,
    write_tiny_config,
)

pytestmark = pytest.mark.slow


def _rank_pid(run_dir, rank: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in stage_processes(run_dir):
            try:
                if psutil.Process(pid).environ().get("RANK") == str(rank):
                    return pid
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no rank {rank} process for {run_dir}")


def test_a_dead_rank_fails_the_run_clearly_and_it_resumes(reference_run, tmp_path):
    root = tmp_path
    write_tiny_config(root)
    shutil.copytree(reference_run.root / "cache", root / "cache")
    run_dir = root / "runs" / "ranks"
    proc, log = start_nanobench(run_args(root, "ranks", probe=False) + ["--nproc", "2"], root, "ranks.log")
    wait_for_point(proc, run_dir, "pretrain", 4)
    victim = _rank_pid(run_dir, 1)
    psutil.Process(victim).send_signal(signal.SIGKILL)
    code = proc.wait(timeout=180)
    text = log.read_text(errors="replace")
    assert code == 1, text[-3000:]
    assert "[FAILED] stage 'pretrain' exited with code" in text
    flat = re.sub(r"\s+", "", text)  # the live display wraps long lines
    assert "therunisresumable:nanobenchrun--resume" + str(run_dir) in flat
    assert not wait_no_stage_processes(run_dir, timeout=30), "a surviving rank kept running"
    state = json.loads((run_dir / "state.json").read_text())
    assert "pretrain" not in state["phases"] and state["phases"]["tokenizer"]["ok"]

    done = nanobench(["run", "--resume", str(run_dir)], root, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    got, want = pretrain_outcome(run_dir), pretrain_outcome(reference_run.run_dir)
    assert got["fingerprint_chain"] == want["fingerprint_chain"]  # same batches, whichever rank read them
    assert got["val_bpb"] == pytest.approx(want["val_bpb"], rel=1e-4)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["metrics"]["world_size"] == 2
    verify = nanobench(["verify", str(run_dir), "--no-preset-pins"], root)  # a custom tiny config: not the pinned smoke workload
    assert verify.returncode == 0, verify.stdout + verify.stderr
