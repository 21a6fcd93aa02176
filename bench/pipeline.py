"""Drive a whole benchmark run: phases in order, instruments around them, state for resume.

The run directory's `state.json` (written atomically after every phase) records which phases are
complete, with their measured seconds and energy, so `nanobench run --resume RUN_DIR` continues an
interrupted run: finished phases are kept, the interrupted one is re-launched with `--resume` (the
stage restarts from its last checkpoint) and the time its first attempt spent is added to it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.atomic import finite_json, write_json_atomic
from bench.config import Preset, workload_to_json
from bench.display import RunDisplay
from bench.events import PHASE_START, PHASE_STOP, RUN_START, RUN_STOP, MLLogger
from bench.phases import PHASES, PROBE, Launch, StageOutcome, StageProcess, launch_for, phase_spec, run_stage, stage_command
from bench.devices import visible_entries
from bench.power import PowerMonitor
from bench.state_seal import StateTampered, check_seals, new_nonce, seals_for, state_secret


class RunFailed(RuntimeError):
    """A phase failed; the run directory is left resumable."""


@dataclass
class RunPlan:
    preset: Preset
    run_dir: Path
    cache_dir: Path
    launch: Launch
    phases: list[str]  # names, in pipeline order
    hourly_rate: float
    idle_baseline_s: float = 2.0
    power_interval_s: float = 0.1
    resume: bool = False
    probe: bool = True
    key_dir: str | None = None  # the signing key: also keys the seals of state.json (bench.state_seal)
    # run-time options per stage, outside the workload hash: the checkpoint cadence of the training stages
    # (checkpoint_minutes, checkpoint_every_steps) and the preflight's adapted SFT device batch
    stage_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunState:
    """What survives an interruption: per-phase outcomes and the start of the running phase.

    With a ``secret`` (:func:`bench.state_seal.state_secret`) every record is sealed on save and
    checked on load (:class:`bench.state_seal.StateTampered` when one does not match); ``nonce`` is
    the run's nonce, made at run start and carried into result.json as ``run_nonce``.
    """

    path: Path
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    running: dict[str, Any] | None = None
    nonce: str | None = None
    secret: bytes | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: Path, secret: bytes | None = None) -> "RunState":
        if not path.exists():
            return cls(path, secret=secret)
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise StateTampered("state.json is not a JSON object")
        if secret is not None:
            check_seals(secret, data.get("nonce"), data.get("phases", {}), data.get("running"), data.get("seals"))
        return cls(path, data.get("phases", {}), data.get("running"), data.get("nonce"), secret)

    def save(self) -> None:
        # a stage may report NaN/inf (a diverged loss); state.json stays strict JSON with null there
        data: dict[str, Any] = {"phases": finite_json(self.phases), "running": finite_json(self.running)}
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.secret is not None and self.nonce is not None:
            data["seals"] = seals_for(self.secret, self.nonce, data["phases"], data["running"])
        write_json_atomic(self.path, data)




def prior_attempt_seconds(state: RunState, name: str, run_dir: Path) -> float:
    """Time the interrupted attempts of `name` spent: the latest one from its start to its last progress
    event, plus what the attempts before it had already carried (so a second interruption loses nothing)."""
    if not state.running or state.running.get("name") != name:
        return 0.0
    earlier = float(state.running.get("carried_seconds", 0.0))
    started = state.running["started_unix"]
    last = started
    progress = run_dir / "progress" / f"{name}.jsonl"
    if progress.exists():
        for line in progress.read_text(errors="replace").splitlines():
            try:
                last = max(last, json.loads(line).get("time_ms", 0) / 1000)
            except json.JSONDecodeError:
                continue
    return earlier + max(0.0, last - started)


def execute(plan: RunPlan, display: RunDisplay) -> dict[str, Any]:
    """Run the planned phases; returns the raw measurements the result is assembled from."""
    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        config_path.write_text(workload_to_json(plan.preset.workload))
    state = RunState.load(run_dir / "state.json", secret=state_secret(plan.key_dir))  # StateTampered: refuse to go on
    if state.nonce is None:
        state.nonce = new_nonce()  # this run's identity: result.json run_nonce; copies of the run share it
        state.save()
    mllog = MLLogger(run_dir / "events.jsonl", namespace="nanobench")
    power = PowerMonitor(
        interval_s=plan.power_interval_s,
        csv_path=run_dir / ("power.csv" if not plan.resume else f"power.resume{int(time.time())}.csv"),
        # only the GPUs the stages use: the first nproc visible ones (an idle GPU beside them is not charged)
        device=plan.launch.device, visible=visible_entries(plan.launch.device), used=plan.launch.nproc,
    )
    power.start(idle_baseline_s=plan.idle_baseline_s)
    display.watts = None
    mllog.start(RUN_START, plan.preset.name, resumed=plan.resume)
    background: StageProcess | None = None
    try:
        for name in plan.phases:
            if name in state.phases and state.phases[name].get("ok"):
                display.message(f"phase {name}: already complete, kept ({state.phases[name]['seconds']:.1f}s)")
                continue
            spec = phase_spec(name)
            carried = prior_attempt_seconds(state, name, run_dir) if plan.resume else 0.0
            state.running = {"name": name, "started_unix": time.time(), "carried_seconds": carried}
            state.save()
            display.phase_started(name, spec.counted)
            mllog.start(PHASE_START, name, counted=spec.counted)
            options: dict[str, Any] = {}
            if name == "download" and plan.preset.workload.data.source != "shipped":
                options["first_only"] = 1
            if name == "pretrain" and plan.probe:
                options["probe_steps"] = plan.preset.checks.probe_steps
            options.update(plan.stage_options.get(name, {}))
            with power.phase(name) as ph:
                outcome = run_stage(
                    name, run_dir=run_dir, config_path=config_path, cache_dir=plan.cache_dir, launch=launch_for(name, plan.launch),
                    resume=plan.resume or carried > 0, options=options, on_event=display.on_event,
                )
                if name == "download" and outcome.ok and "first_only" in options:
                    # the remaining shards (and eval/task data) download while the tokenizer trains
                    background = _start_background_download(plan, config_path)
                if name == "tokenizer" and background is not None:
                    waited = _wait_background(background)
                    state.phases["download"]["seconds"] += waited
                    state.phases["download"]["background_wait_seconds"] = waited
                    background = None
            record = {
                "ok": outcome.ok, "seconds": outcome.seconds + carried, "carried_seconds": carried,
                "result": outcome.result, "power": ph.result, "log": outcome.log_path,
            }
            mllog.end(PHASE_STOP, name, seconds=record["seconds"], ok=outcome.ok)
            display.phase_finished(name, record["seconds"], outcome.ok, plan.hourly_rate * record["seconds"] / 3600 if spec.counted else None)
            if not outcome.ok:
                state.save()
                raise RunFailed(outcome.error or f"phase {name} failed")
            state.phases[name] = record
            state.running = None
            state.save()
        if plan.probe and "pretrain" in state.phases and PROBE.name not in state.phases:
            state.phases[PROBE.name] = _run_probe(plan, config_path, display, mllog, power)
            state.save()
    finally:
        if background is not None:
            background.terminate()
        summary = power.stop()
        mllog.end(RUN_STOP, plan.preset.name)
        mllog.close()
    return {"state": state, "power_summary": summary, "mllog_path": str(run_dir / "events.jsonl")}


def _start_background_download(plan: RunPlan, config_path: Path) -> StageProcess:
    cmd = stage_command(
        "download", run_dir=plan.run_dir, config_path=config_path, cache_dir=plan.cache_dir,
        launch=Launch(device="cpu"), resume=False, options={"rest_only": 1},
    )
    return StageProcess("download", cmd, run_dir=plan.run_dir, log_path=plan.run_dir / "logs" / "download_background.log")


def _wait_background(proc: StageProcess) -> float:
    t0 = time.monotonic()
    code = proc.wait()
    if code != 0:
        raise RunFailed(f"background download failed (exit {code}); see {proc.log_path}")
    return time.monotonic() - t0


def _run_probe(plan: RunPlan, config_path: Path, display: RunDisplay, mllog: MLLogger, power: PowerMonitor) -> dict[str, Any]:
    """Re-run the first N pretraining steps in a fresh process with its own run dir (same tokenizer, data)."""
    probe_dir = plan.run_dir / "probe"
    if probe_dir.exists():
        shutil.rmtree(probe_dir)
    (probe_dir / "artifacts").mkdir(parents=True)
    shutil.copytree(plan.run_dir / "artifacts" / "tokenizer", probe_dir / "artifacts" / "tokenizer")
    display.phase_started(PROBE.name, PROBE.counted)
    mllog.start(PHASE_START, PROBE.name, counted=False)
    with power.phase(PROBE.name) as ph:
        outcome: StageOutcome = run_stage(
            "pretrain", run_dir=probe_dir, config_path=config_path, cache_dir=plan.cache_dir, launch=launch_for(PROBE.name, plan.launch),
            options={"probe_steps": plan.preset.checks.probe_steps, "stop_after_probe": 1}, log_name="determinism_probe",
        )
    mllog.end(PHASE_STOP, PROBE.name, seconds=outcome.seconds, ok=outcome.ok)
    display.phase_finished(PROBE.name, outcome.seconds, outcome.ok, None)
    shutil.rmtree(probe_dir / "artifacts", ignore_errors=True)
    return {"ok": outcome.ok, "seconds": outcome.seconds, "carried_seconds": 0.0, "result": outcome.result,
            "power": ph.result, "log": outcome.log_path}


def selected_phases(preset: Preset, only: list[str] | None, skip: list[str] | None) -> list[str]:
    """Pipeline order, minus disabled stages (rl off, mid off) and --skip, restricted to --phases."""
    w = preset.workload
    names = []
    for p in PHASES:
        if p.name == "rl" and not w.rl.enabled:
            continue
        if p.name == "mid_train" and not w.mid_train.enabled:
            continue
        if p.name == "sft" and not w.sft.enabled:
            continue
        names.append(p.name)
    valid = [p.name for p in PHASES]
    for n in (only or []) + (skip or []):
        if n not in valid:
            raise ValueError(f"unknown phase '{n}'; phases are: {', '.join(valid)}")
    if only:
        names = [n for n in names if n in only]
    if skip:
        names = [n for n in names if n not in skip]
    return names
