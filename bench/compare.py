"""Side-by-side comparison of runs: the triple, per-phase time/energy/cost, throughput and scores.

Each input is a run directory, a submission directory, a ``result.json``-shaped file (such as a
forecast) or a submission id ``<preset>/<run_id>``. Every metric row carries one value per input
and, for every input after the first, its ratio to the first (``None`` where either side is
missing or the first is zero). Scores with different labels (``CORE`` vs ``CORE-offline-18``) get
separate rows, so no ratio ever mixes two different evaluations. Forecasts are marked in the
column header.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.submission import SubmissionError, is_forecast, load_meta, resolve_ref

FORMATS = ("table", "csv", "json", "markdown")
NA = "n/a"
JOULES_PER_KWH = 3.6e6


class CompareError(ValueError):
    """An input cannot be read as a result."""


@dataclass(frozen=True)
class CompareEntry:
    """One compared result and the column header it gets."""

    name: str
    source: str
    result: Mapping[str, Any]
    forecast: bool
    label: str | None = None


@dataclass
class MetricRow:
    metric: str
    unit: str
    values: list[float | None]
    ratios: list[float | None] = field(default_factory=list)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _score(metric: Any) -> float | None:
    return _number(metric.get("score") if isinstance(metric, Mapping) else metric)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def load_entry(ref: str, submissions_dir: str | os.PathLike[str] = "submissions") -> CompareEntry:
    """Read one input (see the module docstring); raises :class:`CompareError` when it cannot."""
    try:
        path = resolve_ref(ref, submissions_dir)
    except SubmissionError as exc:
        raise CompareError(str(exc)) from exc
    result_path = path / "result.json" if path.is_dir() else path
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CompareError(f"{ref}: {result_path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise CompareError(f"{ref}: cannot read {result_path}: {exc}") from exc
    if not isinstance(result, dict):
        raise CompareError(f"{ref}: {result_path} is not a JSON object")
    meta, _ = load_meta(path) if path.is_dir() else ({}, None)
    forecast = is_forecast(result)
    label = meta.get("label")
    name = str(result.get("run_id") or path.name)
    if forecast:
        name = f"FORECAST {name}"
    return CompareEntry(name=name, source=str(path), result=result, forecast=forecast, label=label)


def _unique_names(entries: Sequence[CompareEntry]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for e in entries:
        seen[e.name] = seen.get(e.name, 0) + 1
        names.append(e.name if seen[e.name] == 1 else f"{e.name} #{seen[e.name]}")
    return names


def _phases(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    phases = result.get("phases")
    return [p for p in phases if isinstance(p, Mapping) and isinstance(p.get("name"), str)] if isinstance(phases, list) else []


def _counted_energy_kwh(result: Mapping[str, Any]) -> float | None:
    phases = [p for p in _phases(result) if p.get("counted") is True]
    if not phases:
        return None
    joules = [_number(p.get("energy_joules")) for p in phases]
    return None if any(j is None for j in joules) else sum(joules) / JOULES_PER_KWH  # type: ignore[arg-type]


def _ratio(value: float | None, first: float | None) -> float | None:
    if value is None or first is None or first == 0:
        return None
    return value / first


def comparison_rows(entries: Sequence[CompareEntry]) -> list[MetricRow]:
    """The metric rows, each with one value per entry and ratios against the first entry."""
    results = [e.result for e in entries]
    triples = [_dict(r.get("triple")) for r in results]
    metrics = [_dict(r.get("metrics")) for r in results]
    rows = [
        MetricRow("cost", "USD", [_number(t.get("usd")) for t in triples]),
        MetricRow("time", "minutes", [_number(t.get("minutes")) for t in triples]),
    ]
    labels = [str(t.get("core_label") or _dict(m.get("core")).get("label") or "CORE") for t, m in zip(triples, metrics)]
    for label in dict.fromkeys(labels):
        rows.append(
            MetricRow(label, "score", [
                (_number(t.get("core")) if "core" in t else _score(m.get("core"))) if lab == label else None
                for t, m, lab in zip(triples, metrics, labels)
            ])
        )
    rows += [
        MetricRow("ChatCORE", "score", [_number(t.get("chatcore")) if "chatcore" in t else _score(m.get("chatcore")) for t, m in zip(triples, metrics)]),
        MetricRow("val_bpb", "bits/byte", [_number(m.get("val_bpb")) for m in metrics]),
        MetricRow("throughput", "tok/s", [_number(m.get("tok_per_s")) for m in metrics]),
        MetricRow("MFU", "fraction", [_number(m.get("mfu")) for m in metrics]),
        MetricRow("energy (counted)", "kWh", [_counted_energy_kwh(r) for r in results]),
    ]
    phase_names = list(dict.fromkeys(p["name"] for r in results for p in _phases(r)))
    for phase in phase_names:
        found = [next((p for p in _phases(r) if p["name"] == phase), None) for r in results]
        seconds = [_number(p.get("seconds")) if p else None for p in found]
        energy = [_number(p.get("energy_joules")) if p else None for p in found]
        rows += [
            MetricRow(f"{phase} time", "minutes", [None if s is None else s / 60.0 for s in seconds]),
            MetricRow(f"{phase} energy", "kWh", [None if j is None else j / JOULES_PER_KWH for j in energy]),
            MetricRow(f"{phase} cost", "USD", [_number(p.get("usd")) if p else None for p in found]),
        ]
    for row in rows:
        row.ratios = [_ratio(v, row.values[0]) for v in row.values]
    return rows


def format_value(value: float | None) -> str:
    """Readable number: ``n/a`` for missing, thousands separators for big values, 4 significant digits otherwise."""
    if value is None:
        return NA
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def format_ratio(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value:.2f}x" if 0.01 <= abs(value) < 1000 else f"{value:.3g}x"


def _ratio_header(name: str) -> str:
    return f"{name} ratio"


def to_dataframe(entries: Sequence[CompareEntry], *, formatted: bool = False) -> Any:
    """A pandas DataFrame: ``metric``, ``unit``, then each entry's value followed by its ratio column."""
    import pandas as pd

    names = _unique_names(entries)
    records = []
    for row in comparison_rows(entries):
        record: dict[str, Any] = {"metric": row.metric, "unit": row.unit}
        for i, name in enumerate(names):
            record[name] = format_value(row.values[i]) if formatted else row.values[i]
            if i > 0:
                header = _ratio_header(name)
                record[header] = format_ratio(row.ratios[i]) if formatted else row.ratios[i]
        records.append(record)
    return pd.DataFrame.from_records(records)


