"""SVG charts for the leaderboard (matplotlib, Agg backend, no fonts or files fetched).

- :func:`pareto_svg` / :func:`score_svg`: score against cost (log scale) or time (log scale) for
  one preset, the Pareto frontier (no other run is both cheaper/faster and better scored) drawn as
  a staircase, each point annotated with its rank.
- :func:`phase_breakdown_svg`: minutes and USD per phase for one run; phases that do not count
  toward the triple are drawn hatched and grey.

Only numbers and phase names reach the charts (``$`` escaped so matplotlib never parses mathtext);
submitted labels never do. Output is deterministic (fixed hash salt, no date).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import logging

logging.getLogger("matplotlib").setLevel(logging.ERROR)  # no font-cache WARNING on the first build

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

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


def _tick(value: float, *, money: bool) -> str:
    """Plain tick text on a log axis (``$0.01``, ``2``, ``500``), never ``2x10^1``."""
    text = f"{value:,.0f}" if value >= 10 else f"{value:.3g}"
    return _plain(("$" if money else "") + text)


def scored_rows(rows: Sequence[Any]) -> tuple[list[Any], str | None]:
    """Rows with a CORE score, and the board's main score label (the most common one)."""
    scored = [r for r in rows if r.core is not None]
    labels = [r.core_label for r in scored]
    main = max(dict.fromkeys(labels), key=labels.count) if labels else None
    return scored, main


def score_svg(rows: Sequence[Any], *, x: str, title: str) -> str:
    """Score (CORE, up is better) against cost or time (``x`` = ``usd`` or ``minutes``, log scale, left is better).

    The frontier (red) joins the runs no other run beats on both axes among those sharing the board's
    main score label; runs scored with another label are drawn hollow (their scores are not comparable).
    """
    scored, main = scored_rows(rows)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(5.2, 3.9))
        ax = fig.add_subplot()
        same = [r for r in scored if r.core_label == main]
        other = [r for r in scored if r.core_label != main]
        pts = [(max(float(getattr(r, x)), 1e-6), float(r.core)) for r in same]
        front = pareto_front([(px, -py) for px, py in pts])
        dominated = [p for i, p in enumerate(pts) if i not in front]
        if dominated:
            ax.scatter(*zip(*dominated), s=36, color=MUTED, zorder=3, label="beaten on both axes")
        if front:
            fx, fy = zip(*(pts[i] for i in front))
            ax.step(fx, fy, where="post", color=FRONTIER, linewidth=1.2, alpha=0.7, zorder=2)
            ax.scatter(fx, fy, s=48, color=FRONTIER, zorder=4, label="Pareto frontier")
        if other:
            ax.scatter([max(float(getattr(r, x)), 1e-6) for r in other], [float(r.core) for r in other], s=40,
                       facecolors="none", edgecolors=ACCENT, zorder=3, label="other score label (not comparable)")
        spots: dict[tuple[float, float], list[str]] = {}
        for r in scored:  # runs at the same spot share one label ("#1, #2"), never overprinted
            spot = (round(math.log10(max(float(getattr(r, x)), 1e-6)), 2), round(float(r.core), 4))
            spots.setdefault(spot, []).append(f"#{r.rank}" if r.rank else "time only")
        for (lx, ly), names in spots.items():
            ax.annotate(", ".join(names), (10 ** lx, ly), textcoords="offset points", xytext=(6, 4), fontsize=8, color=TEXT)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _tick(v, money=x == "usd")))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("cost (USD, log scale)" if x == "usd" else "time (minutes, log scale)")
        ax.set_ylabel(f"score ({_plain(main)}, centered)" if main else "score")
        ax.set_title(_plain(title), fontsize=10, color=TEXT, loc="left")
        ax.grid(True, which="both", color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if scored:
            xs = [max(float(getattr(r, x)), 1e-6) for r in scored]
            ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
            ys = [float(r.core) for r in scored]
            span = (max(ys) - min(ys)) or 0.05
            ax.set_ylim(min(ys) - 0.2 * span, max(ys) + 0.25 * span)
            ax.legend(loc="lower right", fontsize=7, frameon=False)
        else:
            ax.text(0.5, 0.5, "no run on this board has a score", transform=ax.transAxes, ha="center", color=MUTED)
        return _svg(fig)


def pareto_svg(rows: Sequence[Any], title: str) -> str:
    """The cost-vs-score Pareto chart of one board (log cost); see :func:`score_svg`."""
    return score_svg(rows, x="usd", title=title)


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


def run_charts(bundle: Path, dest: Path) -> dict[str, dict[str, str | None]]:
    """``loss.svg`` (from ``progress/``) and ``power.svg`` (from ``power.csv``) of one submission into ``dest``.

    Returns ``{"loss": {"src": file or None, "note": why not}, "power": {...}}``; a chart that
    cannot be drawn never drops the submission.
    """
    from bench import run_plots

    charts: dict[str, dict[str, str | None]] = {}
    jobs = (
        ("loss", "loss.svg", lambda: run_plots.load_loss_curves(bundle / "progress"), run_plots.loss_figure,
         "no training steps recorded under progress/"),
        ("power", "power.svg", lambda: run_plots.load_power(bundle / "power.csv"), run_plots.power_figure,
         "no readings in power.csv"),
    )
    for kind, name, load, draw, empty in jobs:
        try:
            data = load()
            if not data:
                charts[kind] = {"src": None, "note": empty}
                continue
            (dest / name).write_bytes(run_plots.save(draw(data), fmt="svg"))
            charts[kind] = {"src": name, "note": None}
        except Exception as exc:  # noqa: BLE001 - a chart must never drop a verified submission
            charts[kind] = {"src": None, "note": f"could not be drawn: {type(exc).__name__}: {exc}"}
    return charts
