"""Live terminal display of a run: phase, progress bar with ETA, tokens/s, loss, watts, dollars so far.

On a terminal it is a rich live progress line that fits one row of an 80-column terminal (the
status text is cut with an ellipsis rather than wrapped, so the bar is redrawn in place instead of
being reprinted under every log line); elsewhere (CI logs) it prints one line per phase and a step
line every few seconds. Counts read ``34/100`` or ``45%`` (never ``0/None``), the ETA reads
``ETA 2 min 10 s``, and each eval result is printed once (the stage's own log line repeating it is
dropped, as are the same result reported by several ranks). It only *shows* events; it never
changes them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Column, Table
from rich.text import Text


def count_text(completed: float | None, total: float | None) -> str:
    """``34/100`` for counted work, ``45%`` for a fraction of 1, ``34`` without a total; never ``None``."""
    if completed is None:
        return ""
    if total is not None and total > 0 and float(total) == 1.0 and 0 <= completed <= 1:
        return f"{100 * completed:.0f}%"
    done = f"{completed:,.0f}" if float(completed).is_integer() else f"{completed:,.2f}"
    if total is None or total <= 0:
        return done
    whole = f"{total:,.0f}" if float(total).is_integer() else f"{total:,.2f}"
    return f"{done}/{whole}"


def duration_text(seconds: float | None) -> str:
    """``45 s``, ``2 min 10 s``, ``1 h 05 min``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


class CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(count_text(task.completed, task.total), style="progress.download")


class ElapsedEtaColumn(ProgressColumn):
    """``1 min 02 s, ETA 2 min 10 s`` (``ETA ?`` until the rate is known)."""

    def render(self, task: Task) -> Text:
        elapsed = duration_text(task.elapsed or 0.0)
        eta = duration_text(task.time_remaining) if task.total else "?"
        return Text(f"{elapsed}, ETA {eta}", style="progress.remaining")


