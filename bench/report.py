"""A markdown report card for one run.

:func:`render_report` renders a result.json dict (plus optional :class:`ReportExtras` read from the
run directory); :func:`write_report` writes ``report.md`` and, beside it, ``loss_curve.png`` and
``power.png`` (see bench.run_plots) *before* the bundle is signed, so the plots are covered by the
manifest.

Sections: header (hardware, validity, wall clock, resume and machine-load flags), the headline
triple, per-phase table (one line per energy problem, not one per phase), the BASE/MID/SFT/RL stage
table, scores (CORE / ChatCORE, totals labelled as centered means, a warning when the examples per
task are too few to mean much), sample generations, plots, training metrics, system, pricing,
determinism and workload hashes. Missing values print as ``n/a`` (with the recorded reason where
there is one), never as zero.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.cost import headline_score
from bench.system_view import hardware_label, system_lines

NA = "n/a"
# Fewer scored examples than this per task and a task's accuracy moves by >= 10 points per answer
# flip; the card says so rather than letting a smoke score pass for a measurement.
MIN_EXAMPLES_PER_TASK = 100
SAMPLE_FILES = {"base": "phases/base_eval/samples.json", "chat": "phases/chat_eval/samples.json"}
MAX_SAMPLES_SHOWN = 5
MAX_SAMPLE_CHARS = 400


@dataclass
class ReportExtras:
    """What the card shows beyond result.json, read from the run directory by :func:`read_extras`."""

    samples: dict[str, list[dict[str, str]] | None] = field(default_factory=dict)  # "base"/"chat" -> list, None = not recorded
    plots: dict[str, str] = field(default_factory=dict)  # "loss"/"power" -> file name beside report.md
    chat_examples: int | None = None  # scored ChatCORE examples in total
    started_unix: float | None = None
    finished_unix: float | None = None


def _num(value: Any, fmt: str = ".4f") -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return NA if value is None else str(value)
    return format(value, fmt)


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _utc(unix: float | None) -> str:
    if unix is None:
        return NA
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _resume_text(result: Mapping[str, Any]) -> str:
    resume = result.get("resume")
    carried = sum(float(p.get("carried_seconds") or 0.0) for p in result.get("phases") or [] if isinstance(p, Mapping))
    if isinstance(resume, Mapping):
        carried = float(resume.get("carried_seconds") or carried)
        resumed = bool(resume.get("resumed"))
    else:
        resumed = carried > 0
    return f"yes, {carried:,.0f} s carried over from the interrupted attempt(s)" if resumed else "no (ran in one go)"


def _conditions_text(result: Mapping[str, Any]) -> str | None:
    cond = result.get("run_conditions")
    if not isinstance(cond, Mapping):
        return None
    if cond.get("busy"):
        reason = cond.get("reason") or cond.get("busy_reason")
        return "**busy machine**: other load during the run" + (f" ({reason})" if reason else "") + "; not ranked"
    return "quiet machine (no competing load recorded)"


def _header(result: Mapping[str, Any], extras: ReportExtras) -> str:
    system = result.get("system") or {}
    source = system.get("source") or {}
    commit = source.get("git_commit")
    git = NA if not commit else commit[:12] + (" (dirty)" if source.get("git_dirty") else "")
    valid = result.get("valid")
    problems = [str(p) for p in result.get("validity_problems") or []]
    valid_text = "n/a" if valid is None else ("**yes**" if valid else "**NO**: " + ("; ".join(problems) or "see determinism"))
    lines = [
        f"# nanobench report card: {result.get('run_id', NA)}",
        "",
        f"- Preset: **{result.get('preset', NA)}**",
        f"- Hardware: **{hardware_label(system)}** (machine id `{system.get('machine_id', NA)}`)",
        f"- Valid: {valid_text}",
        f"- Wall clock: {_utc(extras.started_unix)} to {_utc(extras.finished_unix)}",
        f"- Resumed: {_resume_text(result)}",
    ]
    conditions = _conditions_text(result)
    if conditions:
        lines.append(f"- Machine load: {conditions}")
    lines += [
        f"- Created (UTC): {result.get('created_utc', NA)}",
        f"- nanobench {result.get('nanobench_version', NA)}, git {git}",
    ]
    return "\n".join(lines)


def _triple(result: Mapping[str, Any]) -> str:
    t = result.get("triple") or {}
    label = t.get("core_label", "CORE")
    rows = [
        ["Cost (USD)", _num(t.get("usd"), ",.2f")],
        ["Time (minutes)", _num(t.get("minutes"), ",.1f")],
        [f"{label} (centered)", _num(t.get("core"))],
        ["ChatCORE (centered)", _num(t.get("chatcore"))],
    ]
    return "## Result\n\n" + _table(rows, ["", "value"]) + "\n\nUSD and minutes count only the phases marked counted."


def _energy_notes(phases: list[Mapping[str, Any]]) -> list[str]:
    """One line per distinct energy problem, naming the phases it hit (``all N phases`` when every one)."""
    by_reason: dict[str, list[str]] = {}
    for p in phases:
        reason = p.get("energy_unavailable_reason") or p.get("unavailable_reason")
        if reason:
            status = p.get("energy_status") or ("unavailable" if p.get("energy_joules") is None else "note")
            by_reason.setdefault(f"{status}: {reason}", []).append(str(p.get("name")))
    notes = []
    for text, names in by_reason.items():
        where = f"all {len(names)} phases" if len(names) == len(phases) and len(names) > 1 else ", ".join(names)
        notes.append(f"- energy {text} ({where})")
    return notes


def _phases(result: Mapping[str, Any]) -> str:
    rows = []
    phases = [p for p in result.get("phases") or [] if isinstance(p, Mapping)]
    total_s = total_usd = 0.0
    total_j: float | None = 0.0
    for p in phases:
        seconds, energy, usd = p.get("seconds"), p.get("energy_joules"), p.get("usd")
        watts = p.get("avg_power_watts")
        if watts is None and isinstance(energy, (int, float)) and isinstance(seconds, (int, float)) and seconds > 0:
            watts = energy / seconds
        rows.append(
            [
                p.get("name", NA),
                _num(seconds, ",.1f"),
                _num(seconds / 60 if isinstance(seconds, (int, float)) else None, ",.2f"),
                _num(energy / 1000 if isinstance(energy, (int, float)) else None, ",.2f"),
                _num(watts, ",.0f"),
                _num(usd, ",.4f"),
                "yes" if p.get("counted") else "no",
            ]
        )
        if p.get("counted"):
            total_s += seconds or 0.0
            total_usd += usd or 0.0
            total_j = None if energy is None or total_j is None else total_j + energy
    rows.append(
        [
            "**total (counted)**",
            _num(total_s, ",.1f"),
            _num(total_s / 60, ",.2f"),
            _num(total_j / 1000 if total_j is not None else None, ",.2f"),
            "",
            _num(total_usd, ",.4f"),
            "",
        ]
    )
    text = "## Phases\n\n" + _table(rows, ["phase", "seconds", "minutes", "energy kJ", "avg W", "USD", "counted"])
    notes = _energy_notes(phases)
    if notes:
        text += "\n\nEnergy notes:\n" + "\n".join(notes)
    return text


def _stage_table(metrics: Mapping[str, Any]) -> str:
    """Metrics per model stage, in the columns nanochat's report uses (BASE, MID, SFT, RL)."""
    stages = ["BASE", "MID", "SFT", "RL"]
    mid = metrics.get("mid_train") if isinstance(metrics.get("mid_train"), Mapping) else {}
    sft = metrics.get("sft") if isinstance(metrics.get("sft"), Mapping) else {}
    core = metrics.get("core")
    chat = metrics.get("chatcore") if isinstance(metrics.get("chatcore"), Mapping) else {}
    chat_col = {"base": "BASE", "mid": "MID", "sft": "SFT", "rl": "RL"}.get(str(chat.get("source") or "sft").lower(), "SFT")
    dash = "-"

    def row(name: str, values: Mapping[str, Any], fmt: str = ".4f") -> list[str]:
        return [name] + [_num(values[s], fmt) if values.get(s) is not None else dash for s in stages]

    rows = [
        row("val bpb", {"BASE": metrics.get("val_bpb"), "MID": mid.get("val_bpb")}),
        row("final train loss", {"MID": mid.get("final_loss"), "SFT": sft.get("final_loss")}),
        row("SFT val loss", {"SFT": sft.get("val_loss")}),
        row("CORE (centered)", {"BASE": headline_score(core) if core is not None else None}),
    ]
    for task, value in (chat.get("tasks") or {}).items():
        score = value.get("score") if isinstance(value, Mapping) else value
        rows.append(row(f"{task} (accuracy)", {chat_col: score}))
    if chat:
        rows.append(row("ChatCORE (centered)", {chat_col: chat.get("score")}))
    return ("## Stages\n\n" + _table(rows, ["metric", *stages])
            + "\n\n`-`: not measured at that stage (the RL column is filled only by presets that run the `rl` stage, e.g. `speedrun-rl`).")


