"""bench.cost: phase USD, the (USD, minutes, CORE, ChatCORE) triple and pricing validation."""

from __future__ import annotations

import datetime as dt

import pytest

from bench.cost import Pricing, PricingError, headline_score, phase_cost, price_phases, triple, triple_from_result

try:
    from tests.bench.harness_fixtures import synthetic_result
except ImportError:
    from harness_fixtures import synthetic_result


def _pricing(**kw) -> Pricing:
    args = {"hourly_rate_usd": 24.0, "price_source": "https://example.test/p", "price_kind": "on-demand", "captured_on": "2026-11-25"}
    args.update(kw)
    return Pricing(**args)


def test_time_only_cost():
    assert phase_cost(3600, None, _pricing()) == pytest.approx(24.0)
    assert phase_cost(90, 1e6, _pricing()) == pytest.approx(0.6)  # energy ignored without an energy price


def test_energy_cost_added_when_price_and_energy_known():
    p = _pricing(hourly_rate_usd=2.0, energy_price_usd_per_kwh=0.25)
    # 1800 s at $2/h = $1; 7.2e6 J = 2 kWh at $0.25 = $0.50
    assert phase_cost(1800, 7.2e6, p) == pytest.approx(1.5)
    assert phase_cost(1800, None, p) == pytest.approx(1.0)  # unknown energy: time only


def test_triple_counts_only_counted_phases():
    p = _pricing()
    phases = price_phases(
        [
            {"name": "download", "seconds": 600.0, "counted": False},
            {"name": "tokenizer", "seconds": 60.0, "counted": True},
            {"name": "pretrain", "seconds": 3540.0, "counted": True},
        ],
        p,
    )
    t = triple(phases, 0.22, 0.09, core_label="CORE-offline-18")
    assert t["usd"] == pytest.approx(24.0)
    assert t["minutes"] == pytest.approx(60.0)
    assert (t["core"], t["chatcore"], t["core_label"]) == (0.22, 0.09, "CORE-offline-18")
    assert phases[0]["usd"] == pytest.approx(4.0)  # priced, but not in the triple


def test_triple_without_scores_and_missing_counted_flag():
    t = triple([{"name": "a", "seconds": 60, "usd": 1.0, "counted": True}], None, None)
    assert t["core"] is None and t["chatcore"] is None
    with pytest.raises(ValueError, match="counted"):
        triple([{"name": "a", "seconds": 60, "usd": 1.0}], None, None)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"hourly_rate_usd": -1.0}, "hourly_rate_usd"),
        ({"hourly_rate_usd": float("nan")}, "hourly_rate_usd"),
        ({"hourly_rate_usd": "24"}, "hourly_rate_usd"),
        ({"price_kind": "reserved"}, "price_kind"),
        ({"price_source": " "}, "price_source"),
        ({"captured_on": "25/11/2026"}, "captured_on"),
        ({"energy_price_usd_per_kwh": -0.1}, "energy_price"),
    ],
)
def test_pricing_validation(kw, match):
    with pytest.raises(PricingError, match=match):
        _pricing(**kw)


def test_pricing_roundtrip_and_date_normalisation():
    p = _pricing(captured_on=dt.date(2026, 11, 25), price_kind="owned")
    assert p.captured_on == "2026-11-25"
    assert Pricing.from_dict(p.to_dict()) == p
    with pytest.raises(PricingError, match="unknown"):
        Pricing.from_dict({**p.to_dict(), "region": "us-east"})
    with pytest.raises(PricingError, match="lacks"):
        Pricing.from_dict({"hourly_rate_usd": 1.0})


def test_negative_seconds_rejected():
    with pytest.raises(PricingError):
        phase_cost(-1, None, _pricing())


def test_headline_score_forms():
    assert headline_score(None) is None
    assert headline_score(0.25) == 0.25
    assert headline_score({"score": 0.2, "tasks": {}}) == 0.2
    assert headline_score({"tasks": {}}) is None
    with pytest.raises(ValueError):
        headline_score("high")


def test_triple_from_result_matches_stored():
    result = synthetic_result()
    assert triple_from_result(result) == result["triple"]
