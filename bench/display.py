"""Live terminal display of a run: phase, progress bar with ETA, tokens/s, loss, watts, dollars so far.

On a terminal it is a rich live panel; elsewhere (CI logs) it prints one line per phase and a step line
every few seconds. Either way it only *shows* events; it never changes them.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


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
        self._progress: Progress | None = None
        self._task = None

    # ---- phase boundaries ---------------------------------------------------------------------
    def phase_started(self, name: str, counted: bool) -> None:
        self.phase, self.phase_t0, self.phase_counted = name, time.monotonic(), counted
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.fields[phase]:<12}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(name, total=None, phase=name, status="")
        else:
            self.console.print(f"[{time.strftime('%H:%M:%S')}] phase {name} started", highlight=False)

    def phase_finished(self, name: str, seconds: float, ok: bool, usd: float | None) -> None:
        if self.phase_counted:
            self.counted_seconds += seconds
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        mark = "ok" if ok else "FAILED"
        cost = f", ${usd:.4f}" if usd is not None else ""
        self.console.print(f"[{time.strftime('%H:%M:%S')}] phase {name} {mark} in {seconds:.1f}s{cost}", highlight=False)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

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
                score = meta.get("value", meta.get("score"))
                if isinstance(score, (int, float)):
                    self._print_line(f"  eval {value}: {score:.4f}", force=True)
            elif key == "log" and value:
                self._print_line(f"  {value}", force=True)

    def _status(self, *, loss=None, tok_s=None, mfu=None, what=None) -> str:
        parts = []
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if tok_s is not None:
            parts.append(f"{tok_s:,.0f} tok/s")
        if mfu is not None:
            parts.append(f"MFU {mfu:.1f}%")
        if what:
            parts.append(str(what))
        if self.watts is not None:
            parts.append(f"{self.watts:.0f} W")
        elapsed = self.counted_seconds + (time.monotonic() - self.phase_t0 if self.phase_counted else 0.0)
        parts.append(f"${self.hourly_rate * elapsed / 3600:.4f} so far")
        return "  ".join(parts)

    def _update(self, *, completed, total, status: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed, total=total, status=status)
        else:
            self._print_line(f"  {self.phase} {completed}/{total if total else '?'}  {status}")

    def _print_line(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_print >= 10.0:
            self._last_print = now
            if self._progress is not None:
                self._progress.console.print(text, highlight=False)
            else:
                print(text, flush=True, file=sys.stdout)

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
