"""The leaderboard's data: one verified row per submission, grouped into one board per preset.

:func:`collect` walks ``submissions/<preset>/<run_id>/``, verifies every bundle and turns each
good one into a :class:`Entry` (row + what its page needs). Anything that fails verification, is
misfiled, is a forecast, or has fields of the wrong type becomes an :class:`Excluded` with the
reason; nothing here raises on a malformed submission.

Ranking (issue 14): a bundle that verifies must also meet :func:`bench.ranking.ranking_problems`
(complete preset phases counted as the registry says, valid, determinism not divergent, both
scores, pins matching the shipped pins, a signer in the key registry, complete evidence, a run
nonce no other submission carries, not run on a busy machine unless ``allow_busy``); otherwise it
is an :class:`Excluded` with every reason. Fields the site renders, beyond the original ones:

- ``Row.signer`` / ``Row.signer_owner``: the registry name and owner (``submissions/keys/<owner>.pub``)
  of the signing key; ``Row.key_fingerprint`` its fingerprint;
- ``Row.reference_usd``: cost of the counted phases at the reference price
  (``bench/reference_prices.toml``, dated, approximate); ``Row.reference_units`` /
  ``Row.reference_unit``: accelerator-hours ("GPU-hours", or "vCPU-hours" on a CPU-only machine);
  ``Row.reference_rate`` ($/unit-hour), ``Row.reference_model`` (the table row matched),
  ``Row.reference_reason`` (why there is no reference cost, when there is none);
- ``Row.time_only``: the submitter priced the run at ``--hourly-rate 0`` ("time only"); such rows
  stay on the board after the priced rows, with ``Row.ranked`` False and ``rank`` 0, because $0
  is not a cost to rank by;
- ``Row.run_nonce``: the run's nonce (two submissions with one nonce are one measurement);
- ``Excluded.submission`` / ``Excluded.reason`` (every broken rule, ``; ``-joined), plus, when the
  bundle verified, ``run_id``, ``signer``, ``usd``, ``minutes``, ``reference_usd``,
  ``reference_units``, ``reference_unit``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.bundle import MANIFEST, SIGNATURE, SUBMISSION_META, bundle_files
from bench.key_registry import KeyRegistry, load_registry
from bench.ranking import ranking_problems
from bench.reference_prices import reference_cost
from bench.safe_read import UnsafeFile, is_regular, load_json, read_text, show
from bench.submission import KEYS_DIRNAME, is_forecast, iter_submission_dirs, load_meta
from bench.verify import RESULT, check_pins, signer_of, verify_bundle

JOULES_PER_KWH = 3.6e6
PINS_MATCH = "match"
PINS_MISMATCH = "mismatch"
PINS_NOT_CHECKED = "not checked"
REPORT_CAP = 256 * 1024  # report.md beyond this is cut on the page (the raw file stays linked)


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
    # display-only flags (helper B, issue 18): filled by run_flags() after the row is built
    date: str | None = None  # YYYY-MM-DD of created_utc, for the date filter
    resumed: bool = False
    carried_seconds: float = 0.0
    busy: bool | None = None  # None: the run recorded no machine-load check
    # issue 14 (who signed, reference price, time-only); see the module docstring
    signer: str | None = None
    signer_owner: str | None = None
    reference_usd: float | None = None
    reference_units: float | None = None
    reference_unit: str = "GPU-hours"
    reference_rate: float | None = None
    reference_model: str | None = None
    reference_reason: str | None = None
    time_only: bool = False
    ranked: bool = True
    run_nonce: str | None = None

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
    """A submission left off the board, and why (plus what it claimed, when it verified)."""

    submission: str
    reason: str
    run_id: str | None = None
    signer: str | None = None
    usd: float | None = None
    minutes: float | None = None
    reference_usd: float | None = None
    reference_units: float | None = None
    reference_unit: str | None = None

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
        data = load_json(path / "system.json")
    except UnsafeFile:
        return {}
    return data if isinstance(data, dict) else {}


def _fingerprint(path: Path) -> str:
    return signer_of(path)[1] or ""


def _read_report(path: Path) -> str | None:
    """report.md, cut at REPORT_CAP characters; None when absent or not a regular file."""
    try:
        text = read_text(path / "report.md", cap=64 * 2**20)
    except UnsafeFile:
        return None
    if len(text) > REPORT_CAP:
        text = text[:REPORT_CAP] + f"\n\n*(report.md is {len(text):,} characters; the rest is in the raw file.)*\n"
    return text


def run_flags(result: Mapping[str, Any]) -> tuple[str | None, bool, float, bool | None]:
    """(date, resumed, carried seconds, busy) for display; tolerant of runs that predate these fields."""
    created = result.get("created_utc")
    date = created[:10] if isinstance(created, str) and re.match(r"\d{4}-\d{2}-\d{2}", created) else None
    phases = result.get("phases") if isinstance(result.get("phases"), list) else []
    carried = sum(float(p.get("carried_seconds") or 0.0) for p in phases
                  if isinstance(p, dict) and isinstance(p.get("carried_seconds"), (int, float)))
    resume = result.get("resume")
    resumed = carried > 0
    if isinstance(resume, dict):
        resumed = resume.get("resumed") is True
        if isinstance(resume.get("carried_seconds"), (int, float)) and not isinstance(resume.get("carried_seconds"), bool):
            carried = float(resume["carried_seconds"])
    conditions = result.get("run_conditions")
    busy = conditions.get("busy") if isinstance(conditions, dict) and isinstance(conditions.get("busy"), bool) else None
    return date, resumed, carried, busy


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
    row.date, row.resumed, row.carried_seconds, row.busy = run_flags(result)
    return Entry(
        row=row,
        path=path,
        slug=slug,
        result=result,
        system=system,
        notes=meta.get("notes"),
        report_md=_read_report(path),
        files=[*bundle_files(path), MANIFEST, SIGNATURE] + ([SUBMISSION_META] if is_regular(path / SUBMISSION_META) else []),
        meta_problem=meta_problem,
    )


def _reference(entry_row: Row, system: Mapping[str, Any]) -> None:
    ref = reference_cost(system, entry_row.minutes)
    entry_row.reference_usd, entry_row.reference_units, entry_row.reference_unit = ref.usd, ref.units, ref.unit
    entry_row.reference_rate, entry_row.reference_model, entry_row.reference_reason = ref.usd_per_hour, ref.model, ref.reason


def _excluded_from(name: str, entry: Entry, reason: str) -> Excluded:
    r = entry.row
    return Excluded(name, reason, r.run_id, r.signer, r.usd, r.minutes, r.reference_usd, r.reference_units, r.reference_unit)


def load_one(
    path: Path, pins: Mapping[str, Any] | None, slug: str, registry: KeyRegistry | None = None, *, rank_rules: bool = True
) -> Entry | Excluded:
    """Verify and read one submission directory; failures and rule breaks come back as :class:`Excluded`.

    ``rank_rules=False`` skips :func:`bench.ranking.ranking_problems` (and nonce de-duplication in
    :func:`collect`): only for tests of rendering with synthetic bundles; the CLI never does.
    """
    name = f"{show(path.parent.name)[1:-1]}/{show(path.name)[1:-1]}"
    try:
        report = verify_bundle(path)
        if not report.ok:
            return Excluded(name, report.message)
        result = load_json(path / RESULT)
        if not isinstance(result, dict):
            return Excluded(name, "malformed: result.json is not an object")
        if is_forecast(result):
            return Excluded(name, "a forecast, not a measured run")
        entry = build_entry(path, path.parent.name, result, pins, slug)
        registry = registry if registry is not None else KeyRegistry({})
        public, fingerprint = signer_of(path)
        signer = registry.lookup(public, fingerprint)
        if signer is not None:
            entry.row.signer, entry.row.signer_owner = signer.name, signer.owner
        _reference(entry.row, entry.system)
        nonce = result.get("run_nonce")
        entry.row.run_nonce = nonce if isinstance(nonce, str) else None
        entry.row.time_only = entry.row.hourly_rate_usd == 0
        entry.row.ranked = not entry.row.time_only
        pins_ok = {PINS_MATCH: True, PINS_MISMATCH: False}.get(entry.row.pins)
        problems = ranking_problems(result, pins_ok=pins_ok, pins_detail=entry.row.pins_detail, signer_known=signer is not None,
                                    evidence_missing=report.evidence_missing)
        if problems and rank_rules:
            return _excluded_from(name, entry, "not ranked: " + "; ".join(problems))
        return entry
    except MalformedSubmission as exc:
        return Excluded(name, f"malformed: {show(str(exc))[1:-1][:500]}")
    except Exception as exc:  # noqa: BLE001 - never let one bad submission stop the build
        return Excluded(name, f"unreadable: {type(exc).__name__}: {show(str(exc))[1:-1][:500]}")


def sort_key(entry: Entry) -> tuple[bool, float, float, str]:
    """Priced rows by USD, then minutes; time-only rows (rate 0) after them, by minutes."""
    if entry.row.time_only:
        return (True, entry.row.minutes, 0.0, entry.row.run_id)
    return (False, entry.row.usd, entry.row.minutes, entry.row.run_id)


def _drop_copies(entries: list[Entry]) -> tuple[list[Entry], list[Excluded]]:
    """Keep one submission per run nonce, the one filed first (``submitted_utc`` in submission.json; one
    without it counts as filed last, then by run_id); the others are copies of that measurement."""
    kept: dict[str, Entry] = {}
    dropped: list[Excluded] = []

    def filed(e: Entry) -> tuple[int, str, str]:
        submitted = load_meta(e.path)[0].get("submitted_utc")
        return (0, submitted, e.row.run_id) if isinstance(submitted, str) else (1, "", e.row.run_id)

    for entry in sorted(entries, key=filed):
        nonce = entry.row.run_nonce
        if nonce is None or nonce not in kept:
            if nonce is not None:
                kept[nonce] = entry
            continue
        first = kept[nonce]
        dropped.append(_excluded_from(f"{entry.path.parent.name}/{entry.path.name}", entry,
                                      f"not ranked: same run nonce as {first.row.preset}/{first.row.run_id} (a copy of one measurement)"))
    gone = {id(e) for e in entries} - {id(e) for e in kept.values()} - {id(e) for e in entries if e.row.run_nonce is None}
    return [e for e in entries if id(e) not in gone], dropped


def collect(
    submissions_dir: str | Path, pins: Mapping[str, Any] | None = None, registry: KeyRegistry | None = None,
    *, rank_rules: bool = True,
) -> tuple[list[Board], list[Excluded]]:
    """Boards (one per preset, sorted by name; rows by USD, then minutes, then run_id) and exclusions.

    ``pins`` overrides the shipped pins of every preset; ``registry`` defaults to
    ``<submissions_dir>/keys`` (an unreadable registry trusts nobody, and says so).
    """
    boards: dict[str, Board] = {}
    excluded: list[Excluded] = []
    if registry is None:
        try:
            keys = Path(submissions_dir) / KEYS_DIRNAME
            registry = load_registry(keys) if (keys.exists() or keys.is_symlink()) else KeyRegistry({}, str(keys))
        except Exception as exc:  # noqa: BLE001
            excluded.append(Excluded(KEYS_DIRNAME, f"key registry unreadable, no signer trusted: {show(str(exc))[1:-1][:300]}"))
            registry = KeyRegistry({})
    preset_slugs: set[str] = set()
    run_slugs: dict[str, set[str]] = {}
    for path in iter_submission_dirs(submissions_dir):
        preset = path.parent.name
        if preset not in boards:
            boards[preset] = Board(preset, slugify(preset, preset_slugs))
        board = boards[preset]
        slug = slugify(path.name, run_slugs.setdefault(board.slug, set()))
        loaded = load_one(path, pins, slug, registry, rank_rules=rank_rules)
        if isinstance(loaded, Excluded):
            excluded.append(loaded)
        else:
            board.entries.append(loaded)
    all_entries = [e for b in boards.values() for e in b.entries]
    _, copies = _drop_copies(all_entries) if rank_rules else ([], [])
    copied = {c.submission for c in copies}
    excluded.extend(copies)
    result = []
    for preset in sorted(boards):
        board = boards[preset]
        board.entries = [e for e in board.entries if f"{e.path.parent.name}/{e.path.name}" not in copied]
        if not board.entries:
            continue
        board.entries.sort(key=sort_key)
        assign_ranks(board.entries)
        for entry in board.entries:
            entry.row.page = f"s/{board.slug}/{entry.slug}/index.html"
        result.append(board)
    return result, excluded


def assign_ranks(entries: list[Entry]) -> None:
    """1, 2, ... for ranked rows in order; 0 for time-only rows."""
    rank = 0
    for entry in entries:
        if entry.row.ranked:
            rank += 1
            entry.row.rank = rank
        else:
            entry.row.rank = 0
