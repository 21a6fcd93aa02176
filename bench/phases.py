"""The ordered phases of a benchmark run, and how one phase is launched and timed.

Each workload phase runs in a child process of its own (`python -m nanochat_core.stages <stage>`, or
torchrun with one process per GPU). Its wall time is measured here on the monotonic clock from launch
to exit; the process exit is also the CUDA synchronization point at the phase's edges. While it runs,
the stage's observer events (`<run>/progress/<phase>.jsonl`) are tailed and handed to a callback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    counted: bool  # does its time count towards the triple's minutes and USD?
    description: str


PHASES: tuple[PhaseSpec, ...] = (
    PhaseSpec("download", False, "pretraining data (and eval data), network-bound: recorded, not counted"),
    PhaseSpec("tokenizer", True, "BPE training + compression eval"),
    PhaseSpec("pretrain", True, "base model training"),
    PhaseSpec("base_eval", True, "CORE on the base model"),
    PhaseSpec("mid_train", True, "midtraining on the conversation mixture"),
    PhaseSpec("sft", True, "supervised fine-tuning"),
    PhaseSpec("rl", True, "GSM8K reinforcement learning (when the preset enables it)"),
    PhaseSpec("chat_eval", True, "ChatCORE on the chat model"),
)
PROBE = PhaseSpec("determinism_probe", False, "re-run of the first pretraining steps in a fresh process: recorded, not counted")
PHASE_NAMES = tuple(p.name for p in PHASES)


def phase_spec(name: str) -> PhaseSpec:
    for p in (*PHASES, PROBE):
        if p.name == name:
            return p
    raise KeyError(name)


@dataclass(frozen=True)
class Launch:
    """How workload processes are started: one process, or torchrun across GPUs (and nodes)."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of the rendezvous (multi-node): node 0's address
    rdzv_id: str | None = None  # set per phase by launch_for (a fresh rendezvous for every phase)
    device: str = "auto"
    compile: bool | None = None  # None: the workload's default (CUDA only)
    job_id: str | None = None  # multi-node: the same on every node (names the run, prefixes rendezvous ids)
    rdzv_timeout_s: int = 1800  # how long a node waits for the others at a phase's rendezvous

    def prefix(self) -> list[str]:
        if self.nproc == 1 and self.nnodes == 1:
            return [sys.executable, "-m"]
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={self.nproc}", f"--nnodes={self.nnodes}"]
        if self.nnodes > 1:
            if not self.rdzv_endpoint:
                raise ValueError("multi-node runs need --rdzv-endpoint HOST:PORT")
            if not self.rdzv_id:
                raise ValueError("multi-node runs need a rendezvous id per phase (see launch_for)")
            # static rendezvous: --node_rank decides the global ranks (node 0 holds rank 0, and serves the
            # store at the endpoint); c10d's dynamic rendezvous would ignore it and rank nodes by arrival
            cmd += ["--rdzv_backend=static", f"--rdzv_endpoint={self.rdzv_endpoint}", f"--rdzv_id={self.rdzv_id}",
                    f"--node_rank={self.node_rank}", f"--rdzv_conf=timeout={self.rdzv_timeout_s}", "--max_restarts=0"]
        else:
            cmd += ["--standalone"]
        return cmd + ["-m"]


SINGLE_PROCESS_PHASES = ("download", "tokenizer")


def launch_for(phase: str, launch: Launch) -> Launch:
    """The launch of one phase. Download and tokenizer training run as ONE process per node, whatever
    the GPU count: they are CPU work that every rank would otherwise repeat (eight copies of the same
    BPE training competing for the same cores). On several nodes each node runs its own copy, so each
    node has the data and the tokenizer on its own disk (nodes share no filesystem)."""
    if phase in SINGLE_PROCESS_PHASES:
        return Launch(device=launch.device, compile=launch.compile)
    if launch.nnodes > 1:
        if not launch.job_id:
            raise ValueError("multi-node runs need a job id (--job-id, the same on every node)")
        return replace(launch, rdzv_id=f"{launch.job_id}.{phase}")
    return launch


@dataclass
class StageOutcome:
    name: str
    ok: bool
    seconds: float
    returncode: int
    result: dict[str, Any] = field(default_factory=dict)
    log_path: str = ""
    error: str | None = None


def stage_command(
    stage: str, *, run_dir: Path, config_path: Path, cache_dir: Path, launch: Launch, resume: bool, options: dict[str, Any]
) -> list[str]:
    cmd = launch.prefix() + [
        "nanochat_core.stages", stage, "--config", str(config_path), "--run-dir", str(run_dir),
        "--cache-dir", str(cache_dir), "--device", launch.device,
    ]
    if resume:
        cmd.append("--resume")
    if launch.compile is False:
        cmd.append("--no-compile")
    cmd += ["--exit-with-pid", str(os.getpid())]  # the stage (every rank) ends if this harness is killed
    for key, value in options.items():
        cmd += ["--option", f"{key}={value}"]
    return cmd


