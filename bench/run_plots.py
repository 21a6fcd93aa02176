"""Charts of one run from its bundle: the training loss per stage (``progress/*.jsonl``) and power over
time (``power.csv``). Matplotlib with the Agg backend, figures built directly (no pyplot state), so
nothing opens a window and nothing is fetched; saved as PNG (report card) or SVG (leaderboard).

Loading never raises on a damaged file: unreadable lines and cells are skipped, and a chart with no
data is simply not drawn (the loaders return empty data and the callers say "not recorded").
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The first import of matplotlib builds its font cache and logs a WARNING about it; that is noise in a
# benchmark's output, so matplotlib's own loggers only speak on errors.
logging.getLogger("matplotlib").setLevel(logging.ERROR)

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from bench.safe_read import UnsafeFile, read_text  # noqa: E402

TRAINING_STAGES = ("pretrain", "mid_train", "sft")
STAGE_COLORS = {"pretrain": "#2563eb", "mid_train": "#7c3aed", "sft": "#059669"}
GPU_COLOR, CPU_COLOR, UTIL_COLOR = "#dc2626", "#2563eb", "#64748b"
RC = {"svg.hashsalt": "nanobench", "svg.fonttype": "path", "font.size": 9, "axes.edgecolor": "#94a3b8"}
MAX_READ_BYTES = 64 * 2**20  # a submitted bundle's file larger than this is not charted (the build stays bounded)
LOSS_PNG = "loss_curve.png"
POWER_PNG = "power.png"


@dataclass
class LossCurves:
    """Per stage: (step, loss) pairs in step order."""

    stages: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.stages.values())


@dataclass
class PowerTrace:
    """Seconds since the first sample, and the series that had at least one reading."""

    t: list[float] = field(default_factory=list)
    gpu_w: list[float | None] = field(default_factory=list)
    cpu_w: list[float | None] = field(default_factory=list)
    cpu_util: list[float | None] = field(default_factory=list)
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # (name, start, end) in the same seconds

    def has(self, series: Sequence[float | None]) -> bool:
        return any(v is not None for v in series)

    def __bool__(self) -> bool:
        return bool(self.t) and (self.has(self.gpu_w) or self.has(self.cpu_w) or self.has(self.cpu_util))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def load_loss_curves(progress_dir: str | Path) -> LossCurves:
    """The ``step`` events' losses of each training stage found under ``progress_dir``."""
    curves = LossCurves()
    for stage in TRAINING_STAGES:
        path = Path(progress_dir) / f"{stage}.jsonl"
        try:
            lines = read_text(path, cap=MAX_READ_BYTES).splitlines()
        except (OSError, UnsafeFile):
            continue
        points: dict[int, float] = {}
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("key") != "step":
                continue
            step = event.get("value")
            loss = _finite((event.get("metadata") or {}).get("loss")) if isinstance(event.get("metadata"), dict) else None
            if isinstance(step, int) and not isinstance(step, bool) and loss is not None:
                points[step] = loss  # a resumed run repeats steps: the last record wins
        if points:
            curves.stages[stage] = sorted(points.items())
    return curves


def _cell(row: Mapping[str, str], key: str) -> float | None:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_power(csv_path: str | Path) -> PowerTrace:
    """``power.csv`` (unix_time, t_s, phase, gpu_total_w, cpu_w, cpu_util_pct, ...) as a trace."""
    trace = PowerTrace()
    try:
        text = read_text(csv_path, cap=MAX_READ_BYTES)
    except (OSError, UnsafeFile):
        return trace
    t0: float | None = None
    current: list[Any] | None = None
    for row in csv.DictReader(io.StringIO(text)):
        t = _cell(row, "t_s")
        if t is None:
            continue
        t0 = t if t0 is None else t0
        rel = t - t0
        trace.t.append(rel)
        trace.gpu_w.append(_cell(row, "gpu_total_w"))
        trace.cpu_w.append(_cell(row, "cpu_w"))
        trace.cpu_util.append(_cell(row, "cpu_util_pct"))
        phase = (row.get("phase") or "").strip()
        if current is None or current[0] != phase:
            current = [phase, rel, rel]
            trace.phases.append(current)  # type: ignore[arg-type]
        current[2] = rel
    trace.phases = [(str(n), float(a), float(b)) for n, a, b in trace.phases if n and not n.startswith("_")]
    return trace


