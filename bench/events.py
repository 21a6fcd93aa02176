"""MLPerf-style event log: one ``:::MLLOG {json}`` line per event, and a parser that reads them back.

Each line's JSON object has, in this order: ``namespace``, ``time_ms`` (int, ms since the Unix
epoch), ``event_type`` (``INTERVAL_START`` | ``INTERVAL_END`` | ``POINT_IN_TIME``), ``key``,
``value`` and ``metadata`` (an object; the logger adds the caller's ``file`` and ``lineno``, as
mlperf_logging does). Key names reuse MLPerf's vocabulary where one exists; nanobench adds
``phase_start``/``phase_stop`` (value = phase name) and a few result keys.

:class:`MLLogger` is an ordinary object (one per run), not a process-wide singleton.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable

PREFIX = ":::MLLOG "

INTERVAL_START = "INTERVAL_START"
INTERVAL_END = "INTERVAL_END"
POINT_IN_TIME = "POINT_IN_TIME"
EVENT_TYPES = (INTERVAL_START, INTERVAL_END, POINT_IN_TIME)
FIELDS = ("namespace", "time_ms", "event_type", "key", "value", "metadata")

# Timing (MLPerf names).
INIT_START = "init_start"
INIT_STOP = "init_stop"
RUN_START = "run_start"
RUN_STOP = "run_stop"  # metadata: status = success | aborted
EVAL_START = "eval_start"
EVAL_STOP = "eval_stop"
# nanobench phases (value = phase name; metadata on stop: seconds, energy_joules, usd, counted).
PHASE_START = "phase_start"
PHASE_STOP = "phase_stop"
# Run information (MLPerf names).
CACHE_CLEAR = "cache_clear"
SEED = "seed"
EVAL_ACCURACY = "eval_accuracy"  # value: the score; metadata: metric (val_bpb, core, chatcore, task name)
TRAIN_SAMPLES = "train_samples"
EVAL_SAMPLES = "eval_samples"
GLOBAL_BATCH_SIZE = "global_batch_size"
MAX_SEQUENCE_LENGTH = "max_sequence_length"
MAX_STEPS = "max_steps"
# Submission (MLPerf names).
SUBMISSION_BENCHMARK = "submission_benchmark"
SUBMISSION_DIVISION = "submission_division"  # closed | open
SUBMISSION_ORG = "submission_org"
SUBMISSION_PLATFORM = "submission_platform"
SUBMISSION_STATUS = "submission_status"  # onprem | cloud | research
SUBMISSION_POC_NAME = "submission_poc_name"
SUBMISSION_POC_EMAIL = "submission_poc_email"
# Power (MLPerf names) and nanobench energy/cost results.
POWER_MEASUREMENT_START = "power_measurement_start"
POWER_MEASUREMENT_STOP = "power_measurement_stop"
POWER_READING = "power_reading"
IDLE_POWER = "idle_power"  # value: watts; metadata: per-source breakdown
PHASE_ENERGY = "phase_energy"  # value: joules or null; metadata: phase, source, reason
# nanobench result keys.
WORKLOAD_SPEC = "workload_spec"  # value: spec version; metadata: hashes
SYSTEM_DESCRIPTION = "system_description"  # value: machine_id
PRICING = "pricing"  # value: hourly rate; metadata: source, kind, captured_on
DETERMINISM = "determinism"  # value: class
RESULT_TRIPLE = "result_triple"  # value: {"usd", "minutes", "core", "chatcore"}

STATUS_SUCCESS = "success"
STATUS_ABORTED = "aborted"


class MLLogParseError(ValueError):
    """A line that starts with the MLLOG prefix but is not a valid MLLOG record."""


def _finite(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def format_record(namespace: str, time_ms: int, event_type: str, key: str, value: Any, metadata: dict[str, Any]) -> str:
    """One MLLOG line (no newline). Non-finite floats become strings so the line stays valid JSON."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event_type {event_type!r}; expected one of {EVENT_TYPES}")
    record = {
        "namespace": namespace,
        "time_ms": int(time_ms),
        "event_type": event_type,
        "key": key,
        "value": value,
        "metadata": metadata,
    }
    try:
        body = json.dumps(record, default=_default, allow_nan=False)
    except ValueError:
        body = json.dumps(_finite(record), default=_default, allow_nan=False)
    return PREFIX + body


