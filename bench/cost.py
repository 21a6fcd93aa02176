"""Cost arithmetic: what a phase cost in USD, and the (USD, minutes, CORE, ChatCORE) triple of a run.

A phase costs ``hourly_rate_usd * seconds / 3600`` plus, when an energy price is given and the
phase's energy is known, ``energy_joules / 3.6e6 * energy_price_usd_per_kwh``. The triple sums
only phases marked ``counted`` (``download`` is recorded but not counted). No rounding anywhere:
``bench.verify`` recomputes these numbers from result.json and compares them at 1e-9 relative.

Score convention in ``result["metrics"]``: ``metrics["core"]`` and ``metrics["chatcore"]`` are either
a number or a dict with the headline number under ``"score"`` (and per-task values under ``"tasks"``,
optionally a ``"label"`` such as ``"CORE-offline-18"``). :func:`headline_score` reads either form.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

PRICE_KINDS = ("on-demand", "spot", "owned")
JOULES_PER_KWH = 3.6e6


class PricingError(ValueError):
    """Invalid pricing input (negative rate, unknown kind, unparseable date, ...)."""


def _nonneg_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PricingError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise PricingError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Pricing:
    """What an hour of this machine costs, and where that number came from."""

    hourly_rate_usd: float
    price_source: str  # URL or description ("lambda.ai/pricing, 8x H100 SXM", "our invoice 2026-10")
    price_kind: str  # on-demand | spot | owned (amortized)
    captured_on: str  # ISO date the price was read, YYYY-MM-DD
    energy_price_usd_per_kwh: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hourly_rate_usd", _nonneg_number("hourly_rate_usd", self.hourly_rate_usd))
        if not isinstance(self.price_source, str) or not self.price_source.strip():
            raise PricingError("price_source must be a non-empty string (a URL or where the price came from)")
        if self.price_kind not in PRICE_KINDS:
            raise PricingError(f"price_kind must be one of {PRICE_KINDS}, got {self.price_kind!r}")
        captured = self.captured_on
        if isinstance(captured, _dt.datetime):
            captured = captured.date()
        if isinstance(captured, _dt.date):
            captured = captured.isoformat()
        try:
            _dt.date.fromisoformat(str(captured))
        except ValueError as exc:
            raise PricingError(f"captured_on must be an ISO date YYYY-MM-DD, got {self.captured_on!r}") from exc
        object.__setattr__(self, "captured_on", str(captured))
        if self.energy_price_usd_per_kwh is not None:
            object.__setattr__(
                self, "energy_price_usd_per_kwh", _nonneg_number("energy_price_usd_per_kwh", self.energy_price_usd_per_kwh)
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Pricing":
        """Build from a result.json ``pricing`` object; unknown keys are an error."""
        known = {"hourly_rate_usd", "price_source", "price_kind", "captured_on", "energy_price_usd_per_kwh"}
        extra = set(data) - known
        if extra:
            raise PricingError(f"unknown pricing fields {sorted(extra)}")
        missing = known - {"energy_price_usd_per_kwh"} - set(data)
        if missing:
            raise PricingError(f"pricing lacks {sorted(missing)}")
        return cls(**dict(data))


def phase_cost(seconds: float, energy_joules: float | None, pricing: Pricing) -> float:
    """USD for one phase: machine time, plus energy when both its price and its amount are known."""
    seconds = _nonneg_number("seconds", seconds)
    usd = pricing.hourly_rate_usd * seconds / 3600.0
    if pricing.energy_price_usd_per_kwh is not None and energy_joules is not None:
        usd += _nonneg_number("energy_joules", energy_joules) / JOULES_PER_KWH * pricing.energy_price_usd_per_kwh
    return usd


def price_phases(phases: Iterable[Mapping[str, Any]], pricing: Pricing) -> list[dict[str, Any]]:
    """Copies of ``phases`` with ``usd`` set from their ``seconds`` and ``energy_joules``."""
    return [{**p, "usd": phase_cost(p["seconds"], p.get("energy_joules"), pricing)} for p in phases]


def headline_score(metric: Any) -> float | None:
    """The headline number of a ``metrics["core"]``/``["chatcore"]`` entry (number, or dict with ``score``)."""
    if metric is None:
        return None
    if isinstance(metric, Mapping):
        metric = metric.get("score")
        if metric is None:
            return None
    if isinstance(metric, bool) or not isinstance(metric, (int, float)):
        raise ValueError(f"score must be a number or null, got {metric!r}")
    return float(metric)


def triple(
    phases: Iterable[Mapping[str, Any]],
    core: float | None,
    chatcore: float | None,
    *,
    core_label: str = "CORE",
) -> dict[str, Any]:
    """The run's headline: USD and minutes summed over counted phases, plus the two scores.

    Each phase needs ``seconds``, ``usd`` and ``counted`` (a bool; a missing flag is an error, so a
    phase can never be silently counted or dropped).
    """
    usd = 0.0
    seconds = 0.0
    for p in phases:
        counted = p.get("counted")
        if not isinstance(counted, bool):
            raise ValueError(f"phase {p.get('name')!r} has no boolean 'counted' flag")
        if counted:
            usd += float(p["usd"])
            seconds += float(p["seconds"])
    return {
        "usd": usd,
        "minutes": seconds / 60.0,
        "core": None if core is None else float(core),
        "chatcore": None if chatcore is None else float(chatcore),
        "core_label": core_label,
    }


def triple_from_result(result: Mapping[str, Any], pricing: Pricing | None = None) -> dict[str, Any]:
    """Recompute the triple of a result.json dict from its phases, pricing and metrics."""
    pricing = pricing or Pricing.from_dict(result["pricing"])
    metrics = result.get("metrics") or {}
    label = (result.get("triple") or {}).get("core_label", "CORE")
    return triple(
        price_phases(result["phases"], pricing),
        headline_score(metrics.get("core")),
        headline_score(metrics.get("chatcore")),
        core_label=label,
    )
