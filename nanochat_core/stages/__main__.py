"""Run one stage in this process (the harness starts it, under torchrun when there are several devices).

    python -m nanochat_core.stages pretrain --config run/config.json --run-dir run [--resume]

Rank 0 appends observer events to `<run-dir>/progress/<stage>.jsonl` and writes the stage's result
to `<run-dir>/phases/<stage>/result.json` (atomically). Exit code 0 on success.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from nanochat_core.checkpoint_cadence import CheckpointCadence
from nanochat_core.common import init_runtime, shutdown_runtime
from nanochat_core.config import WorkloadConfig, from_dict
from nanochat_core.device import DeviceUnavailable
from nanochat_core.download import atomic_write_bytes
from nanochat_core.observer import LOG, STAGE_END, STAGE_START, JsonlObserver, NullObserver
from nanochat_core.stages import STAGE_ORDER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanochat_core.stages")
    parser.add_argument("stage", choices=STAGE_ORDER)
    parser.add_argument("--config", required=True, help="resolved WorkloadConfig as JSON")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--option", action="append", default=[], help="stage option key=value (e.g. rest_only=1)")
    parser.add_argument("--exit-with-pid", type=int, default=None,
                        help="exit as soon as this process (the harness that launched the stage) is gone")
    args = parser.parse_args(argv)
    if args.exit_with_pid:
        exit_when_gone(args.exit_with_pid)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    cfg: WorkloadConfig = from_dict(WorkloadConfig, json.loads(Path(args.config).read_text()))
    run_dir = Path(args.run_dir)
    rank = int(os.environ.get("RANK", "0"))
    observer = JsonlObserver(run_dir / "progress" / f"{args.stage}.jsonl") if rank == 0 else NullObserver()
    try:
        rt = init_runtime(
            device=args.device, seed=cfg.seed, observer=observer, artifacts_dir=run_dir / "artifacts",
            cache_dir=args.cache_dir, compile=False if args.no_compile else None, resume=args.resume,
        )
    except DeviceUnavailable as exc:  # one line, no traceback: e.g. --device cuda on a CPU-only torch
        observer.event(STAGE_END, args.stage, ok=False, error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = dict(_parse_option(o) for o in args.option)
    # run-time checkpoint cadence of the training stages (--option checkpoint_minutes=M / checkpoint_every_steps=N)
    rt.checkpoint = CheckpointCadence(every_seconds=60 * float(options.pop("checkpoint_minutes", 0) or 0),
                                      every_steps=int(options.pop("checkpoint_every_steps", 0) or 0))
    module = importlib.import_module(f"nanochat_core.stages.{args.stage}")
    observer.event(STAGE_START, args.stage, device=str(rt.device), world_size=rt.world_size, device_info=rt.device_info)
    if rt.device_info and rt.device_info.get("precision") == "fp32":  # e.g. T4/V100: no bf16, the fp32 fallback
        observer.event(LOG, f"{args.stage}: {rt.device_info['precision_reason']}")
        logging.getLogger("nanochat_core").warning("%s", rt.device_info["precision_reason"])
    try:
        result = module.run(cfg, rt, **options)
    except BaseException as exc:  # noqa: BLE001 - Ctrl-C included: every failure takes the fail-fast exit
        observer.event(STAGE_END, args.stage, ok=False, error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        report_failure(run_dir, args.stage, exc, rank=rank)
        shutdown_runtime(rt, failed=True)  # no barrier: the other ranks may be inside a collective
        if rt.is_distributed:
            # exit now, skipping interpreter teardown (a NCCL communicator's destructor can block);
            # torchrun sees this rank's exit code and stops the other ranks at once
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1
    shutdown_runtime(rt)
    observer.event(STAGE_END, args.stage, ok=True)
    if rank == 0:
        if isinstance(result, dict):  # what this stage ran on: kind, name, precision (and why), compile
            result.setdefault("device_info", rt.device_info or {"kind": "cpu", "precision": "fp32", "compile": rt.compile})
        write_stage_result(run_dir, args.stage, result)
    return 0


def write_stage_result(run_dir: Path, stage: str, result: dict) -> Path:
    """`<run_dir>/phases/<stage>/result.json`, atomically (a failed write leaves the old file, no temp)."""
    out = run_dir / "phases" / stage / "result.json"
    atomic_write_bytes(out, json.dumps(result, indent=2, default=str).encode("utf-8"))
    return out


def error_record_path(run_dir: Path, stage: str, rank: int) -> Path:
    """Where rank `rank` of `stage` leaves its failure (the harness reads every rank's after a failed phase)."""
    return run_dir / "errors" / stage / f"rank{rank}.json"


def report_failure(run_dir: Path, stage: str, exc: BaseException, *, rank: int) -> None:
    """Record a failing rank's exception and traceback for the harness: `errors/<stage>/rank<r>.json` in
    the run dir (atomically), and torchrun's own error file (TORCHELASTIC_ERROR_FILE) when torchrun
    launched this rank, so torchrun's failure summary names the rank and shows the traceback too."""
    record = {
        "stage": stage, "rank": rank, "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "node_rank": int(os.environ.get("GROUP_RANK", "0")), "pid": os.getpid(), "time_unix": time.time(),
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
    try:
        atomic_write_bytes(error_record_path(run_dir, stage, rank), json.dumps(record, indent=2).encode("utf-8"))
    except OSError as err:
        sys.stderr.write(f"stage: could not write the error record: {err}\n")
    if os.environ.get("TORCHELASTIC_ERROR_FILE") and isinstance(exc, Exception):
        try:
            from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

            ErrorHandler().record_exception(exc)
        except Exception as err:  # noqa: BLE001 - the record above is the one the harness reads
            sys.stderr.write(f"stage: could not write torchrun's error file: {err}\n")


def _pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the kill probe above is all we have


def exit_when_gone(pid: int, interval_s: float = 0.5) -> threading.Thread:
    """Watch `pid` from a daemon thread and end this process (exit 137) when it disappears, so a stage
    never outlives a harness that was SIGKILLed. Checkpoints are atomic, so stopping anywhere is safe."""

    def watch() -> None:
        while _pid_alive(pid):
            time.sleep(interval_s)
        sys.stderr.write(f"stage: the harness (pid {pid}) is gone; exiting\n")
        sys.stderr.flush()
        os._exit(137)

    thread = threading.Thread(target=watch, name="harness-watch", daemon=True)
    thread.start()
    return thread


def _parse_option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    if value.lower() in ("1", "true", "yes"):
        return key, True
    if value.lower() in ("0", "false", "no"):
        return key, False
    return key, value


if __name__ == "__main__":
    sys.exit(main())
