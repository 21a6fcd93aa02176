"""`nanobench run`: the benchmark. Runs the preset's pipeline, measures, prices, signs.

    nanobench run --preset smoke --hourly-rate 24
    nanobench run --hourly-rate 24 --price-source "https://lambda.ai/pricing (8x H100 SXM)"   # speedrun
    nanobench run --resume runs/<run_id>                                                        # continue
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from filelock import FileLock, Timeout

from bench.atomic import write_json_atomic
from bench.config import TRAINING_STAGES, ConfigError, load_config, workload_to_json
from bench.commands.pricing_args import default_nproc, pricing_from_args
from bench.launch_record import validate_launch_record
from bench.commands.numbers import MAX_ENERGY_PRICE_USD, MAX_HOURLY_RATE_USD, MAX_NODES, MAX_PROCS, bounded_float, bounded_int
from bench.cost import Pricing, PricingError
from bench.devices import DEVICE_CHOICES, DeviceUnavailable, prepare_stage_environment
from bench.devices import resolve as resolve_device
from bench.display import RunDisplay
from bench.multinode import (
    MultiNodeError, gather_node_records, merge_energy, node_record, nodes_section, parse_endpoint, start_handshake,
    system_with_nodes,
)
from bench.phases import PHASE_NAMES, Launch
from bench.pipeline import RunFailed, RunPlan, execute, selected_phases
from bench.state_seal import StateTampered
from bench.preflight import run_preflight
from bench.repeat import run_repeated
from bench.run_conditions import LoadSampler, classify, load_before, step_time_stats
from bench.result import assemble, finalize, new_run_id
from bench.submission import safe_name
from bench.system import describe_system


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run the benchmark pipeline and write a signed result bundle",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="speedrun", help="preset from bench.toml (default: speedrun)")
    p.add_argument("--config", default=None, help="path to bench.toml (default: the one shipped with nanobench)")
    p.add_argument("--hourly-rate", type=bounded_float("--hourly-rate", 0, MAX_HOURLY_RATE_USD), default=None, metavar="USD",
                   help="REQUIRED for a new run: USD per hour for the whole machine (0 to measure time only)")
    p.add_argument("--price-source", default=None, help="where the hourly rate comes from (URL or text)")
    p.add_argument("--price-kind", choices=("on-demand", "spot", "owned"), default=None,
                   help="how the hourly rate is paid: on-demand (list price), spot (interruptible) or owned (amortised hardware + power); default: bench.toml [harness] price_kind")
    p.add_argument("--captured-on", default=None, help="date the price was read (YYYY-MM-DD, default today)")
    p.add_argument("--energy-price", type=bounded_float("--energy-price", 0, MAX_ENERGY_PRICE_USD), default=None, help="USD per kWh: adds measured energy cost")
    p.add_argument("--runs-dir", default=None, help="where run directories go (default from bench.toml)")
    p.add_argument("--run-id", default=None, help="name of the run directory (default: time-preset-random)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted run")
    p.add_argument("--phases", default=None, help=f"comma-separated subset of: {','.join(PHASE_NAMES)}")
    p.add_argument("--skip", default=None, help="comma-separated phases to skip (their checkpoints must exist)")
    p.add_argument("--nproc", type=bounded_int("--nproc", 1, MAX_PROCS), default=None, help="processes per node (default: visible GPUs, or 1)")
    p.add_argument("--nnodes", type=bounded_int("--nnodes", 1, MAX_NODES), default=1, help="machines taking part in a multi-node run (default 1); >1 needs --job-id and --rdzv-endpoint")
    p.add_argument("--node-rank", type=bounded_int("--node-rank", 0, MAX_NODES - 1), default=0, help="this machine's index in a multi-node run, 0..NNODES-1 (0 = the node that writes the bundle)")
    p.add_argument("--rdzv-endpoint", default=None,
                   help="multi-node: HOST:PORT on node 0 (node 0 serves the rendezvous there; every node passes the same)")
    p.add_argument("--job-id", default=None,
                   help="multi-node: one id for the whole job, the same on every node (names each node's run directory)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                   help="auto (what is present; the run says what it picked) | cuda | rocm | mps | xpu | cpu")
    p.add_argument("--no-compile", action="store_true", help="do not torch.compile (CUDA); recorded in the result")
    p.add_argument("--no-probe", action="store_true", help="skip the determinism probe (determinism: not_checked)")
    p.add_argument("--cache-dir", default=None, help="download cache (default from bench.toml)")
    p.add_argument("--key-dir", default=None, help="signing key directory (default: ~/.config/nanobench)")
    p.add_argument("--yes", action="store_true",
                   help="run even when the preflight advises against it (forecast over an hour without a GPU, "
                        "network unreachable, disk short); a wrong device or batch that cannot divide still stops")
    p.add_argument("--allow-busy", action="store_true",
                   help="a run measured on a busy machine (see result.json run_conditions) may still be ranked")
    p.add_argument("--allow-unsandboxed-code", action="store_true",
                   help="let chat_eval run model-written code (HumanEval) without an OS sandbox where none works "
                        "on this machine (default: refuse); the result records the mechanism that ran")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the preset N times and report mean, standard deviation and min of each figure")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One run, or `--repeat N` runs of the same preset followed by a summary table."""
    if args.repeat < 1:
        print(f"error: --repeat must be >= 1, got {args.repeat}", file=sys.stderr)
        return 2
    if getattr(args, "allow_unsandboxed_code", False):
        import os

        os.environ["NANOBENCH_ALLOW_UNSANDBOXED_CODE"] = "1"  # inherited by the stage processes
    if args.repeat == 1:
        return _run_once(args)
    if args.resume:
        print("error: --repeat cannot be combined with --resume (resume each run on its own)", file=sys.stderr)
        return 2
    return run_repeated(args, _run_once)


