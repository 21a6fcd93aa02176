"""Cost at a reference price: the same hardware-time priced from one dated table for every run.

The table (``bench/reference_prices.toml``) holds approximate on-demand $/accelerator-hour by model
and $/vCPU-hour for CPU-only machines. :func:`reference_cost` turns a result's system description
and counted minutes into accelerator-hours (GPU-hours; vCPU-hours on a CPU-only box) and their
cost at the table's price. It never raises on a malformed system description: what it cannot
match comes back with ``usd=None`` and the reason.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

TABLE_PATH = Path(__file__).with_name("reference_prices.toml")


@dataclass(frozen=True)
class ReferenceCost:
    """``units`` accelerator-hours (``unit`` says which) priced at ``usd_per_hour`` each."""

    model: str | None
    unit: str  # "GPU-hours" or "vCPU-hours"
    units: float | None
    usd_per_hour: float | None
    usd: float | None
    captured_on: str
    source: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=4)
def load_table(path: str | None = None) -> dict[str, Any]:
    data = tomllib.loads(Path(path or TABLE_PATH).read_text(encoding="utf-8"))
    for row in data.get("accelerator", []):
        if not (isinstance(row.get("match"), list) and isinstance(row.get("usd_per_hour"), (int, float))):
            raise ValueError(f"reference price row {row!r} needs match = [...] and usd_per_hour")
    return data


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^A-Za-z0-9]+", name.upper()) if t]


def match_accelerator(device_name: str, table: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The first table row whose every ``match`` word starts a token of ``device_name``."""
    table = table or load_table()
    tokens = _tokens(device_name)
    for row in table.get("accelerator", []):
        if all(any(t.startswith(str(w).upper()) for t in tokens) for w in row["match"]):
            return row
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def hardware_of(system: Mapping[str, Any]) -> tuple[int, list[str], int, int]:
    """(accelerators per node, device names, nodes, vCPUs per node) from a system.json-shaped dict.

    A multi-node bundle has ``nodes: [...]`` (one system description per node) and
    ``number_of_nodes``; counts are summed over the nodes.
    """
    nodes = system.get("nodes") if isinstance(system.get("nodes"), list) else None
    if nodes:
        parts = [hardware_of(n) for n in nodes if isinstance(n, dict)]
        return (sum(p[0] for p in parts), [n for p in parts for n in p[1]], len(parts) or 1, sum(p[3] for p in parts))
    gpus = system.get("gpus") if isinstance(system.get("gpus"), dict) else {}
    devices = gpus.get("devices") if isinstance(gpus.get("devices"), list) else []
    names = [d["name"] for d in devices if isinstance(d, dict) and isinstance(d.get("name"), str)]
    count = _int(gpus.get("count"))
    if count is None:
        count = _int(system.get("accelerator_count"))
    if count is None:
        count = len(devices)
    cpu = system.get("cpu") if isinstance(system.get("cpu"), dict) else {}
    vcpus = _int(cpu.get("logical_cores")) or 0
    return count, names, 1, vcpus


def reference_cost(system: Mapping[str, Any], counted_minutes: float | None, table: Mapping[str, Any] | None = None) -> ReferenceCost:
    """Accelerator-hours of the counted phases and their cost at the reference price."""
    table = table or load_table()
    captured, source = str(table.get("captured_on", "")), str(table.get("source", ""))
    if not isinstance(system, Mapping):
        system = {}
    count, names, _nodes, vcpus = hardware_of(system)
    minutes = counted_minutes if isinstance(counted_minutes, (int, float)) and counted_minutes >= 0 else None
    if count > 0:
        hours = None if minutes is None else count * minutes / 60
        if not names:
            return ReferenceCost(None, "GPU-hours", hours, None, None, captured, source, "accelerator model not reported")
        matched = [match_accelerator(n, table) for n in names]
        models = {None if r is None else str(r["model"]) for r in matched}
        if None in models or len(models) != 1:
            listed = ", ".join(dict.fromkeys(names))
            return ReferenceCost(listed, "GPU-hours", hours, None, None, captured, source, f"no single reference price for {listed}")
        row = matched[0]
        rate = float(row["usd_per_hour"])
        return ReferenceCost(str(row["model"]), "GPU-hours", hours, rate, None if hours is None else hours * rate, captured, source)
    cpu = table.get("cpu") or {}
    rate = cpu.get("usd_per_vcpu_hour")
    if vcpus <= 0 or not isinstance(rate, (int, float)):
        return ReferenceCost(None, "vCPU-hours", None, None, None, captured, source, "no accelerator and no vCPU count reported")
    hours = None if minutes is None else vcpus * minutes / 60
    return ReferenceCost(str(cpu.get("model", "CPU vCPU")), "vCPU-hours", hours, float(rate),
                         None if hours is None else hours * float(rate), captured, source)