def _task_counts(metric: Any) -> dict[str, int]:
    details = metric.get("task_details") if isinstance(metric, Mapping) else None
    counts = {}
    for task, info in (details or {}).items():
        n = info.get("n") if isinstance(info, Mapping) else None
        if isinstance(n, int) and not isinstance(n, bool):
            counts[task] = n
    return counts


def _score_table(title: str, metric: Any, column: str, per_task_n: Mapping[str, int]) -> str | None:
    if metric is None:
        return None
    rows = []
    if isinstance(metric, Mapping):
        for task, value in (metric.get("tasks") or {}).items():
            n = per_task_n.get(task)
            rows.append([task, _num(value.get("score") if isinstance(value, Mapping) else value), NA if n is None else str(n)])
    label = metric.get("label", title) if isinstance(metric, Mapping) else title
    rows.append([f"**{label} (centered mean)**", _num(headline_score(metric)), ""])
    return f"### {label}\n\n" + _table(rows, ["task", column, "examples"])


def _few_examples_warning(counts: Mapping[str, int], what: str) -> str | None:
    if not counts:
        return None
    low = min(counts.values())
    if low >= MIN_EXAMPLES_PER_TASK:
        return None
    return (f"> **Warning:** {what} scored as few as {low} example(s) per task (fewer than {MIN_EXAMPLES_PER_TASK}); "
            f"one answer moves a task's accuracy by {100 / max(low, 1):.0f} points, so these scores say little about the model.")


