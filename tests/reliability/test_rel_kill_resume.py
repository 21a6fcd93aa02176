"""Faults: SIGKILL / SIGTERM of the whole `nanobench run` process group during pretraining, then
`nanobench run --resume RUN_DIR`. The resumed run must end exactly where an uninterrupted one does
(on CPU, bitwise: val bpb, the base checkpoint's sha256, the batch-fingerprint chain, the weights
and the determinism probe), leave no orphaned stage process behind, and produce a bundle that verifies.

Fault points are drawn from a seeded RNG over the pretraining steps (-1 = while the stage starts up,
before its first step), so a failure names a reproducible point.
"""

from __future__ import annotations

import json
import random
import signal
import shutil
from pathlib import Path

import pytest

from reliability_helpers import (
    TINY_STEPS,
    nanobench,
    pretrain_outcome,
    progress_events,
    run_args,
    signal_group,
    stage_processes,
    start_nanobench,
    wait_for_point,
    wait_no_stage_processes,
    write_tiny_config,
)

pytestmark = pytest.mark.slow

SEED = 20261125
_rng = random.Random(SEED)
# One run, three faults in a row, each followed by `--resume`: a SIGTERM mid-run (after at least one
# checkpoint), a SIGKILL at a random step of the resumed attempt, then a SIGKILL while the next resumed
# attempt's stage is still starting up (-1, before its first step).
# Points stay in the first half of the run so that a fast machine cannot finish before the fault lands.
FAULTS: list[tuple[signal.Signals, int]] = [
    (signal.SIGTERM, _rng.randint(5, TINY_STEPS // 2)),
    (signal.SIGKILL, _rng.randint(0, TINY_STEPS // 2)),
    (signal.SIGKILL, -1),
]


def _assert_same_as_reference(run_dir: Path, reference_dir: Path) -> None:
    got, want = pretrain_outcome(run_dir), pretrain_outcome(reference_dir)
    assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert want["determinism"] == "bitwise"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["valid"] is True


def _interrupted_attempt_seconds(run_dir: Path) -> float:
    """Sum over the interrupted attempts of (last progress event - stage start), from the progress log."""
    spans, start, last = [], None, None
    for event in progress_events(run_dir, "pretrain"):
        if event["key"] == "stage_start":
            if start is not None:
                spans.append((last - start) / 1000)
            start = event["time_ms"]
        last = event["time_ms"]
    return sum(spans)


def test_signals_during_pretrain_then_resume_match_the_uninterrupted_run(reference_run, tmp_path):
    root = tmp_path
    write_tiny_config(root)
    shutil.copytree(reference_run.root / "cache", root / "cache")  # same shipped shards
    run_dir = root / "runs" / "faulted"
    proc, log = start_nanobench(run_args(root, "faulted"), root, "attempt0.log")
    for i, (sig, point) in enumerate(FAULTS):
        where = f"fault {i}: {sig.name} at pretrain step {point}"
        wait_for_point(proc, run_dir, "pretrain", point)
        code = signal_group(proc, sig)
        text = log.read_text(errors="replace")
        if sig == signal.SIGTERM:  # a clean stop: the stage is terminated, the run says how to resume
            assert code == 130, f"{where}: exit {code}\n{text[-2000:]}"
            assert f"--resume {run_dir}" in text
        else:
            assert code == -signal.SIGKILL, f"{where}: exit {code}"
        # nothing may keep working on the run directory once the harness is gone
        orphans = wait_no_stage_processes(run_dir, timeout=15)
        assert not orphans, f"{where}: stage processes outlived the harness: {orphans}"
        state = json.loads((run_dir / "state.json").read_text())
        assert "pretrain" not in state["phases"], f"{where}: an interrupted phase was recorded as complete"
        assert state["running"]["name"] == "pretrain"
        proc, log = start_nanobench(["run", "--resume", str(run_dir)], root, f"attempt{i + 1}.log")
    assert proc.wait(timeout=300) == 0, log.read_text(errors="replace")[-3000:]
    assert not stage_processes(run_dir)
    _assert_same_as_reference(run_dir, reference_run.run_dir)
    result = json.loads((run_dir / "result.json").read_text())
    pretrain = next(p for p in result["phases"] if p["name"] == "pretrain")
    lost = _interrupted_attempt_seconds(run_dir)
    assert lost > 0 and pretrain["carried_seconds"] >= lost, "time spent by interrupted attempts was not counted"
    assert pretrain["seconds"] > pretrain["carried_seconds"]
    verify = nanobench(["verify", str(run_dir), "--no-preset-pins"], root)  # a custom tiny config: not the pinned smoke workload
    assert verify.returncode == 0, verify.stdout + verify.stderr
