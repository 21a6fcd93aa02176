"""Build the static leaderboard site from ``submissions/``.

Output (every link relative, so it works from ``file://`` and any static host; nothing fetched):

- ``index.html``: one board per preset (rows by USD), its Pareto plot, filters, the excluded list;
- ``s/<preset>/<run>/index.html``: a page per submission (report card, phase chart, system,
  raw files under ``files/``);
- ``excluded.html``; ``leaderboard.json`` and ``leaderboard.csv`` (the same rows, same order);
- ``plots/pareto-<preset>.svg``, ``static/`` (CSS and the filter script).

The site is built in a temporary directory next to ``out`` and swapped in at the end. An existing
``out`` is only replaced when it is empty or an earlier build made it (it holds the marker file).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bench import __version__
from bench.leaderboard import plots
from bench.leaderboard.markdown import render_markdown
from bench.leaderboard.model import Board, Entry, Excluded, assign_ranks, collect
from bench.safe_read import UnsafeFile, read_bytes
from bench.system_view import system_lines

ROOT = Path(__file__).resolve().parents[2] / "leaderboard"
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
MARKER = ".nanobench-site"
# Raw bundle files are published under their own name only when the suffix is one of these plain-text
# kinds (an allow-list: .xht, .svg, .html ... would be served as active content); any other name gets
# ``.txt`` appended so every static host serves it as text.
TEXT_SUFFIXES = frozenset({".json", ".jsonl", ".csv", ".md", ".txt", ".log"})
RAW_FILE_CAP = 32 * 2**20  # a raw file above this is listed, not published
# Report-card sections the submission page already shows natively (kept out of the rendered card).
PAGE_SECTIONS = frozenset({"Result", "Phases", "System", "Pricing", "Workload", "Plots"})
CSV_FIELDS = [
    "preset", "rank", "run_id", "usd", "minutes", "core", "core_label", "chatcore", "hardware", "machine_id",
    "gpus", "gpu_model", "price_kind", "price_source", "hourly_rate_usd", "energy_kwh", "determinism",
    "signature", "key_fingerprint", "pins", "availability", "label", "created_utc", "page",
]


class SiteError(Exception):
    """The site cannot be written (for instance ``out`` is a directory this builder did not make)."""


@dataclass
class BuildReport:
    out_dir: Path
    boards: list[Board]
    excluded: list[Excluded]

    @property
    def rows(self) -> int:
        return sum(len(b.entries) for b in self.boards)


# ---------------------------------------------------------------- formatting filters


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "$0.00"
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.3g}"


def fmt_minutes(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def fmt_score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def fmt_kwh(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def fmt_bytes(value: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def url_host(url: str) -> str:
    """The host part of a URL, for short link text."""
    return urlsplit(url).netloc or url


def make_env(templates_dir: Path = TEMPLATES_DIR) -> Environment:
    """Jinja environment: autoescape on for everything, undefined names are errors."""
    env = Environment(loader=FileSystemLoader(str(templates_dir)), autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(usd=fmt_usd, minutes=fmt_minutes, score=fmt_score, kwh=fmt_kwh, filesize=fmt_bytes, host=url_host)
    return env


# ---------------------------------------------------------------- machine-readable outputs


def _csv_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in submitted text (a leading = + - @ becomes literal)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def leaderboard_json(boards: list[Board], excluded: list[Excluded]) -> dict[str, Any]:
    return {
        "nanobench_version": __version__,
        "boards": [{"preset": b.preset, "rows": [r.to_dict() for r in b.rows]} for b in boards],
        "excluded": [e.to_dict() for e in excluded],
    }


def leaderboard_csv(boards: list[Board]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for board in boards:
        for row in board.rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.to_dict().items()})
    return buffer.getvalue()


# ---------------------------------------------------------------- page pieces


def flatten(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """``(dotted key, text)`` pairs of a nested JSON value, for the system description table."""
    if isinstance(value, dict) and depth < 6:
        out = []
        for key, sub in value.items():
            out += flatten(sub, f"{prefix}.{key}" if prefix else str(key), depth + 1)
        return out or [(prefix, "{}")]
    if isinstance(value, list) and depth < 6 and all(isinstance(v, dict) for v in value) and value:
        if len(value) > 1 and all(v == value[0] for v in value):  # eight identical GPUs: one block
            return flatten(value[0], f"{prefix}[0-{len(value) - 1}]", depth + 1)
        out = []
        for i, sub in enumerate(value):
            out += flatten(sub, f"{prefix}[{i}]", depth + 1)
        return out
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = "n/a" if value is None else str(value)
    return [(prefix, text if len(text) <= 500 else text[:500] + "...")]


def safe_file_name(rel: str) -> str:
    """Where a raw bundle file goes under ``files/``: anything but a plain-text suffix gets ``.txt``."""
    return rel if Path(rel).suffix.lower() in TEXT_SUFFIXES else rel + ".txt"


def _copy_files(entry: Entry, dest: Path) -> list[dict[str, Any]]:
    """Publish the bundle's files: only regular files (read without following links), capped in size."""
    links = []
    for rel in entry.files:
        src = entry.path / rel
        target_rel = safe_file_name(rel)
        try:
            data = read_bytes(src, cap=RAW_FILE_CAP)
        except UnsafeFile:
            continue  # a link, special file or an oversized file is never published
        target = dest / "files" / target_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        links.append({"name": rel, "href": "files/" + target_rel, "size": len(data)})
    return links


