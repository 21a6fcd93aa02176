"""Side-by-side comparison of runs: the triple, per-phase time/energy/cost, throughput and scores.

Each input is a run directory, a submission directory, a ``result.json``-shaped file (such as a
forecast) or a submission id ``<preset>/<run_id>``. Every metric row carries one value per input
and, for every input after the first, its ratio to the first (``None`` where either side is
missing or the first is zero). Scores with different labels (``CORE`` vs ``CORE-offline-18``) get
separate rows, so no ratio ever mixes two different evaluations. Forecasts are marked in the
column header.

The first row names each input's hardware. A metric no input recorded gets no row (the table and
markdown list it under "not recorded"). The table and markdown formats print numbers for people
(``$26.70``, ``1 h 04 min``, ``40.0%``) and ratios in words, marked better or worse for the
metric's direction (``2.30x faster (better)``, ``0.40x the cost (better)``); csv and json keep the
raw numbers.
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
from bench.system_view import hardware_label

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


LOWER_IS_BETTER = "lower"
HIGHER_IS_BETTER = "higher"


@dataclass
class MetricRow:
    metric: str
    unit: str
    values: list[float | None]
    ratios: list[float | None] = field(default_factory=list)
    better: str | None = None  # LOWER_IS_BETTER, HIGHER_IS_BETTER or None (no direction)
    texts: list[str] | None = None  # a text row (hardware): shown as is, never a ratio


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
    low, high = LOWER_IS_BETTER, HIGHER_IS_BETTER
    rows = [
        MetricRow("cost", "USD", [_number(t.get("usd")) for t in triples], better=low),
        MetricRow("time", "minutes", [_number(t.get("minutes")) for t in triples], better=low),
    ]
    labels = [str(t.get("core_label") or _dict(m.get("core")).get("label") or "CORE") for t, m in zip(triples, metrics)]
    for label in dict.fromkeys(labels):
        rows.append(
            MetricRow(label, "score", [
                (_number(t.get("core")) if "core" in t else _score(m.get("core"))) if lab == label else None
                for t, m, lab in zip(triples, metrics, labels)
            ], better=high)
        )
    rows += [
        MetricRow("ChatCORE", "score", [_number(t.get("chatcore")) if "chatcore" in t else _score(m.get("chatcore")) for t, m in zip(triples, metrics)], better=high),
        MetricRow("val_bpb", "bits/byte", [_number(m.get("val_bpb")) for m in metrics], better=low),
        MetricRow("throughput", "tok/s", [_number(m.get("tok_per_s")) for m in metrics], better=high),
        MetricRow("MFU", "fraction", [_number(m.get("mfu")) for m in metrics], better=high),
        MetricRow("energy (counted)", "kWh", [_counted_energy_kwh(r) for r in results], better=low),
    ]
    phase_names = list(dict.fromkeys(p["name"] for r in results for p in _phases(r)))
    for phase in phase_names:
        found = [next((p for p in _phases(r) if p["name"] == phase), None) for r in results]
        seconds = [_number(p.get("seconds")) if p else None for p in found]
        energy = [_number(p.get("energy_joules")) if p else None for p in found]
        rows += [
            MetricRow(f"{phase} time", "minutes", [None if s is None else s / 60.0 for s in seconds], better=low),
            MetricRow(f"{phase} energy", "kWh", [None if j is None else j / JOULES_PER_KWH for j in energy], better=low),
            MetricRow(f"{phase} cost", "USD", [_number(p.get("usd")) if p else None for p in found], better=low),
        ]
    for row in rows:
        row.ratios = [_ratio(v, row.values[0]) for v in row.values]
    return rows


def hardware_row(entries: Sequence[CompareEntry]) -> MetricRow:
    """The text row naming each input's hardware (``8 x NVIDIA H100 80GB HBM3``, ``CPU only: ...``)."""
    texts = [hardware_label(_dict(e.result.get("system"))) for e in entries]
    return MetricRow("hardware", "", [None] * len(entries), [None] * len(entries), texts=texts)


def shown_rows(entries: Sequence[CompareEntry]) -> tuple[list[MetricRow], list[str]]:
    """The hardware row plus every metric at least one input recorded; and the metrics none did."""
    rows = comparison_rows(entries)
    kept = [r for r in rows if any(v is not None for v in r.values)]
    missing = [r.metric for r in rows if all(v is None for v in r.values)]
    return [hardware_row(entries), *kept], missing


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


