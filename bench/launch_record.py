"""Re-validation of a run's `launch.json` when it is resumed (issue 15).

`run --resume` trusts nothing it reads back: a launch.json edited (or corrupted) since the run started
must fail with the key and the allowed range, before anything starts, exactly like the same value given
on the command line would. :func:`validate_launch_record` checks every field `run` reads back.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from bench.commands.numbers import MAX_ENERGY_PRICE_USD, MAX_HOURLY_RATE_USD, MAX_NODES, MAX_PROCS
from bench.devices import DEVICE_CHOICES
from bench.phases import PHASE_NAMES, Launch

MAX_RDZV_TIMEOUT_S = 7 * 24 * 3600
MAX_RESUMES = 1_000_000


class LaunchRecordError(ValueError):
    """launch.json holds a value `run` would not accept; the message names the key and the range."""


def _integer(where: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        shown = repr(value) if len(repr(value)) <= 30 else f"a {len(repr(value))}-character value"
        raise LaunchRecordError(f"'{where}' must be an integer from {lo} to {hi}, got {shown}")


def _number(where: str, value: Any, lo: float, hi: float, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
        shown = repr(value) if len(repr(value)) <= 30 else f"a {len(repr(value))}-character value"
        raise LaunchRecordError(f"'{where}' must be a finite number from {lo:g} to {hi:g}, got {shown}")


def _optional_str(where: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise LaunchRecordError(f"'{where}' must be a string or null, got {value!r}")


def validate_launch_record(saved: dict, run_dir: Path | str) -> None:
    """Raise LaunchRecordError (a ValueError, prefixed with the run directory) for the first bad field."""
    try:
        _validate(saved)
    except LaunchRecordError as exc:
        raise LaunchRecordError(f"--resume {run_dir}: launch.json: {exc}") from None


def _validate(saved: dict) -> None:
    if not isinstance(saved.get("preset"), str) or not saved["preset"]:
        raise LaunchRecordError(f"'preset' must be a preset name, got {saved.get('preset')!r}")
    phases = saved.get("phases")
    if not isinstance(phases, list) or not phases or not all(isinstance(p, str) and p in PHASE_NAMES for p in phases):
        raise LaunchRecordError(f"'phases' must be a non-empty list of {', '.join(PHASE_NAMES)}, got {phases!r}")
    if not isinstance(saved.get("probe"), bool):
        raise LaunchRecordError(f"'probe' must be true or false, got {saved.get('probe')!r}")
    pricing = saved.get("pricing")
    if not isinstance(pricing, dict):
        raise LaunchRecordError(f"'pricing' must be an object, got {pricing!r}")
    _number("pricing.hourly_rate_usd", pricing.get("hourly_rate_usd"), 0, MAX_HOURLY_RATE_USD)
    _number("pricing.energy_price_usd_per_kwh", pricing.get("energy_price_usd_per_kwh"), 0, MAX_ENERGY_PRICE_USD, optional=True)
    launch = saved.get("launch")
    if not isinstance(launch, dict):
        raise LaunchRecordError(f"'launch' must be an object, got {launch!r}")
    known = {f.name for f in dataclasses.fields(Launch)}
    unknown = sorted(set(launch) - known)
    if unknown:
        raise LaunchRecordError(f"unknown key 'launch.{unknown[0]}'; allowed keys: {', '.join(sorted(known))}")
    _integer("launch.nproc", launch.get("nproc", 1), 1, MAX_PROCS)
    _integer("launch.nnodes", launch.get("nnodes", 1), 1, MAX_NODES)
    _integer("launch.node_rank", launch.get("node_rank", 0), 0, launch.get("nnodes", 1) - 1)
    _integer("launch.rdzv_timeout_s", launch.get("rdzv_timeout_s", 1800), 1, MAX_RDZV_TIMEOUT_S)
    if launch.get("device", "auto") not in DEVICE_CHOICES:
        raise LaunchRecordError(f"'launch.device' must be one of {', '.join(DEVICE_CHOICES)}, got {launch.get('device')!r}")
    if launch.get("compile") not in (None, True, False):
        raise LaunchRecordError(f"'launch.compile' must be true, false or null, got {launch.get('compile')!r}")
    for name in ("rdzv_endpoint", "rdzv_id", "job_id"):
        _optional_str(f"launch.{name}", launch.get(name))
    if "resumes" in saved:
        _integer("resumes", saved["resumes"], 0, MAX_RESUMES)
    if "allow_busy" in saved and not isinstance(saved["allow_busy"], bool):
        raise LaunchRecordError(f"'allow_busy' must be true or false, got {saved['allow_busy']!r}")
    for name in ("config", "cache_dir", "key_dir"):
        _optional_str(name, saved.get(name))