def _phase_rows(entry: Entry) -> list[dict[str, Any]]:
    rows = []
    for p in entry.result.get("phases") or []:
        if not isinstance(p, dict):
            continue
        seconds = p.get("seconds") if isinstance(p.get("seconds"), (int, float)) else None
        energy = p.get("energy_joules") if isinstance(p.get("energy_joules"), (int, float)) else None
        rows.append(
            {
                "name": str(p.get("name")),
                "minutes": None if seconds is None else seconds / 60.0,
                "kwh": None if energy is None else energy / 3.6e6,
                "usd": p.get("usd") if isinstance(p.get("usd"), (int, float)) else None,
                "counted": p.get("counted") is True,
            }
        )
    return rows


def _filter_options(boards: list[Board]) -> dict[str, list[str]]:
    rows = [r for b in boards for r in b.rows]
    dates = sorted({r.date for r in rows if r.date})
    return {
        "hardware": sorted({r.hardware for r in rows}, key=str.lower),
        "gpus": [str(n) for n in sorted({r.gpus for r in rows})],
        "price_kind": sorted({r.price_kind for r in rows}),
        "preset": [b.preset for b in boards],
        "availability": sorted({r.availability or "unspecified" for r in rows}),
        "date_min": dates[:1],
        "date_max": dates[-1:],
    }


# ---------------------------------------------------------------- the build


def _prepare_out(out: Path) -> Path:
    if out.exists():
        if not out.is_dir():
            raise SiteError(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise SiteError(f"{out} is not empty and was not made by `nanobench leaderboard build`; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.building-{secrets.token_hex(4)}"
    staging.mkdir()
    return staging


def _swap_in(staging: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    if out.exists():
        os.rename(out, old)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_submission_page(env: Environment, site: Path, board: Board, entry: Entry) -> None:
    dest = site / "s" / board.slug / entry.slug
    dest.mkdir(parents=True, exist_ok=True)
    files = _copy_files(entry, dest)
    chart = None
    try:
        (dest / "phases.svg").write_text(plots.phase_breakdown_svg(entry.result.get("phases") or []), encoding="utf-8")
        chart = "phases.svg"
    except Exception as exc:  # noqa: BLE001 - a chart must never drop a verified submission
        chart_error = f"{type(exc).__name__}: {exc}"
    else:
        chart_error = None
    report_html = render_markdown(entry.report_md, skip_sections=PAGE_SECTIONS) if entry.report_md is not None else None
    run_charts = plots.run_charts(entry.path, dest)
    page = env.get_template("submission.html.j2").render(
        root="../../../",
        title=f"{entry.row.run_id} ({board.preset})",
        board=board,
        entry=entry,
        row=entry.row,
        phases=_phase_rows(entry),
        chart=chart,
        chart_error=chart_error,
        report_html=report_html,
        system_rows=flatten(entry.system),
        system_lines=system_lines(entry.system),
        run_charts=run_charts,
        workload_rows=flatten(entry.result.get("workload") or {}),
        files=files,
        version=__version__,
    )
    (dest / "index.html").write_text(page, encoding="utf-8")


def build_site(
    submissions_dir: str | os.PathLike[str] = "submissions",
    out_dir: str | os.PathLike[str] = "leaderboard/site",
    *,
    pins: Mapping[str, Any] | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    static_dir: str | os.PathLike[str] | None = None,
    registry: Any = None,
    rank_rules: bool = True,
) -> BuildReport:
    """Verify every submission and write the site to ``out_dir``; returns what went on the boards.

    ``registry``: the :class:`~bench.key_registry.KeyRegistry` of trusted signers (default:
    ``<submissions_dir>/keys``); rows signed by other keys are listed as excluded.
    """
    out = Path(out_dir)
    env = make_env(Path(templates_dir) if templates_dir else TEMPLATES_DIR)
    boards, excluded = collect(submissions_dir, pins, registry, rank_rules=rank_rules)
    staging = _prepare_out(out)
    try:
        (staging / MARKER).write_text("built by nanobench leaderboard build\n", encoding="utf-8")
        shutil.copytree(Path(static_dir) if static_dir else STATIC_DIR, staging / "static")
        (staging / "plots").mkdir()
        kept: list[Board] = []
        for board in boards:
            good = []
            for entry in board.entries:
                try:
                    _write_submission_page(env, staging, board, entry)
                    good.append(entry)
                except Exception as exc:  # noqa: BLE001 - a page that cannot be written leaves the board, with the reason
                    shutil.rmtree(staging / "s" / board.slug / entry.slug, ignore_errors=True)
                    excluded.append(Excluded(f"{entry.path.parent.name}/{entry.path.name}", f"page could not be built: {type(exc).__name__}: {exc}"))
            if not good:
                continue
            assign_ranks(good)
            board.entries = good
            (staging / "plots" / f"pareto-{board.slug}.svg").write_text(
                plots.pareto_svg(board.rows, f"{board.preset}: score vs cost"), encoding="utf-8"
            )
            (staging / "plots" / f"time-{board.slug}.svg").write_text(
                plots.score_svg(board.rows, x="minutes", title=f"{board.preset}: score vs time"), encoding="utf-8"
            )
            kept.append(board)
        context = {"boards": kept, "excluded": excluded, "filters": _filter_options(kept), "version": __version__, "pins_given": pins is not None}
        (staging / "index.html").write_text(env.get_template("index.html.j2").render(root="", title="nanobench leaderboard", **context), encoding="utf-8")
        (staging / "excluded.html").write_text(
            env.get_template("excluded.html.j2").render(root="", title="Excluded submissions", **context), encoding="utf-8"
        )
        (staging / "leaderboard.json").write_text(json.dumps(leaderboard_json(kept, excluded), indent=2) + "\n", encoding="utf-8")
        (staging / "leaderboard.csv").write_text(leaderboard_csv(kept), encoding="utf-8")
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildReport(out, kept, excluded)