class RunDisplay:
    def __init__(self, *, hourly_rate: float, console: Console | None = None, live: bool | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.live = self.console.is_terminal if live is None else live
        self.hourly_rate = hourly_rate
        self.counted_seconds = 0.0
        self.phase: str | None = None
        self.phase_t0 = 0.0
        self.phase_counted = True
        self.watts: float | None = None
        self._lock = threading.Lock()
        self._last_print = 0.0
        self._evals_shown: set[tuple[str, Any]] = set()
        self._eval_names: set[str] = set()
        self._progress: Progress | None = None
        self._task = None

    # ---- phase boundaries ---------------------------------------------------------------------
    def phase_started(self, name: str, counted: bool) -> None:
        self.phase, self.phase_t0, self.phase_counted = name, time.monotonic(), counted
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.fields[phase]}", table_column=Column(no_wrap=True, max_width=12)),
                BarColumn(bar_width=14),
                CountColumn(table_column=Column(no_wrap=True)),
                ElapsedEtaColumn(table_column=Column(no_wrap=True)),
                TextColumn("{task.fields[status]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=self.console, transient=True, expand=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(name, total=None, phase=name, status="")
        else:
            self.console.print(f"[{time.strftime('%H:%M:%S')}] phase {name} started", highlight=False, markup=False)

    def phase_finished(self, name: str, seconds: float, ok: bool, usd: float | None) -> None:
        if self.phase_counted:
            self.counted_seconds += seconds
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._eval_names.clear()
        mark = "ok" if ok else "FAILED"
        cost = f", ${usd:.4f}" if usd is not None else ""
        self.console.print(f"[{time.strftime('%H:%M:%S')}] phase {name} {mark} in {seconds:.1f}s{cost}", highlight=False, markup=False)

    def message(self, text: str) -> None:
        # Messages carry text from stages and libraries (e.g. gloo's "[/path/file.cpp:12]"): never rich markup.
        self.console.print(text, highlight=False, markup=False)

    # ---- events from the workload ---------------------------------------------------------------
    def on_event(self, event: dict[str, Any]) -> None:
        key, value, meta = event.get("key"), event.get("value"), event.get("metadata") or {}
        with self._lock:
            if key == "step":
                total = meta.get("total_steps")
                status = self._status(loss=meta.get("loss"), tok_s=meta.get("tok_per_s"), mfu=meta.get("mfu"))
                self._update(completed=(value or 0) + 1, total=total, status=status)
            elif key == "progress":
                self._update(completed=value, total=meta.get("total"), status=self._status(what=meta.get("what")))
            elif key == "eval":
                self._eval(value, meta)
            elif key == "log" and value:
                if str(value).split(":", 1)[0].strip() in self._eval_names:
                    return  # the stage's log line repeating an eval result already shown
                self._print_line(f"  {value}", force=True)

    def _eval(self, name: Any, meta: dict[str, Any]) -> None:
        score = meta.get("value", meta.get("score"))
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            return
        seen = (str(name), meta.get("step"))
        short = str(name).rsplit("/", 1)[-1]
        self._eval_names.add(short)
        if seen in self._evals_shown:
            return  # the same result from another rank
        self._evals_shown.add(seen)
        label = f" ({meta['label']})" if isinstance(meta.get("label"), str) else ""
        step = f" at step {meta['step']}" if isinstance(meta.get("step"), int) else ""
        self._print_line(f"  eval {name}{label}: {score:.4f}{step}", force=True)

    def _status(self, *, loss=None, tok_s=None, mfu=None, what=None) -> str:
        parts = []
        if isinstance(loss, (int, float)):
            parts.append(f"loss {loss:.3f}")
        if isinstance(tok_s, (int, float)):
            parts.append(f"{tok_s:,.0f} tok/s")
        if isinstance(mfu, (int, float)):
            parts.append(f"MFU {mfu:.1f}%")
        if what:
            parts.append(str(what))
        if self.watts is not None:
            parts.append(f"{self.watts:.0f} W")
        elapsed = self.counted_seconds + (time.monotonic() - self.phase_t0 if self.phase_counted else 0.0)
        parts.append(f"${self.hourly_rate * elapsed / 3600:.2f} so far")
        return "  ".join(parts)

    def _update(self, *, completed, total, status: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed, total=total, status=status)
        else:
            self._print_line(f"  {self.phase} {count_text(completed, total)}  {status}".rstrip())

    def _print_line(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_print >= 10.0:
            self._last_print = now
            console = self._progress.console if self._progress is not None else self.console
            console.print(text, highlight=False, markup=False, soft_wrap=True)

    # ---- the end ----------------------------------------------------------------------------------
    def summary(self, result: dict[str, Any]) -> None:
        table = Table(title=f"nanobench {result['preset']} - {result['run_id']}")
        for col in ("phase", "seconds", "energy (kJ)", "avg W", "USD", "counted"):
            table.add_column(col, justify="right" if col != "phase" else "left")
        for p in result["phases"]:
            e = p.get("energy_joules")
            w = p.get("avg_power_watts")
            table.add_row(p["name"], f"{p['seconds']:.1f}", "n/a" if e is None else f"{e / 1000:.2f}",
                          "n/a" if w is None else f"{w:.0f}", f"{p['usd']:.4f}", "yes" if p["counted"] else "no")
        self.console.print(table)
        t = result["triple"]
        core = "n/a" if t["core"] is None else f"{t['core']:.4f}"
        chat = "n/a" if t["chatcore"] is None else f"{t['chatcore']:.4f}"
        self.console.print(
            f"[bold]triple[/bold]: USD {t['usd']:.4f} | minutes {t['minutes']:.2f} | {t.get('core_label', 'CORE')} {core} | ChatCORE {chat}",
            highlight=False,
        )
        det = result.get("determinism", {})
        self.console.print(f"determinism: {det.get('class')}  valid: {result.get('valid')}", highlight=False)
