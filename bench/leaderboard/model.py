"""The leaderboard's data: one verified row per submission, grouped into one board per preset.

:func:`collect` walks ``submissions/<preset>/<run_id>/``, verifies every bundle and turns each
good one into a :class:`Entry` (row + what its page needs). Anything that fails verification, is
misfiled, is a forecast, or has fields of the wrong type becomes an :class:`Excluded` with the
reason; nothing here raises on a malformed submission.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.bundle import MANIFEST, SIGNATURE, SUBMISSION_META, bundle_files
from bench.submission import is_forecast, iter_submission_dirs, load_meta
from bench.verify import RESULT, check_pins, verify_bundle

JOULES_PER_KWH = 3.6e6
PINS_MATCH = "match"
PINS_MISMATCH = "mismatch"
PINS_NOT_CHECKED = "not checked"


@dataclass
class Row:
    """One leaderboard line; exactly what leaderboard.json/.csv carry, in the HTML's order."""

    preset: str
    rank: int
    run_id: str
    usd: float
    minutes: float
    core: float | None
    core_label: str
    chatcore: float | None
    hardware: str
    machine_id: str | None
    gpus: int
    gpu_model: str | None
    price_kind: str
    price_source: str
    hourly_rate_usd: float | None
    energy_kwh: float | None
    determinism: str
    signature: str
    key_fingerprint: str
    pins: str
    pins_detail: str
    availability: str | None
    label: str | None
    created_utc: str | None
    page: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Entry:
    """An included submission: its row plus what its page renders."""

    row: Row
    path: Path
    slug: str
    result: dict[str, Any]
    system: dict[str, Any]
    notes: str | None
    report_md: str | None
    files: list[str]
    meta_problem: str | None = None


@dataclass(frozen=True)
class Excluded:
    """A submission left off the board, and why."""

    submission: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Board:
    preset: str
    slug: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def rows(self) -> list[Row]:
        return [e.row for e in self.entries]


class MalformedSubmission(ValueError):
    """A verified bundle whose content the leaderboard cannot read (wrong type, missing field)."""


