"""Command-line pieces shared by `run` and `estimate`: the price of the machine and the process count."""

from __future__ import annotations

import argparse
import datetime as dt

from bench.config import HarnessConfig
from bench.cost import Pricing


def pricing_from_args(args: argparse.Namespace, harness: HarnessConfig) -> Pricing:
    """--hourly-rate/--price-source/--price-kind (+ --captured-on, --energy-price where the command has
    them), with bench.toml's [harness] defaults; the command line wins."""
    return Pricing(
        hourly_rate_usd=args.hourly_rate,
        price_source=args.price_source or harness.price_source or "given on the command line (--hourly-rate)",
        price_kind=args.price_kind or harness.price_kind,
        captured_on=getattr(args, "captured_on", None) or dt.date.today().isoformat(),
        energy_price_usd_per_kwh=getattr(args, "energy_price", None),
    )


def default_nproc(requested: int | None, device: str) -> int:
    """--nproc, else one process per visible GPU (cuda/rocm/xpu; auto: what it resolves to), else 1."""
    if requested:
        return requested
    from bench.devices import DeviceUnavailable, device_count, resolve

    if device == "auto":
        try:
            device = resolve("auto").kind
        except DeviceUnavailable:
            return 1
    return device_count(device)