def _run_once(args: argparse.Namespace) -> int:
    try:
        resume_dir = Path(args.resume) if args.resume else None
        saved = _load_launch(resume_dir) if resume_dir is not None else {}
        # a resumed run keeps the config, cache and key it started with unless told otherwise
        cfg = load_config(args.config or saved.get("config"))
        if resume_dir is not None:
            preset = cfg.preset(saved["preset"])
            _check_same_workload(preset, resume_dir, cfg.path)
            pricing = Pricing.from_dict(saved["pricing"])
            run_dir, run_id = resume_dir, resume_dir.name
            phases = saved["phases"]
            launch = Launch(**saved["launch"])
            probe = saved["probe"]
            device = resolve_device(launch.device)  # the device the run started on must still be here
        else:
            preset = cfg.preset(args.preset)
            if args.hourly_rate is None:
                print("error: --hourly-rate USD is required (the whole machine's price per hour; 0 if you only want time)", file=sys.stderr)
                return 2
            pricing = pricing_from_args(args, cfg.harness)
            phases = selected_phases(preset, _split(args.phases), _split(args.skip))
            _check_launch_args(args)
            device = resolve_device(args.device)  # auto -> what is present; absent -> one-line error
            launch = Launch(
                nproc=default_nproc(args.nproc, device.kind), nnodes=args.nnodes, node_rank=args.node_rank,
                rdzv_endpoint=args.rdzv_endpoint, device=device.kind, compile=False if args.no_compile else None,
                job_id=args.job_id if args.nnodes > 1 else None,
            )
            run_id = args.run_id or (args.job_id if args.nnodes > 1 else None) or new_run_id(preset.name)
            run_dir = Path(args.runs_dir or cfg.harness.runs_dir) / run_id
            if run_dir.exists():
                print(f"error: {run_dir} already exists; use --resume {run_dir} or another --run-id", file=sys.stderr)
                return 2
            probe = not args.no_probe
    except (ConfigError, PricingError, ValueError, OSError, KeyError, DeviceUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    prepare_stage_environment(device.kind)
    cache_dir = Path(args.cache_dir or saved.get("cache_dir") or cfg.cache_dir).expanduser()
    key_dir = args.key_dir or saved.get("key_dir")
    stage_options = checkpoint_options(preset, cfg.harness)
    preflight_record = saved.get("preflight")
    if resume_dir is None and not getattr(args, "skip_preflight", False):
        try:
            pf = run_preflight(preset, phases=phases, nproc=launch.nproc, nnodes=launch.nnodes, device_kind=device.kind,
                               cache_dir=cache_dir, hourly_rate=pricing.hourly_rate_usd,
                               submissions_dir=Path(__file__).resolve().parents[2] / "submissions")
        except Exception as exc:  # noqa: BLE001 - advisory checks must not crash the run; say what failed
            print(f"preflight: could not complete ({type(exc).__name__}: {exc}); continuing without it", file=sys.stderr)
            pf = None
        if pf is not None:
            blocked = pf.blocked(args.yes)
            print(pf.message(args.yes), file=sys.stderr if blocked else sys.stdout, flush=True)
            if blocked:
                return 2
            preflight_record = pf.record
    if preflight_record and (preflight_record.get("divisibility") or {}).get("sft_device_batch"):
        stage_options.setdefault("sft", {})["device_batch_size"] = preflight_record["divisibility"]["sft_device_batch"]
    allow_busy = bool(getattr(args, "allow_busy", False) or saved.get("allow_busy"))
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_lock_path(run_dir)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"error: another nanobench process is running {run_dir}", file=sys.stderr)
        return 2
    previous_sigterm = None
    try:
        if resume_dir is None and run_dir.exists():  # a concurrent `run --run-id` got here first
            print(f"error: {run_dir} already exists; use --resume {run_dir} or another --run-id", file=sys.stderr)
            return 2
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "launch.json", {
            "preset": preset.name, "pricing": pricing.to_dict(), "phases": phases, "probe": probe,
            "launch": launch.__dict__, "argv": saved.get("argv", sys.argv[1:]), "config": str(cfg.path.resolve()),
            "cache_dir": str(cache_dir.resolve()), "key_dir": str(Path(key_dir).resolve()) if key_dir else None,
            "preflight": preflight_record, "allow_busy": allow_busy,
            "resumes": int(saved.get("resumes", 0)) + (1 if resume_dir is not None else 0),
        })
        plan = RunPlan(
            preset=preset, run_dir=run_dir, cache_dir=cache_dir, launch=launch, phases=phases,
            hourly_rate=pricing.hourly_rate_usd, idle_baseline_s=cfg.harness.idle_baseline_seconds,
            power_interval_s=cfg.harness.power_interval_seconds, resume=resume_dir is not None, probe=probe,
            stage_options=stage_options, key_dir=key_dir,
        )
        display = RunDisplay(hourly_rate=pricing.hourly_rate_usd)
        display.message(f"device: {device.kind} ({device.reason})")
        display.message(f"nanobench run {run_id}: preset {preset.name}, phases {', '.join(phases)}, "
                        f"{launch.nproc} process(es) x {launch.nnodes} node(s), run dir {run_dir}")
        previous_sigterm = _sigterm_as_interrupt()
        start_handshake(launch, preset=preset.name, config_json=workload_to_json(preset.workload), phases=phases, probe=probe)
        conditions_before = load_before()
        sampler = LoadSampler().start()
        try:
            outcome = execute(plan, display)
        finally:
            load_during = sampler.stop()
        own = node_record(state_phases=outcome["state"].phases, power_summary=outcome["power_summary"],
                          system=describe_system() if launch.node_rank != 0 else {}, nproc=launch.nproc)
        node_records = gather_node_records(launch, own)
    except MultiNodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except StateTampered as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        display.message(f"[FAILED] {exc}")
        display.message(f"the run is resumable: nanobench run --resume {run_dir}")
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; the run is resumable: nanobench run --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        lock.release()
    if launch.node_rank != 0:
        return 0  # node 0 has this node's records and writes the one bundle
    state = outcome["state"]
    manifest = None
    if preset.workload.data.source != "shipped":
        manifest = cache_dir / "base_data" / "manifest.json"
    result = assemble(
        run_id=run_id, preset=preset, pricing=pricing, state_phases=merge_energy(state.phases, node_records),
        manifest_path=manifest, power_summary=outcome["power_summary"], launch={**launch.__dict__, "phases": phases},
    )
    node_records[0]["system"] = result["system"]
    result["system"] = system_with_nodes(result["system"], node_records)
    result["number_of_nodes"] = len(node_records)
    result["nodes"] = nodes_section(node_records)
    result["resume"] = resume_record(state.phases, resumes=int(saved.get("resumes", 0)) + (1 if resume_dir is not None else 0))
    result["run_conditions"] = classify(
        conditions_before, load_during,
        step_time_stats(run_dir / "progress" / "pretrain.jsonl", preset.workload.pretrain.timing_skip_steps),
        allow_busy=allow_busy,
    )
    result["preflight"] = preflight_record
    result["run_nonce"] = state.nonce  # made at run start (bench.state_seal); copies of this run share it
    if result["run_conditions"]["busy"]:
        display.message(f"[BUSY MACHINE] {result['run_conditions']['reason']}"
                        + ("" if allow_busy else "; the leaderboard will not rank this run (rerun on a quiet machine, or --allow-busy)"))
    finalize(run_dir, result, key_dir=key_dir)
    display.summary(result)
    display.message(f"bundle: {run_dir} (check it with: nanobench verify {run_dir})")
    return 0 if result["valid"] else 3