def _number(value: Any, what: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MalformedSubmission(f"{what} must be a number{' or null' if optional else ''}, got {value!r}")
    return float(value)


def _text(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise MalformedSubmission(f"{what} must be text, got {type(value).__name__}")
    return value


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedSubmission(f"{what} must be an object, got {type(value).__name__}")
    return value


def slugify(name: str, taken: set[str]) -> str:
    """A filesystem/URL-safe, unique version of a directory name."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "x"
    slug, n = base[:100], 1
    while slug in taken:
        n += 1
        slug = f"{base[:96]}-{n}"
    taken.add(slug)
    return slug


def core_label_of(result: Mapping[str, Any]) -> str:
    """The CORE score's label; an offline-subset label wins over a plain ``CORE`` default."""
    triple_label = _text(_mapping(result.get("triple"), "triple").get("core_label"), "triple.core_label", optional=True)
    core = result.get("metrics", {}).get("core") if isinstance(result.get("metrics"), dict) else None
    metric_label = core.get("label") if isinstance(core, dict) and isinstance(core.get("label"), str) else None
    if triple_label and triple_label.strip() and triple_label.strip() != "CORE":
        return triple_label.strip()
    if metric_label and metric_label.strip():
        return metric_label.strip()
    return "CORE"


def counted_energy_kwh(phases: list[Any]) -> float | None:
    """Energy over the counted phases in kWh, or ``None`` when any counted phase lacks it."""
    total = 0.0
    seen = False
    for phase in phases:
        if not isinstance(phase, dict) or phase.get("counted") is not True:
            continue
        seen = True
        joules = _number(phase.get("energy_joules"), f"phase {phase.get('name')!r} energy_joules", optional=True)
        if joules is None:
            return None
        total += joules
    return total / JOULES_PER_KWH if seen else None


def _gpu_summary(system: Mapping[str, Any]) -> tuple[int, str | None]:
    gpus = _mapping(system.get("gpus"), "system.gpus")
    devices = gpus.get("devices") if isinstance(gpus.get("devices"), list) else []
    count = gpus.get("count", system.get("accelerator_count"))
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        count = len(devices)
    names = [d.get("name") for d in devices if isinstance(d, dict) and isinstance(d.get("name"), str)]
    model = None
    if names:
        distinct = list(dict.fromkeys(names))
        model = distinct[0] if len(distinct) == 1 else " + ".join(distinct)
    return count, model


def _load_system(path: Path, result: Mapping[str, Any]) -> dict[str, Any]:
    system = result.get("system")
    if isinstance(system, dict) and system:
        return system
    try:
        data = json.loads((path / "system.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fingerprint(path: Path) -> str:
    try:
        sig = json.loads((path / SIGNATURE).read_text(encoding="utf-8"))
        return str(sig.get("key_fingerprint", "")) if isinstance(sig, dict) else ""
    except (OSError, ValueError):
        return ""


def _read_report(path: Path) -> str | None:
    try:
        return (path / "report.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def build_entry(path: Path, preset_dir: str, result: dict[str, Any], pins: Mapping[str, Any] | None, slug: str) -> Entry:
    """Turn a verified submission into an :class:`Entry` (rank filled in later); raises MalformedSubmission."""
    run_id = _text(result.get("run_id"), "run_id")
    preset = _text(result.get("preset"), "preset")
    if preset != preset_dir:
        raise MalformedSubmission(f"filed under preset {preset_dir!r} but result.json says preset {preset!r}")
    if run_id != path.name:
        raise MalformedSubmission(f"filed as {path.name!r} but result.json says run_id {run_id!r}")
    triple = _mapping(result.get("triple"), "triple")
    pricing = _mapping(result.get("pricing"), "pricing")
    phases = result.get("phases")
    if not isinstance(phases, list):
        raise MalformedSubmission("phases must be a list")
    meta, meta_problem = load_meta(path)
    system = _load_system(path, result)
    machine_id = _text(system.get("machine_id"), "system.machine_id", optional=True)
    gpus, gpu_model = _gpu_summary(system)
    label = meta.get("label")
    if pins is None:
        from bench.workload_identity import load_preset_pins

        pins = load_preset_pins(preset)  # the pins nanobench ships for this preset, if any
    if pins is None:
        pins_state, pins_detail = PINS_NOT_CHECKED, f"no pinned workload spec for preset {preset!r}"
    else:
        pin_check = check_pins(path, pins)
        pins_state = PINS_MATCH if pin_check.ok else PINS_MISMATCH
        pins_detail = pin_check.message
    determinism = _mapping(result.get("determinism"), "determinism").get("class") or "not_checked"
    row = Row(
        preset=preset,
        rank=0,
        run_id=run_id,
        usd=_number(triple.get("usd"), "triple.usd"),  # type: ignore[arg-type]
        minutes=_number(triple.get("minutes"), "triple.minutes"),  # type: ignore[arg-type]
        core=_number(triple.get("core"), "triple.core", optional=True),
        core_label=core_label_of(result),
        chatcore=_number(triple.get("chatcore"), "triple.chatcore", optional=True),
        hardware=label or machine_id or "unknown hardware",
        machine_id=machine_id,
        gpus=gpus,
        gpu_model=gpu_model,
        price_kind=_text(pricing.get("price_kind"), "pricing.price_kind"),  # type: ignore[arg-type]
        price_source=_text(pricing.get("price_source"), "pricing.price_source"),  # type: ignore[arg-type]
        hourly_rate_usd=_number(pricing.get("hourly_rate_usd"), "pricing.hourly_rate_usd", optional=True),
        energy_kwh=counted_energy_kwh(phases),
        determinism=_text(determinism, "determinism.class"),  # type: ignore[arg-type]
        signature="verified",
        key_fingerprint=_fingerprint(path),
        pins=pins_state,
        pins_detail=pins_detail,
        availability=meta.get("availability"),
        label=label,
        created_utc=_text(result.get("created_utc"), "created_utc", optional=True),
        page="",
    )
    return Entry(
        row=row,
        path=path,
        slug=slug,
        result=result,
        system=system,
        notes=meta.get("notes"),
        report_md=_read_report(path),
        files=[*bundle_files(path), MANIFEST, SIGNATURE] + ([SUBMISSION_META] if (path / SUBMISSION_META).is_file() else []),
        meta_problem=meta_problem,
    )


def load_one(path: Path, pins: Mapping[str, Any] | None, slug: str) -> Entry | Excluded:
    """Verify and read one submission directory; failures come back as :class:`Excluded`."""
    name = f"{path.parent.name}/{path.name}"
    try:
        report = verify_bundle(path)
        if not report.ok:
            return Excluded(name, report.message)
        result = json.loads((path / RESULT).read_text(encoding="utf-8"))
        if is_forecast(result):
            return Excluded(name, "a forecast, not a measured run")
        return build_entry(path, path.parent.name, result, pins, slug)
    except MalformedSubmission as exc:
        return Excluded(name, f"malformed: {exc}")
    except Exception as exc:  # noqa: BLE001 - never let one bad submission stop the build
        return Excluded(name, f"unreadable: {type(exc).__name__}: {exc}")


def sort_key(entry: Entry) -> tuple[float, float, str]:
    return (entry.row.usd, entry.row.minutes, entry.row.run_id)


def collect(submissions_dir: str | Path, pins: Mapping[str, Any] | None = None) -> tuple[list[Board], list[Excluded]]:
    """Boards (one per preset, sorted by name; rows by USD, then minutes, then run_id) and exclusions."""
    boards: dict[str, Board] = {}
    excluded: list[Excluded] = []
    preset_slugs: set[str] = set()
    run_slugs: dict[str, set[str]] = {}
    for path in iter_submission_dirs(submissions_dir):
        preset = path.parent.name
        if preset not in boards:
            boards[preset] = Board(preset, slugify(preset, preset_slugs))
        board = boards[preset]
        slug = slugify(path.name, run_slugs.setdefault(board.slug, set()))
        loaded = load_one(path, pins, slug)
        if isinstance(loaded, Excluded):
            excluded.append(loaded)
        else:
            board.entries.append(loaded)
    result = []
    for preset in sorted(boards):
        board = boards[preset]
        if not board.entries:
            continue
        board.entries.sort(key=sort_key)
        for rank, entry in enumerate(board.entries, 1):
            entry.row.rank = rank
            entry.row.page = f"s/{board.slug}/{entry.slug}/index.html"
        result.append(board)
    return result, excluded