def to_json(entries: Sequence[CompareEntry]) -> dict[str, Any]:
    """JSON-ready comparison: the entries, then rows with ``values`` and ``ratios`` lists in entry order."""
    names = _unique_names(entries)
    return {
        "baseline": names[0] if names else None,
        "entries": [
            {
                "name": name,
                "source": e.source,
                "run_id": e.result.get("run_id"),
                "preset": e.result.get("preset"),
                "kind": "forecast" if e.forecast else "measured",
                "label": e.label,
            }
            for name, e in zip(names, entries)
        ],
        "rows": [
            {"metric": r.metric, "unit": r.unit, "values": r.values, "ratios": r.ratios} for r in comparison_rows(entries)
        ],
    }


def _rich_table(entries: Sequence[CompareEntry]) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    names = _unique_names(entries)
    table = Table(title="nanobench compare (ratios against the first column)", show_lines=False)
    table.add_column("metric", style="bold")
    table.add_column("unit", style="dim")
    for i, (name, entry) in enumerate(zip(names, entries)):
        header = Text(name + (f"\n{entry.label}" if entry.label else ""))  # Text: no rich markup from submitted strings
        table.add_column(header, justify="right", style="yellow" if entry.forecast else None)
        if i > 0:
            table.add_column(Text(f"vs {names[0]}"), justify="right", style="cyan")
    for row in comparison_rows(entries):
        cells: list[Any] = [Text(row.metric), row.unit]
        for i in range(len(entries)):
            cells.append(format_value(row.values[i]))
            if i > 0:
                cells.append(format_ratio(row.ratios[i]))
        table.add_row(*cells)
    buffer = io.StringIO()
    Console(file=buffer, width=max(100, 30 + 28 * len(entries)), color_system=None, force_terminal=False).print(table)
    return buffer.getvalue()


def _md_cell(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render(entries: Sequence[CompareEntry], fmt: str = "table") -> str:
    """The comparison in one of :data:`FORMATS`."""
    if not entries:
        raise CompareError("nothing to compare")
    if fmt == "json":
        return json.dumps(to_json(entries), indent=2) + "\n"
    if fmt == "csv":
        return to_dataframe(entries).to_csv(index=False)
    if fmt == "markdown":
        from tabulate import tabulate

        frame = to_dataframe(entries, formatted=True)
        cells = [[_md_cell(c) for c in row] for row in frame.values.tolist()]
        headers = [_md_cell(h) for h in frame.columns]
        return tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
    if fmt == "table":
        return _rich_table(entries)
    raise CompareError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def compare(refs: Sequence[str], submissions_dir: str | os.PathLike[str] = "submissions", fmt: str = "table") -> str:
    """Load every input and render the comparison."""
    return render([load_entry(ref, submissions_dir) for ref in refs], fmt)