def _scores(metrics: Mapping[str, Any], extras: ReportExtras) -> str | None:
    core, chat = metrics.get("core"), metrics.get("chatcore")
    core_n = _task_counts(core)
    chat_tasks = list((chat.get("tasks") or {}) if isinstance(chat, Mapping) else {})
    chat_n = _task_counts(chat)
    if not chat_n and chat_tasks and extras.chat_examples:
        per = extras.chat_examples // len(chat_tasks)
        chat_n = {t: per for t in chat_tasks}
    parts = [
        t
        for t in (
            _score_table("CORE", core, "centered accuracy", core_n),
            _few_examples_warning(core_n, "CORE") if core is not None else None,
            _score_table("ChatCORE", chat, "accuracy", chat_n),
            _few_examples_warning(chat_n, "ChatCORE") if chat is not None else None,
        )
        if t
    ]
    return "## Scores\n\n" + "\n\n".join(parts) if parts else None


def _one_line(text: Any, limit: int = MAX_SAMPLE_CHARS) -> str:
    """One table cell: whitespace folded, cut at ``limit``, pipes escaped so the row stays one row."""
    flat = " ".join(str(text).split())
    flat = flat if len(flat) <= limit else flat[: limit - 3] + "..."
    return flat.replace("\\", "\\\\").replace("|", "\\|")


def _samples(extras: ReportExtras) -> str:
    parts = ["## Sample generations"]
    for key, title in (("base", "Base model"), ("chat", "Chat model")):
        samples = extras.samples.get(key)
        if not samples:
            parts.append(f"{title}: not recorded.")
            continue
        rows = [[_one_line(s.get("prompt", ""), 120), _one_line(s.get("completion", ""))] for s in samples[:MAX_SAMPLES_SHOWN]]
        parts.append(f"### {title}\n\n" + _table(rows, ["prompt", "completion"]))
    return "\n\n".join(parts)


def _plots(extras: ReportExtras) -> str:
    lines = ["## Plots", ""]
    for key, title in (("loss", "Training loss per stage"), ("power", "Power over time")):
        name = extras.plots.get(key)
        lines.append(f"- {title}: ![{title}]({name})" if name else f"- {title}: not recorded")
    return "\n".join(lines)


def _metrics(metrics: Mapping[str, Any]) -> str:
    rows = [
        ["val bpb", _num(metrics.get("val_bpb"))],
        ["tokens/s", _num(metrics.get("tok_per_s"), ",.0f")],
        ["MFU", _num(metrics.get("mfu"), ".4g")],
    ]
    return "## Training metrics\n\n" + _table(rows, ["metric", "value"])


def _system(system: Mapping[str, Any]) -> str:
    rows = [[label, text] for label, text in system_lines(system)]
    return "## System\n\n" + _table(rows, ["", ""])