def run_lock_path(run_dir: Path) -> Path:
    """The lock of a run directory, named by its real path: a symlinked or relative alias is the same run."""
    real = Path(run_dir).resolve()
    return real.parent / f".{real.name}.lock"


def _check_launch_args(args: argparse.Namespace) -> None:
    """Process counts and the run id, checked before anything is created."""
    if args.nproc is not None and args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nnodes < 1:
        raise ValueError(f"--nnodes must be >= 1, got {args.nnodes}")
    if not 0 <= args.node_rank < args.nnodes:
        raise ValueError(f"--node-rank must be in [0, {args.nnodes - 1}] for --nnodes {args.nnodes}, got {args.node_rank}")
    if args.nnodes > 1:
        if not args.job_id:
            raise ValueError("--nnodes > 1 needs --job-id ID: the same id on every node (nodes share no filesystem)")
        if not safe_name(args.job_id):
            raise ValueError(f"--job-id {args.job_id!r} must be letters, digits, '.', '_', '-' (not starting with '.'), "
                             "at most 128 characters")
        if not args.rdzv_endpoint:
            raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address; the same on every node)")
        parse_endpoint(args.rdzv_endpoint)
    elif args.job_id is not None:
        raise ValueError("--job-id is for multi-node runs (--nnodes > 1); use --run-id to name a one-node run")
    if args.run_id is not None and not safe_name(args.run_id):
        raise ValueError(f"--run-id {args.run_id!r} must be one path component: letters, digits, '.', '_', '-' "
                         "(not starting with '.'), at most 128 characters")


