"""Was the machine quiet while the run was measured? Load before and during the run, step-time spread.

A run is marked ``busy`` (result.json ``run_conditions``) when any of these holds:

- before: other processes kept more than :data:`BUSY_CPU_FRACTION` of the CPUs busy during the
  :data:`BEFORE_SECONDS` sample taken just before the first phase (nothing of the run is running yet);
- during: the CPU time used by processes *outside* this run's process tree (the harness, its stages and
  their workers are subtracted: a CPU run keeps every core busy itself) averaged over
  :data:`BUSY_CPU_FRACTION` of the machine's cores;
- step times: the coefficient of variation (stdev / mean) of the steady-state pretraining step times
  (progress/pretrain.jsonl, steps after ``timing_skip_steps``) exceeds :data:`BUSY_STEP_CV`; the committed
  smoke submissions on a quiet 2-core box have CV 0.03, the busy run of issue 18 swung 146-1,393 tok/s.

The 1-minute load average is recorded beside these (before, min/mean/max during) but does not decide:
on Linux it counts threads waiting for I/O as well, and a CPU run's own threads raise it to the core count.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psutil

BUSY_CPU_FRACTION = 0.25
BUSY_STEP_CV = 0.25
BEFORE_SECONDS = 1.0
SAMPLE_INTERVAL_S = 2.0


def _system_busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def own_cpu_seconds() -> float:
    """CPU seconds of this process, its reaped children (cumulative) and its live descendants."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    try:
        for child in psutil.Process().children(recursive=True):
            try:
                ct = child.cpu_times()
                total += ct.user + ct.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    except psutil.Error:
        pass
    return total


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def load_before(seconds: float = BEFORE_SECONDS) -> dict[str, Any]:
    """The machine's load just before the run: CPU busy fraction over `seconds` (other processes only)."""
    cores = psutil.cpu_count() or 1
    b0, o0, w0 = _system_busy_seconds(), own_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    b1, o1, w1 = _system_busy_seconds(), own_cpu_seconds(), time.monotonic()
    frac = max(0.0, (b1 - b0) - (o1 - o0)) / max(1e-9, (w1 - w0) * cores)
    return {"loadavg_1m": _loadavg(), "cpu_busy_fraction": round(min(1.0, frac), 4), "cores": cores, "seconds": seconds}


class LoadSampler:
    """Samples, every `interval` seconds on a daemon thread, the CPU share used by other processes and the load average."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_S, *, busy_seconds=None, own_seconds=None, clock=time.monotonic) -> None:
        self.interval = interval
        self._busy = busy_seconds or _system_busy_seconds  # injectable counters (tests)
        self._own = own_seconds or own_cpu_seconds
        self._clock = clock
        self.cores = psutil.cpu_count() or 1
        self.foreign: list[float] = []
        self.loadavg: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-sampler", daemon=True)

    def start(self) -> "LoadSampler":
        self._prev = (self._busy(), self._own(), self._clock())
        self._thread.start()
        return self

    def _sample(self) -> None:
        b, o, w = self._busy(), self._own(), self._clock()
        pb, po, pw = self._prev
        self._prev = (b, o, w)
        if w - pw <= 0:
            return
        self.foreign.append(min(1.0, max(0.0, (b - pb) - (o - po)) / ((w - pw) * self.cores)))
        la = _loadavg()
        if la is not None:
            self.loadavg.append(la)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
        if not self.foreign:
            self._sample()
        return {
            "samples": len(self.foreign),
            "interval_s": self.interval,
            "foreign_cpu_fraction_mean": round(statistics.fmean(self.foreign), 4) if self.foreign else None,
            "foreign_cpu_fraction_max": round(max(self.foreign), 4) if self.foreign else None,
            "loadavg_1m": ({"min": min(self.loadavg), "mean": round(statistics.fmean(self.loadavg), 3), "max": max(self.loadavg)}
                           if self.loadavg else None),
            "cores": self.cores,
        }


def step_time_stats(progress_path: Path, skip_steps: int = 10) -> dict[str, Any] | None:
    """p50, p95, mean and coefficient of variation of the step times (``dt``) after `skip_steps`."""
    if not progress_path.is_file():
        return None
    dts = []
    for line in progress_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict) and e.get("key") == "step" and isinstance(e.get("value"), int) and e["value"] > skip_steps:
            dt = (e.get("metadata") or {}).get("dt")
            if isinstance(dt, (int, float)) and dt > 0:
                dts.append(float(dt))
    if len(dts) < 2:
        return None
    s = sorted(dts)
    mean = statistics.fmean(s)

    def q(p: float) -> float:
        k = (len(s) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (k - lo)

    return {"steps": len(s), "p50": q(0.5), "p95": q(0.95), "mean": mean, "cv": statistics.pstdev(s) / mean}


def classify(before: dict[str, Any] | None, during: dict[str, Any] | None, step_time: dict[str, Any] | None,
             *, allow_busy: bool) -> dict[str, Any]:
    """The run_conditions record: busy or not, and why."""
    reasons = []
    if before and (before.get("cpu_busy_fraction") or 0) > BUSY_CPU_FRACTION:
        reasons.append(f"before the run other processes kept {before['cpu_busy_fraction']:.0%} of the CPUs busy "
                       f"(limit {BUSY_CPU_FRACTION:.0%})")
    if during and (during.get("foreign_cpu_fraction_mean") or 0) > BUSY_CPU_FRACTION:
        reasons.append(f"during the run other processes used {during['foreign_cpu_fraction_mean']:.0%} of the CPUs on average "
                       f"(limit {BUSY_CPU_FRACTION:.0%})")
    if step_time and step_time["cv"] > BUSY_STEP_CV:
        reasons.append(f"pretraining step times varied by CV {step_time['cv']:.2f} (limit {BUSY_STEP_CV}; p50 "
                       f"{step_time['p50']:.3f} s, p95 {step_time['p95']:.3f} s)")
    return {
        "busy": bool(reasons),
        "allow_busy": allow_busy,
        "reason": "; ".join(reasons) if reasons else "quiet",
        "thresholds": {"cpu_fraction": BUSY_CPU_FRACTION, "step_cv": BUSY_STEP_CV},
        "load_before": before,
        "load_during": during,
        "step_time": step_time,
    }
