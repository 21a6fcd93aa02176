"""SVG charts for the leaderboard (matplotlib, Agg backend, no fonts or files fetched).

- :func:`pareto_svg`: cost (USD) against time (minutes) for one preset, the Pareto frontier
  (no other run is both cheaper and faster) drawn as a staircase, each point annotated with its
  rank and score.
- :func:`phase_breakdown_svg`: minutes and USD per phase for one run; phases that do not count
  toward the triple are drawn hatched and grey.

Only numbers and phase names reach the charts (``$`` escaped so matplotlib never parses mathtext);
submitted labels never do. Output is deterministic (fixed hash salt, no date).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

ACCENT = "#2563eb"
MUTED = "#94a3b8"
FRONTIER = "#dc2626"
TEXT = "#1e293b"
GRID = "#e2e8f0"

_RC = {
    "svg.hashsalt": "nanobench",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.edgecolor": MUTED,
    "axes.labelcolor": TEXT,
    "xtick.color": TEXT,
    "ytick.color": TEXT,
}


def _plain(text: str) -> str:
    return text.replace("$", r"\$")


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (<= on both axes, < on one), sorted by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and oy <= y) and (ox < x or oy < y) for j, (ox, oy) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def _score_text(row: Any) -> str:
    score = "n/a" if row.core is None else f"{row.core:.3f}"
    return f"#{row.rank} {_plain(row.core_label)} {score}"


def pareto_svg(rows: Sequence[Any], title: str) -> str:
    """The cost-vs-time scatter of one board (rows need ``minutes``, ``usd``, ``rank``, ``core``, ``core_label``)."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(8.0, 4.2))
        ax = fig.add_subplot()
        points = [(float(r.minutes), float(r.usd)) for r in rows]
        front = set(pareto_front(points))
        others = [p for i, p in enumerate(points) if i not in front]
        if others:
            ax.scatter(*zip(*others), s=36, color=MUTED, zorder=3, label="dominated")
        front_pts = [points[i] for i in sorted(front, key=lambda i: points[i])]
        if front_pts:
            xs, ys = zip(*front_pts)
            ax.step(xs, ys, where="post", color=FRONTIER, linewidth=1.2, alpha=0.7, zorder=2)
            ax.scatter(xs, ys, s=48, color=FRONTIER, zorder=4, label="Pareto frontier")
        for row, (x, y) in zip(rows, points):
            ax.annotate(_score_text(row), (x, y), textcoords="offset points", xytext=(7, 5), fontsize=8, color=TEXT)
        ax.set_xlabel("time (minutes, counted phases)")
        ax.set_ylabel("cost (USD)")
        ax.set_title(_plain(title), fontsize=10, color=TEXT, loc="left")
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if points:
            _pad(ax, points)
        ax.legend(loc="best", fontsize=7.5, frameon=False)
        return _svg(fig)


def _pad(ax: Any, points: Sequence[tuple[float, float]]) -> None:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    for setter, lo, hi in ((ax.set_xlim, min(xs), max(xs)), (ax.set_ylim, min(ys), max(ys))):
        span = hi - lo or (abs(hi) or 1.0)
        setter(lo - 0.12 * span, hi + 0.3 * span)


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return float(value)


def phase_breakdown_svg(phases: Sequence[Any]) -> str:
    """Two horizontal bar panels (minutes, USD) over the run's phases, in run order."""
    items = [p for p in phases if isinstance(p, dict) and isinstance(p.get("name"), str)]
    names = [_plain(p["name"]) for p in items]
    minutes = [_num(p.get("seconds")) / 60.0 for p in items]
    usd = [_num(p.get("usd")) for p in items]
    counted = [p.get("counted") is True for p in items]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.2, 0.45 * max(len(items), 2) + 1.1))
        axes = fig.subplots(1, 2, sharey=True)
        ys = list(range(len(items)))
        for ax, values, title, fmt in (
            (axes[0], minutes, "time (minutes)", "{:.3g}"),
            (axes[1], usd, "cost (USD)", "${:.3g}"),
        ):
            colors = [ACCENT if c else MUTED for c in counted]
            bars = ax.barh(ys, values, color=colors, height=0.6)
            for bar, c in zip(bars, counted):
                if not c:
                    bar.set_hatch("///")
                    bar.set_edgecolor("white")
            top = max(values, default=0.0) or 1.0
            for y, v in zip(ys, values):
                ax.text(v + top * 0.02, y, fmt.format(v), va="center", fontsize=7.5, color=TEXT)
            ax.set_xlim(0, top * 1.3)
            ax.set_title(title, fontsize=9, color=TEXT, loc="left")
            ax.grid(True, axis="x", color=GRID, linewidth=0.8)
            ax.set_axisbelow(True)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        axes[0].set_yticks(ys, names)
        axes[0].invert_yaxis()
        if not all(counted):
            fig.text(0.01, 0.0, "hatched grey: recorded but not counted in the headline cost/time", fontsize=7, color=MUTED)
        return _svg(fig)
