"""A markdown report card for one run, rendered from its result.json dict (nothing else is read).

Sections: header, the headline triple, per-phase table, scores (CORE / ChatCORE and their tasks),
training metrics, system, pricing with its source, determinism and workload hashes. Missing values
print as ``n/a`` (with the recorded reason where there is one), never as zero.
"""

from __future__ import annotations

from typing import Any, Mapping

from tabulate import tabulate

from bench.cost import headline_score

NA = "n/a"


def _num(value: Any, fmt: str = ".4f") -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return NA if value is None else str(value)
    return format(value, fmt)


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _header(result: Mapping[str, Any]) -> str:
    source = (result.get("system") or {}).get("source") or {}
    commit = source.get("git_commit")
    git = NA if not commit else commit[:12] + (" (dirty)" if source.get("git_dirty") else "")
    lines = [
        f"# nanobench report card: {result.get('run_id', NA)}",
        "",
        f"- Preset: **{result.get('preset', NA)}**",
        f"- Created (UTC): {result.get('created_utc', NA)}",
        f"- nanobench {result.get('nanobench_version', NA)}, git {git}",
        f"- Machine: {(result.get('system') or {}).get('machine_id', NA)}",
    ]
    return "\n".join(lines)


def _triple(result: Mapping[str, Any]) -> str:
    t = result.get("triple") or {}
    label = t.get("core_label", "CORE")
    rows = [
        ["Cost (USD)", _num(t.get("usd"), ",.2f")],
        ["Time (minutes)", _num(t.get("minutes"), ",.1f")],
        [label, _num(t.get("core"))],
        ["ChatCORE", _num(t.get("chatcore"))],
    ]
    return "## Result\n\n" + _table(rows, ["", "value"]) + "\n\nUSD and minutes count only the phases marked counted."


def _phases(result: Mapping[str, Any]) -> str:
    rows, notes = [], []
    total_s = total_usd = 0.0
    total_j: float | None = 0.0
    for p in result.get("phases") or []:
        seconds, energy, usd = p.get("seconds"), p.get("energy_joules"), p.get("usd")
        watts = p.get("avg_power_watts")
        if watts is None and isinstance(energy, (int, float)) and isinstance(seconds, (int, float)) and seconds > 0:
            watts = energy / seconds
        reason = p.get("energy_unavailable_reason") or p.get("unavailable_reason")
        if reason:
            notes.append(f"- {p.get('name')}: energy {p.get('energy_status') or ('n/a' if energy is None else 'note')}: {reason}")
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
    if notes:
        text += "\n\nEnergy notes:\n" + "\n".join(notes)
    return text


def _score_table(title: str, metric: Any, column: str) -> str | None:
    if metric is None:
        return None
    rows = []
    if isinstance(metric, Mapping):
        for task, value in (metric.get("tasks") or {}).items():
            rows.append([task, _num(value.get("score") if isinstance(value, Mapping) else value)])
    label = metric.get("label", title) if isinstance(metric, Mapping) else title
    rows.append([f"**{label}**", _num(headline_score(metric))])
    return f"### {label}\n\n" + _table(rows, ["task", column])


def _scores(metrics: Mapping[str, Any]) -> str | None:
    parts = [
        t
        for t in (
            _score_table("CORE", metrics.get("core"), "centered accuracy"),
            _score_table("ChatCORE", metrics.get("chatcore"), "accuracy"),
        )
        if t
    ]
    return "## Scores\n\n" + "\n\n".join(parts) if parts else None


def _metrics(metrics: Mapping[str, Any]) -> str:
    rows = [
        ["val bpb", _num(metrics.get("val_bpb"))],
        ["tokens/s", _num(metrics.get("tok_per_s"), ",.0f")],
        ["MFU", _num(metrics.get("mfu"), ".4g")],
    ]
    return "## Training metrics\n\n" + _table(rows, ["metric", "value"])


def _system(system: Mapping[str, Any]) -> str:
    cpu = system.get("cpu") or {}
    gpus = system.get("gpus") or {}
    sw = system.get("software") or {}
    devices = gpus.get("devices") or []
    gpu_text = NA
    if devices:
        mem = devices[0].get("memory_bytes")
        gpu_text = f"{len(devices)} x {devices[0].get('name')}" + (f" ({mem / 2**30:.0f} GiB)" if mem else "")
    ram = (system.get("memory") or {}).get("total_bytes")
    rows = [
        ["machine id", system.get("machine_id", NA)],
        ["GPUs", gpu_text],
        ["driver / CUDA", f"{gpus.get('driver_version') or NA} / {gpus.get('cuda_driver_version') or NA}"],
        ["CPU", f"{cpu.get('model') or NA} ({cpu.get('physical_cores') or NA} cores, {cpu.get('logical_cores') or NA} threads)"],
        ["RAM", f"{ram / 2**30:.0f} GiB" if ram else NA],
        ["OS", f"{(system.get('os') or {}).get('name') or NA}, kernel {(system.get('os') or {}).get('kernel') or NA}"],
        ["Python / torch / NCCL", f"{sw.get('python') or NA} / {sw.get('torch') or NA} / {sw.get('nccl') or NA}"],
    ]
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


def render_report(result: Mapping[str, Any]) -> str:
    """The markdown report card of a result.json dict."""
    metrics = result.get("metrics") or {}
    sections = [
        _header(result),
        _triple(result),
        _phases(result),
        _scores(metrics),
        _metrics(metrics),
        _system(result.get("system") or {}),
        _pricing(result.get("pricing") or {}),
        _determinism(result.get("determinism") or {}),
        _workload(result.get("workload") or {}),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"
