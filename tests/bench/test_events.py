"""bench.events: MLLOG lines are valid JSON with the six fields in order, and parse back."""

from __future__ import annotations

import io
import json

import pytest

from bench import events
from bench.events import MLLogger, MLLogParseError, parse_line, read_log


class _Clock:
    def __init__(self) -> None:
        self.t = 1_795_000_000.0

    def __call__(self) -> float:
        self.t += 0.25
        return self.t


def test_lines_are_prefixed_json_with_fields_in_order(tmp_path):
    path = tmp_path / "events.jsonl"
    stream = io.StringIO()
    with MLLogger(path, stream=stream, clock=_Clock()) as log:
        log.start(events.RUN_START)
        log.event(events.SUBMISSION_BENCHMARK, "nanochat-speedrun")
        log.start(events.PHASE_START, "pretrain")
        log.event(events.EVAL_ACCURACY, 0.8123, metric="val_bpb", step=100)
        log.end(events.PHASE_STOP, "pretrain", {"seconds": 12.5}, energy_joules=None)
        log.end(events.RUN_STOP, status=events.STATUS_SUCCESS)
    lines = path.read_text().splitlines()
    assert lines == stream.getvalue().splitlines()
    assert len(lines) == 6
    for line in lines:
        assert line.startswith(":::MLLOG ")
        record = json.loads(line[len(":::MLLOG "):])
        assert list(record) == ["namespace", "time_ms", "event_type", "key", "value", "metadata"]
        assert isinstance(record["time_ms"], int)
        assert record["event_type"] in events.EVENT_TYPES
        assert record["metadata"]["file"] == "test_events.py"
        assert isinstance(record["metadata"]["lineno"], int)


def test_parser_reads_records_back(tmp_path):
    path = tmp_path / "events.jsonl"
    log = MLLogger(path, clock=_Clock())
    log.start(events.PHASE_START, "tokenizer")
    log.end(events.PHASE_STOP, "tokenizer", seconds=3.0)
    log.event(events.RESULT_TRIPLE, {"usd": 1.5, "minutes": 2.0, "core": None, "chatcore": None})
    log.close()
    with open(path, "a") as fh:
        fh.write("some unrelated log line\n")
    records = read_log(path)
    assert [r["event_type"] for r in records] == ["INTERVAL_START", "INTERVAL_END", "POINT_IN_TIME"]
    assert records[1]["metadata"]["seconds"] == 3.0
    assert records[2]["value"]["core"] is None
    spans = events.intervals(records, events.PHASE_START, events.PHASE_STOP)
    assert spans["tokenizer"][1] - spans["tokenizer"][0] == 250


def test_non_finite_values_stay_valid_json():
    line = MLLogger(clock=_Clock(), with_caller=False).event("train_loss", float("nan"), grad=float("inf"))
    record = parse_line(line)
    assert record["value"] == "NaN" and record["metadata"]["grad"] == "Infinity"
    assert record["metadata"] == {"grad": "Infinity"}


def test_loggers_are_independent(tmp_path):
    a = MLLogger(tmp_path / "a.log", namespace="a", with_caller=False)
    b = MLLogger(tmp_path / "b.log", namespace="b", with_caller=False)
    a.event(events.SEED, 42)
    b.event(events.SEED, 7)
    a.close()
    b.close()
    assert [r["value"] for r in read_log(tmp_path / "a.log")] == [42]
    assert [r["namespace"] for r in read_log(tmp_path / "b.log")] == ["b"]


@pytest.mark.parametrize(
    "line",
    [
        ":::MLLOG {not json",
        ':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME", "key": "k", "value": 1}',
        ':::MLLOG {"namespace": "", "time_ms": 1.5, "event_type": "POINT_IN_TIME", "key": "k", "value": 1, "metadata": {}}',
        ':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "SOMETIME", "key": "k", "value": 1, "metadata": {}}',
        ':::MLLOG []',
    ],
)
def test_malformed_lines_raise(line):
    with pytest.raises(MLLogParseError):
        parse_line(line)


def test_unprefixed_lines_are_not_records():
    assert parse_line("INFO training started") is None
    assert parse_line("") is None


def test_unknown_event_type_rejected_on_write():
    with pytest.raises(ValueError):
        MLLogger(with_caller=False).log("LATER", "k")