def _pricing(pricing: Mapping[str, Any]) -> str:
    energy = pricing.get("energy_price_usd_per_kwh")
    rows = [
        ["hourly rate (USD)", _num(pricing.get("hourly_rate_usd"), ",.2f")],
        ["kind", pricing.get("price_kind", NA)],
        ["source", pricing.get("price_source", NA)],
        ["captured on", pricing.get("captured_on", NA)],
        ["energy price (USD/kWh)", "not charged" if energy is None else _num(energy, ".4f")],
    ]
    return "## Pricing\n\n" + _table(rows, ["", ""])


def _determinism(det: Mapping[str, Any]) -> str:
    rows = [["class", det.get("class", "not_checked")]]
    rows += [[k, v] for k, v in det.items() if k != "class" and not isinstance(v, (dict, list))]
    return "## Determinism\n\n" + _table(rows, ["", ""])


def _workload(workload: Mapping[str, Any]) -> str:
    rows = []
    for key, value in workload.items():
        if isinstance(value, Mapping):
            rows += [[f"{key}/{k}", _short(v)] for k, v in value.items()]
        else:
            rows.append([key, _short(value)])
    return "## Workload\n\n" + _table(rows, ["item", "value"])


def _short(value: Any) -> str:
    text = NA if value is None else str(value)
    return text[:16] + "..." if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def render_report(result: Mapping[str, Any], extras: ReportExtras | None = None) -> str:
    """The markdown report card of a result.json dict (``extras``: what was read beside it)."""
    extras = extras or ReportExtras()
    metrics = result.get("metrics") or {}
    sections = [
        _header(result, extras),
        _triple(result),
        _phases(result),
        _stage_table(metrics),
        _scores(metrics, extras),
        _samples(extras),
        _plots(extras),
        _metrics(metrics),
        _system(result.get("system") or {}),
        _pricing(result.get("pricing") or {}),
        _determinism(result.get("determinism") or {}),
        _workload(result.get("workload") or {}),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _read_samples(path: Path) -> list[dict[str, str]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, list):
        return None
    good = [{"prompt": str(d["prompt"]), "completion": str(d["completion"])} for d in data
            if isinstance(d, Mapping) and "prompt" in d and "completion" in d]
    return good or None


def _wall_clock(run_dir: Path) -> tuple[float | None, float | None]:
    """First and last event time over ``progress/*.jsonl`` (unix seconds)."""
    times: list[float] = []
    for path in sorted((run_dir / "progress").glob("*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for ordered in (lines, lines[::-1]):  # the first and the last readable event (a torn tail is skipped)
            for line in ordered:
                try:
                    ms = json.loads(line).get("time_ms")
                except (ValueError, AttributeError):
                    continue
                if isinstance(ms, (int, float)) and not isinstance(ms, bool):
                    times.append(ms / 1000.0)
                    break
    return (min(times), max(times)) if times else (None, None)


def read_extras(run_dir: str | Path, plots: Mapping[str, str] | None = None) -> ReportExtras:
    """Samples, chat example count and wall clock from a run directory (missing pieces stay empty)."""
    root = Path(run_dir)
    chat_examples = None
    try:
        chat_result = json.loads((root / "phases" / "chat_eval" / "result.json").read_text(encoding="utf-8"))
        if isinstance(chat_result, dict) and isinstance(chat_result.get("examples"), int):
            chat_examples = chat_result["examples"]
    except (OSError, ValueError):
        pass
    started, finished = _wall_clock(root)
    return ReportExtras(
        samples={key: _read_samples(root / rel) for key, rel in SAMPLE_FILES.items()},
        plots=dict(plots or {}),
        chat_examples=chat_examples,
        started_unix=started,
        finished_unix=finished,
    )


def write_report(run_dir: str | Path, result: Mapping[str, Any]) -> Path:
    """Write the plots (PNG) and ``report.md`` into ``run_dir``; call before the bundle is signed."""
    from bench.atomic import write_atomic
    from bench.run_plots import write_run_plots

    root = Path(run_dir)
    try:
        plots = write_run_plots(root)
    except Exception as exc:  # noqa: BLE001 - a chart must never cost a run its report card
        plots = {}
        note = f"\n\nPlots could not be drawn: {type(exc).__name__}: {exc}\n"
    else:
        note = ""
    path = root / "report.md"
    write_atomic(path, render_report(result, read_extras(root, plots)) + note)
    return path
