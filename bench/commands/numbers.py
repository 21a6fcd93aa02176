"""argparse types for numeric flags: finite and within a sane range, checked before anything starts.

`bounded_float("--hourly-rate", 0, 1e6)` rejects `1.7e308`, `nan`, `inf` and `-1` with a message that
names the flag and the allowed range (argparse prints it and exits with status 2, no traceback).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _range(lo: float, hi: float, exclude: tuple = ()) -> str:
    text = f"from {lo:g} to {hi:g}"
    return text + (f", not {', '.join(f'{x:g}' for x in exclude)}" if exclude else "")


def bounded_float(flag: str, lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """A finite float in [lo, hi] (or (lo, hi] when `lo_open`)."""
    allowed = f"a finite number {'above' if lo_open else 'from'} {lo:g} {'and at most' if lo_open else 'to'} {hi:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be {allowed}, got {text!r}") from None
        if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
            raise argparse.ArgumentTypeError(f"{flag} must be {allowed}, got {text}")
        return value

    parse.__name__ = "number"  # argparse's "invalid number value" wording, if it ever gets there
    return parse


def bounded_int(flag: str, lo: int, hi: int, *, exclude: tuple[int, ...] = ()) -> Callable[[str], int]:
    """An integer in [lo, hi], not one of `exclude` (long digit strings are refused without parsing)."""

    def parse(text: str) -> int:
        stripped = text.strip()
        if len(stripped.lstrip("+-")) > 20:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer {_range(lo, hi, exclude)}, got a {len(stripped)}-character number")
        try:
            value = int(stripped)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer {_range(lo, hi, exclude)}, got {text!r}") from None
        if not lo <= value <= hi or value in exclude:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer {_range(lo, hi, exclude)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


MAX_HOURLY_RATE_USD = 1e6  # a 100,000-GPU cluster at $10/GPU-hour
MAX_ENERGY_PRICE_USD = 100.0  # per kWh
MAX_PROCS = 1024  # processes per node
MAX_NODES = 4096
