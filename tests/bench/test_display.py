"""bench.display at 80 columns: counts never read ``0/None``, the ETA is words, the live bar fits one
row (so it is redrawn in place, not reprinted under each log line), and each eval result prints once."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from bench.display import RunDisplay, count_text, duration_text

SMOKE = Path(__file__).resolve().parents[2] / "submissions" / "smoke"


def _plain_display(width: int = 80) -> tuple[RunDisplay, io.StringIO]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    return RunDisplay(hourly_rate=24.0, console=console, live=False), buffer


def test_count_and_duration_text():
    assert count_text(0, None) == "0"
    assert count_text(34, 100) == "34/100"
    assert count_text(0.05, 1.0) == "5%"
    assert count_text(None, None) == ""
    assert duration_text(None) == "?" and duration_text(45.2) == "45 s"
    assert duration_text(130) == "2 min 10 s" and duration_text(3900) == "1 h 05 min"


def test_each_eval_result_once_and_no_none(monkeypatch):
    display, buffer = _plain_display()
    display.phase_started("chat_eval", True)
    events = [
        {"key": "progress", "value": 0, "metadata": {"what": "download"}},  # no total: must not print None
        {"key": "eval", "value": "chat_eval/ARC-Easy", "metadata": {"value": 0.5, "step": 20}},
        {"key": "eval", "value": "chat_eval/ARC-Easy", "metadata": {"value": 0.5, "step": 20}},  # rank 1 reports it again
        {"key": "log", "value": "ARC-Easy: 4/8 = 0.5000", "metadata": {}},
        {"key": "log", "value": "loading tasks", "metadata": {}},
        {"key": "eval", "value": "chat_eval/ChatCORE", "metadata": {"value": 0.1389, "step": 20}},
    ]
    for event in events:
        display.on_event(event)
    display.phase_finished("chat_eval", 14.5, True, 0.0966)
    out = buffer.getvalue()
    assert "None" not in out
    assert out.count("ARC-Easy") == 1 and "eval chat_eval/ARC-Easy: 0.5000 at step 20" in out
    assert "loading tasks" in out and out.count("ChatCORE") == 1
    assert all(len(line) <= 80 for line in out.splitlines())


def test_recorded_smoke_events_replay_cleanly():
    """The smoke submission's own progress/ events: no None anywhere, each eval result once."""
    runs = sorted(SMOKE.glob("*/progress"))
    if not runs:
        return
    display, buffer = _plain_display()
    evals: set[tuple[str, object]] = set()
    for stage in ("tokenizer", "pretrain", "base_eval", "mid_train", "sft", "chat_eval"):
        path = runs[0] / f"{stage}.jsonl"
        if not path.exists():
            continue
        display.phase_started(stage, True)
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event.get("key") == "eval":
                evals.add((event["value"], (event.get("metadata") or {}).get("step")))
            display.on_event(event)
        display.phase_finished(stage, 1.0, True, 0.01)
    out = buffer.getvalue()
    assert "None" not in out
    eval_lines = [line for line in out.splitlines() if line.startswith("  eval ")]
    assert len(eval_lines) == len(set(eval_lines)) == len(evals)  # each result once
    assert "ARC-Easy: 4/8" not in out  # the log line repeating the eval event is dropped


def test_live_bar_fits_one_80_column_row():
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None, force_terminal=True)
    display = RunDisplay(hourly_rate=24.0, console=console, live=True)
    display.phase_started("base_eval", True)
    try:
        display.on_event({"key": "progress", "value": 3, "metadata": {"total": 18, "what": "core:bigbench_language_identification (rank 0)"}})
        lines = console.render_lines(display._progress.get_renderable(), console.options.update(width=80))
        text = "".join(seg.text for line in lines for seg in line)
        assert len(lines) == 1, text  # one row: rich redraws it in place
        assert "3/18" in text and "ETA" in text and "None" not in text
        display.on_event({"key": "step", "value": 0, "metadata": {"loss": 8.3, "tok_per_s": 1031.2}})  # no total_steps
        lines = console.render_lines(display._progress.get_renderable(), console.options.update(width=80))
        text = "".join(seg.text for line in lines for seg in line)
        assert len(lines) == 1 and "None" not in text and "ETA ?" in text and "loss 8.300" in text
    finally:
        display.phase_finished("base_eval", 1.0, True, None)


def test_messages_with_bracketed_paths_are_not_markup():
    """A gloo log line like '[/__w/pytorch/...cpp:123]' once crashed the live display (rich MarkupError)."""
    import io

    from rich.console import Console

    from bench.display import RunDisplay

    buf = io.StringIO()
    display = RunDisplay(hourly_rate=24, console=Console(file=buf, width=80, force_terminal=False), live=False)
    display.message("[W socket.cpp:697] [/__w/pytorch/pytorch/torch/csrc/distributed/c10d/socket.cpp:697] [c10d] hi")
    display.message("[FAILED] stage pretrain exited with 1")
    assert "[/__w/pytorch" in buf.getvalue() and "[FAILED]" in buf.getvalue()
