"""Fail fast: a rank that raises tears down without a barrier, and the harness names it with its traceback.

Two gloo processes under torchrun run the real stage entry point (`nanochat_core.stages.__main__.main`)
with a stand-in stage module: rank 1 raises while rank 0 waits in an all-reduce for it. Before the
fix, rank 1 went into `dist.barrier()` in a `finally` and the job hung until a collective timeout.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from bench.config import load_config, workload_to_json
from bench.phases import Launch, StageProcess, clear_error_records, failing_ranks_report

STAND_IN = textwrap.dedent('''
    import sys, types
    import torch
    import torch.distributed as dist
    import nanochat_core.stages.__main__ as stages_main

    def run(cfg, rt, **options):
        if rt.rank == 1:
            raise ValueError("boom on rank 1: the planted failure")
        t = torch.ones(1)
        dist.all_reduce(t)  # rank 0 blocks here: rank 1 never joins this collective
        return {"unreachable": True}

    fake = types.ModuleType("nanochat_core.stages.pretrain")
    fake.run = run
    sys.modules["nanochat_core.stages.pretrain"] = fake
    sys.exit(stages_main.main(sys.argv[1:]))
''')


def test_a_raising_rank_ends_the_job_within_seconds_and_is_named(tmp_path: Path):
    script = tmp_path / "stand_in_stage.py"
    script.write_text(STAND_IN)
    config = tmp_path / "config.json"
    config.write_text(workload_to_json(load_config().preset("smoke").workload))
    run_dir = tmp_path / "run"
    # a stale record of an earlier attempt must not be reported as this attempt's failure
    (run_dir / "errors" / "pretrain").mkdir(parents=True)
    (run_dir / "errors" / "pretrain" / "rank7.json").write_text('{"rank": 7, "error": "stale", "time_unix": 0}')
    clear_error_records(run_dir, "pretrain")
    cmd = Launch(nproc=2, device="cpu").prefix()[:-1] + [
        str(script), "pretrain", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir", str(tmp_path / "cache"),
        "--device", "cpu",
    ]
    proc = StageProcess("pretrain", cmd, run_dir=run_dir, log_path=run_dir / "logs" / "pretrain.log",
                        env={"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"})
    t0 = time.monotonic()
    try:
        proc.proc.wait(timeout=120)  # a hang (the bug) would last the gloo timeout: 30 minutes
    finally:
        proc.terminate(grace=2)
    code = proc.wait()
    elapsed = time.monotonic() - t0
    assert code != 0
    outcome = proc.outcome("pretrain", code)
    assert not outcome.ok
    assert outcome.error.startswith("stage 'pretrain' exited with code")
    assert "first recorded failure: rank 1 (node 0, local rank 1): ValueError: boom on rank 1" in outcome.error
    assert "Traceback (most recent call last)" in outcome.error and "the planted failure" in outcome.error
    assert "rank 7" not in outcome.error
    assert "first recorded failure: rank 1" in failing_ranks_report(run_dir, "pretrain")
    # seconds, not a collective timeout: process start under torchrun dominates on a loaded 2-core box
    assert elapsed < 90, f"the failing job took {elapsed:.0f}s to end"


def test_no_error_records_means_an_empty_report(tmp_path: Path):
    assert failing_ranks_report(tmp_path, "pretrain") == ""
    (tmp_path / "errors" / "pretrain").mkdir(parents=True)
    (tmp_path / "errors" / "pretrain" / "rank0.json").write_text("{not json")
    assert failing_ranks_report(tmp_path, "pretrain") == ""
