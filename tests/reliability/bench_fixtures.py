"""Re-export of the harness test fixtures (tests/bench/harness_fixtures.py) for this directory's tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from harness_fixtures import make_run_dir, synthetic_result  # noqa: E402

__all__ = ["make_run_dir", "synthetic_result"]