class MLLogger:
    """Writes MLLOG lines to a file (appended, line-flushed) and/or a text stream. Thread-safe.

    ``clock`` returns seconds since the epoch (injectable for tests); ``with_caller`` adds the
    calling ``file``/``lineno`` to every record's metadata.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        stream: IO[str] | None = None,
        namespace: str = "",
        clock: Callable[[], float] = time.time,
        with_caller: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.namespace = namespace
        self._stream = stream
        self._clock = clock
        self._with_caller = with_caller
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", buffering=1)

    def start(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None, **extra: Any) -> str:
        return self.log(INTERVAL_START, key, value, metadata, _depth=3, **extra)

    def end(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None, **extra: Any) -> str:
        return self.log(INTERVAL_END, key, value, metadata, _depth=3, **extra)

    def event(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None, **extra: Any) -> str:
        return self.log(POINT_IN_TIME, key, value, metadata, _depth=3, **extra)

    def log(
        self,
        event_type: str,
        key: str,
        value: Any = None,
        metadata: dict[str, Any] | None = None,
        *,
        _depth: int = 2,
        **extra: Any,
    ) -> str:
        """Write one record and return the line that was written."""
        meta: dict[str, Any] = {}
        if self._with_caller:
            frame = sys._getframe(_depth - 1)
            meta["file"] = os.path.basename(frame.f_code.co_filename)
            meta["lineno"] = frame.f_lineno
        meta.update(metadata or {})
        meta.update(extra)
        line = format_record(self.namespace, int(self._clock() * 1000), event_type, key, value, meta)
        with self._lock:
            if self._fh is not None:
                self._fh.write(line + "\n")
            if self._stream is not None:
                self._stream.write(line + "\n")
                self._stream.flush()
        return line

    def flush(self, fsync: bool = False) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                if fsync:
                    os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None

    def __enter__(self) -> "MLLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_line(line: str) -> dict[str, Any] | None:
    """The record on an MLLOG line; ``None`` for a line without the prefix (other log output).

    Raises :class:`MLLogParseError` when the prefix is there but the JSON or its fields are wrong.
    """
    text = line.strip()
    if not text.startswith(PREFIX.strip()):
        return None
    body = text[len(PREFIX.strip()) :].strip()
    try:
        record = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MLLogParseError(f"invalid JSON after {PREFIX.strip()}: {exc}") from exc
    validate_record(record)
    return record


def validate_record(record: Any) -> None:
    """Raise :class:`MLLogParseError` unless ``record`` has the six MLLOG fields with the right types."""
    if not isinstance(record, dict):
        raise MLLogParseError("record is not a JSON object")
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise MLLogParseError(f"record lacks {missing}")
    if not isinstance(record["namespace"], str):
        raise MLLogParseError("namespace is not a string")
    if not isinstance(record["time_ms"], int) or isinstance(record["time_ms"], bool):
        raise MLLogParseError("time_ms is not an integer")
    if record["event_type"] not in EVENT_TYPES:
        raise MLLogParseError(f"unknown event_type {record['event_type']!r}")
    if not isinstance(record["key"], str) or not record["key"]:
        raise MLLogParseError("key is not a non-empty string")
    if not isinstance(record["metadata"], dict):
        raise MLLogParseError("metadata is not an object")


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """All MLLOG records among ``lines`` (non-MLLOG lines are skipped), in order."""
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = parse_line(line)
        except MLLogParseError as exc:
            raise MLLogParseError(f"line {number}: {exc}") from exc
        if record is not None:
            records.append(record)
    return records


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse an MLLOG file (for instance a run's ``events.jsonl``)."""
    with open(path, encoding="utf-8") as fh:
        return parse_lines(fh)


def intervals(records: Iterable[dict[str, Any]], start_key: str, stop_key: str) -> dict[Any, tuple[int, int | None]]:
    """``{value: (start_ms, stop_ms or None)}`` pairing ``start_key``/``stop_key`` events by value.

    For phases: ``intervals(records, PHASE_START, PHASE_STOP)`` gives each phase's wall interval.
    """
    out: dict[Any, tuple[int, int | None]] = {}
    for rec in records:
        value = rec["value"] if not isinstance(rec["value"], (dict, list)) else json.dumps(rec["value"], sort_keys=True)
        if rec["key"] == start_key:
            out[value] = (rec["time_ms"], None)
        elif rec["key"] == stop_key and value in out and out[value][1] is None:
            out[value] = (out[value][0], rec["time_ms"])
    return out