def human_value(value: float | None, unit: str) -> str:
    """A number for people: ``$26.70``, ``1 h 04 min``, ``40.0%``, ``1,248``; ``n/a`` when missing."""
    if value is None:
        return NA
    if unit == "USD":
        if abs(value) >= 1000:
            return f"${value:,.0f}"
        return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"
    if unit == "minutes":
        if value >= 60:
            hours, minutes = divmod(int(round(value)), 60)
            return f"{hours} h {minutes:02d} min"
        return f"{value:.1f} min" if value >= 1 else f"{value * 60:.0f} s"
    if unit == "fraction":
        return f"{value * 100:.1f}%"
    if unit == "tok/s":
        return f"{value:,.0f}"
    if unit == "kWh":
        return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"
    return f"{value:.4f}" if unit in ("score", "bits/byte") else format_value(value)


_NOUNS = {"USD": "the cost", "kWh": "the energy", "tok/s": "the throughput", "score": "the score", "fraction": "the MFU",
          "bits/byte": "the bits per byte"}


def describe_ratio(row: MetricRow, i: int) -> str:
    """``2.30x faster (better)``, ``0.40x the cost (better)``, ``same``; ``n/a`` when no ratio."""
    ratio = row.ratios[i] if i < len(row.ratios) else None
    if ratio is None:
        return NA
    if abs(ratio - 1.0) < 0.005:
        return "same"
    verdict = ""
    if row.better is not None:
        good = ratio < 1.0 if row.better == LOWER_IS_BETTER else ratio > 1.0
        verdict = " (better)" if good else " (worse)"
    if row.unit == "minutes":
        return (f"{format_ratio(1.0 / ratio)} faster" if ratio < 1.0 else f"{format_ratio(ratio)} slower") + verdict
    return f"{format_ratio(ratio)} {_NOUNS.get(row.unit, 'the value')}" + verdict


def _ratio_header(name: str) -> str:
    return f"{name} ratio"


def to_dataframe(entries: Sequence[CompareEntry], *, formatted: bool = False) -> Any:
    """A pandas DataFrame: ``metric``, ``unit``, then each entry's value followed by its ratio column."""
    import pandas as pd

    names = _unique_names(entries)
    records = []
    rows, _ = shown_rows(entries)
    for row in rows:
        record: dict[str, Any] = {"metric": row.metric, "unit": row.unit}
        for i, name in enumerate(names):
            if row.texts is not None:
                record[name] = row.texts[i]
            else:
                record[name] = human_value(row.values[i], row.unit) if formatted else row.values[i]
            if i > 0:
                header = _ratio_header(name)
                if row.texts is not None:
                    record[header] = "" if formatted else None
                else:
                    record[header] = describe_ratio(row, i) if formatted else row.ratios[i]
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
                "hardware": hardware_label(_dict(e.result.get("system"))),
            }
            for name, e in zip(names, entries)
        ],
        "rows": [
            {"metric": r.metric, "unit": r.unit, "better": r.better, "values": r.values, "ratios": r.ratios}
            for r in shown_rows(entries)[0] if r.texts is None
        ],
        "not_recorded": shown_rows(entries)[1],
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
            table.add_column(Text(f"vs {names[0]}"), justify="right", no_wrap=True)
    rows, missing = shown_rows(entries)
    for row in rows:
        cells: list[Any] = [Text(row.metric), row.unit]
        for i in range(len(entries)):
            cells.append(Text(row.texts[i]) if row.texts is not None else human_value(row.values[i], row.unit))
            if i > 0:
                text = "" if row.texts is not None else describe_ratio(row, i)
                style = "green" if text.endswith("(better)") else "red" if text.endswith("(worse)") else None
                cells.append(Text(text, style=style) if style else text)
        table.add_row(*cells)
    if missing:
        table.caption = "not recorded by any input: " + ", ".join(missing)
    buffer = io.StringIO()
    Console(file=buffer, width=max(100, 30 + 52 * len(entries)), color_system=None, force_terminal=False).print(table)
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
        text = tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
        missing = shown_rows(entries)[1]
        if missing:
            text += "\nNot recorded by any input: " + ", ".join(_md_cell(m) for m in missing) + ".\n"
        return text
    if fmt == "table":
        return _rich_table(entries)
    raise CompareError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def compare(refs: Sequence[str], submissions_dir: str | os.PathLike[str] = "submissions", fmt: str = "table") -> str:
    """Load every input and render the comparison."""
    return render([load_entry(ref, submissions_dir) for ref in refs], fmt)