def _sigterm_as_interrupt():
    """Make SIGTERM stop the run like Ctrl-C: the running stage is terminated (its process group), the
    state stays resumable. Returns the previous handler (None when not on the main thread)."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an in-process caller): leave signals alone
        return None


def _load_launch(run_dir: Path) -> dict:
    """The launch record of a run directory to resume; a clear error when it is not one."""
    if not run_dir.is_dir():
        raise ValueError(f"--resume {run_dir}: not a directory")
    path = run_dir / "launch.json"
    if not path.is_file():
        raise ValueError(f"--resume {run_dir}: not a nanobench run directory (no launch.json)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--resume {run_dir}: launch.json is corrupt ({exc})") from None
    missing = [k for k in ("preset", "pricing", "phases", "launch", "probe") if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise ValueError(f"--resume {run_dir}: launch.json lacks {', '.join(missing)}")
    validate_launch_record(saved, run_dir)  # every value re-checked, as if given on the command line
    return saved


def _check_same_workload(preset, run_dir: Path, config_path: Path) -> None:
    """Refuse to resume with a config whose preset no longer resolves to the run's config.json."""
    saved = run_dir / "config.json"
    if saved.is_file() and saved.read_text(encoding="utf-8") != workload_to_json(preset.workload):
        raise ValueError(
            f"preset '{preset.name}' in {config_path} differs from {saved} (the workload this run started with); "
            "resume with the bench.toml the run started with (--config)"
        )


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def checkpoint_options(preset, harness) -> dict[str, dict[str, float | int]]:
    """The checkpoint cadence each training stage is launched with ([harness] + [presets.<name>.checkpoint])."""
    out: dict[str, dict[str, float | int]] = {}
    for stage in TRAINING_STAGES:
        minutes, steps = preset.checkpoint.for_stage(stage, harness)
        out[stage] = {"checkpoint_minutes": minutes, "checkpoint_every_steps": steps}
    return out


def resume_record(state_phases: dict, *, resumes: int) -> dict:
    """result.json `resume`: was the run interrupted and resumed, and how many seconds the interrupted
    attempts carried into the phases they interrupted."""
    carried = {name: float(rec.get("carried_seconds") or 0.0) for name, rec in state_phases.items()}
    resumed_phases = [name for name, secs in carried.items() if secs > 0]
    return {"resumed": resumes > 0 or bool(resumed_phases), "resumes": resumes,
            "carried_seconds": sum(carried.values()), "resumed_phases": resumed_phases}