def _style(ax: Any) -> None:
    ax.grid(True, color="#e2e8f0", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def loss_figure(curves: LossCurves) -> Figure:
    """One panel per training stage: training loss against step."""
    stages = [s for s in TRAINING_STAGES if curves.stages.get(s)]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(3.0 * max(len(stages), 1) + 0.6, 2.8))
        axes = fig.subplots(1, max(len(stages), 1), squeeze=False)[0]
        for ax, stage in zip(axes, stages):
            steps, losses = zip(*curves.stages[stage])
            ax.plot(steps, losses, color=STAGE_COLORS[stage], linewidth=1.2)
            ax.set_title(stage, fontsize=9, loc="left")
            ax.set_xlabel("step")
            _style(ax)
        axes[0].set_ylabel("training loss")
        fig.tight_layout()
    return fig


def power_figure(trace: PowerTrace) -> Figure:
    """Watts over the run (GPU total and CPU package when measured), else CPU utilisation; phases shaded."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7.6, 2.8))
        ax = fig.add_subplot()
        measured = False
        for series, color, label in ((trace.gpu_w, GPU_COLOR, "GPU total (W)"), (trace.cpu_w, CPU_COLOR, "CPU package (W)")):
            if trace.has(series):
                measured = True
                xs, ys = _points(trace.t, series)
                ax.plot(xs, ys, color=color, linewidth=1.0, label=label)
        if measured:
            ax.set_ylabel("watts")
            ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), ncol=2, fontsize=7, frameon=False)
        else:
            xs, ys = _points(trace.t, trace.cpu_util)
            ax.plot(xs, ys, color=UTIL_COLOR, linewidth=0.9)
            ax.set_ylabel("CPU utilisation (%)")
            ax.set_title("no power meter was readable: CPU utilisation shown instead", fontsize=8, loc="left", color="#475569", pad=14)
        span = (trace.t[-1] if trace.t else 0.0) or 1.0
        for i, (name, start, end) in enumerate(trace.phases):
            if i % 2 == 0:
                ax.axvspan(start / 60.0, end / 60.0, color="#f1f5f9", zorder=0)
            if end - start > 0.07 * span:
                ax.text((start + end) / 120.0, 1.0, name.replace("_", " "), transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=6.5, color="#475569")
        ax.set_xlabel("minutes since the first sample")
        _style(ax)
        fig.tight_layout()
    return fig


def _points(t: Sequence[float], series: Sequence[float | None]) -> tuple[list[float], list[float]]:
    pairs = [(x / 60.0, v) for x, v in zip(t, series) if v is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def save(fig: Figure, path: str | Path | None = None, fmt: str = "png") -> bytes:
    """The figure's bytes (deterministic metadata); also written to ``path`` when given."""
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context(RC):
        fig.savefig(buffer, format=fmt, dpi=110, metadata=metadata, bbox_inches="tight")
    data = buffer.getvalue()
    if path is not None:
        from bench.atomic import write_atomic

        write_atomic(Path(path), data)
    return data


def write_run_plots(run_dir: str | Path) -> dict[str, str]:
    """Write ``loss_curve.png`` and ``power.png`` beside report.md when there is data; returns {kind: file name}."""
    root = Path(run_dir)
    written = {}
    curves = load_loss_curves(root / "progress")
    if curves:
        save(loss_figure(curves), root / LOSS_PNG)
        written["loss"] = LOSS_PNG
    trace = load_power(root / "power.csv")
    if trace:
        save(power_figure(trace), root / POWER_PNG)
        written["power"] = POWER_PNG
    return written
