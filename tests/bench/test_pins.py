"""The shipped pins are the workload's version: changing workload code or a preset's math must come with
new pins (`nanobench pins write --preset P [--from-run RUN]`), so a result can say exactly what it ran."""

import json

import pytest

from bench.config import load_config
from bench.workload_identity import PINS_DIR, static_identity


@pytest.mark.parametrize("path", sorted(PINS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_pins_match_this_source_tree(path):
    pins = json.loads(path.read_text())
    current = static_identity(load_config().preset(path.stem))
    for key, value in current.items():
        assert pins.get(key) == value, (
            f"bench/pins/{path.name}: {key} is stale; if the workload change is intended, run "
            f"`nanobench pins write --preset {path.stem}` (and for smoke --from-run a fresh smoke run)"
        )


def test_every_preset_is_pinned():
    assert {p.stem for p in PINS_DIR.glob("*.json")} == set(load_config().presets)