class ProgressTail:
    """Follows a JSONL progress file in a thread, calling `callback(event_dict)` per line."""

    def __init__(self, path: Path, callback: Callable[[dict[str, Any]], None], interval: float = 0.2) -> None:
        self.path, self.callback, self.interval = path, callback, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"tail-{path.name}", daemon=True)
        self._offset = path.stat().st_size if path.exists() else 0  # only events of this attempt
        self.last_time_ms: int | None = None

    def start(self) -> "ProgressTail":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._drain()

    def _drain(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            fh.seek(self._offset)
            while True:
                line = fh.readline()
                if not line or not line.endswith("\n"):
                    break
                self._offset += len(line.encode("utf-8"))
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.last_time_ms = event.get("time_ms", self.last_time_ms)
                self.callback(event)


class StageProcess:
    """One workload stage in a child process (its own process group, so it can be stopped whole)."""

    def __init__(self, stage: str, cmd: list[str], *, run_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.stage, self.cmd, self.run_dir, self.log_path = stage, cmd, run_dir, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self._log.write(f"\n$ {' '.join(cmd)}\n".encode())
        self._log.flush()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )

    def wait(self) -> int:
        try:
            return self.proc.wait()
        finally:
            self.seconds = time.monotonic() - self.t0
            self._log.close()

    def terminate(self, grace: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def outcome(self, name: str, returncode: int) -> StageOutcome:
        result_path = self.run_dir / "phases" / self.stage / "result.json"
        result = json.loads(result_path.read_text()) if (returncode == 0 and result_path.exists()) else {}
        error = None
        if returncode != 0:
            error = (f"stage '{self.stage}' exited with code {returncode}\n" + failing_ranks_report(self.run_dir, self.stage)
                     + f"last lines of {self.log_path}:\n" + _tail(self.log_path))
        return StageOutcome(name, returncode == 0, self.seconds, returncode, result, str(self.log_path), error)


def run_stage(
    stage: str,
    *,
    run_dir: Path,
    config_path: Path,
    cache_dir: Path,
    launch: Launch,
    resume: bool = False,
    options: dict[str, Any] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    log_name: str | None = None,
    env: dict[str, str] | None = None,
) -> StageOutcome:
    """Run one stage to completion; its wall seconds cover process start to exit."""
    cmd = stage_command(stage, run_dir=run_dir, config_path=config_path, cache_dir=cache_dir, launch=launch, resume=resume, options=options or {})
    clear_error_records(run_dir, stage)
    tail = ProgressTail(run_dir / "progress" / f"{stage}.jsonl", on_event or (lambda e: None)).start()
    proc = StageProcess(stage, cmd, run_dir=run_dir, log_path=run_dir / "logs" / f"{log_name or stage}.log", env=env)
    try:
        code = proc.wait()
    except BaseException:
        proc.terminate()
        tail.stop()
        raise
    tail.stop()
    return proc.outcome(log_name or stage, code)


def _error_dir(run_dir: Path, stage: str) -> Path:
    return run_dir / "errors" / stage  # written by nanochat_core.stages.__main__.report_failure


def clear_error_records(run_dir: Path, stage: str) -> None:
    """Drop a previous attempt's per-rank error records, so a report names only this attempt's failures."""
    d = _error_dir(run_dir, stage)
    for p in d.glob("rank*.json") if d.is_dir() else ():
        p.unlink(missing_ok=True)


def failing_ranks_report(run_dir: Path, stage: str) -> str:
    """The failing ranks of a stage that recorded their exception, earliest first, the first with its
    traceback ('' when none recorded).

    Only the ranks on this node leave records here; a rank on another node is reported by that node's
    harness (and by torchrun's failure summary in the log)."""
    d = _error_dir(run_dir, stage)
    records = []
    for p in sorted(d.glob("rank*.json")) if d.is_dir() else ():
        try:
            records.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    records = [r for r in records if isinstance(r, dict) and isinstance(r.get("rank"), int)]
    if not records:
        return ""
    records.sort(key=lambda r: (r.get("time_unix") or 0.0, r["rank"]))
    first = records[0]
    out = [f"first recorded failure: rank {first['rank']} (node {first.get('node_rank', 0)}, local rank "
           f"{first.get('local_rank', 0)}): {first.get('error')}", str(first.get("traceback", "")).rstrip()]
    for r in records[1:]:
        out.append(f"rank {r['rank']} failed after it: {r.get('error')}")
    out.append("(a rank killed by a signal leaves no record: torchrun's summary in the log names it)")
    return "\n".join(out) + "\n"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
