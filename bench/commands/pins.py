"""`nanobench pins`: show or write the workload pins of a preset (bench/pins/<preset>.json).

Pins are what `nanobench verify` compares a bundle's `workload` hashes with. The code and config hashes
are computed from this source tree; the tokenizer hash (and for downloaded data, the data manifest
hash) come from a recorded run (`--from-run RUN_DIR`), since they are produced by running.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.config import ConfigError, load_config
from bench.workload_identity import pins_path, static_identity

RUN_PINNED = ("tokenizer_sha256", "data_manifest_sha256", "eval_data_sha256")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pins", help="show or write a preset's pinned workload hashes", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("show", "write"), help="show: print the pinned hashes; write: (re)write bench/pins/<preset>.json")
    p.add_argument("--preset", required=True, help="preset whose pins to show or write (e.g. smoke, speedrun)")
    p.add_argument("--from-run", default=None, help="take run-produced hashes (tokenizer, data) from this bundle")
    p.set_defaults(func=run)


def compute_pins(preset_name: str, from_run: str | None = None) -> dict:
    preset = load_config().preset(preset_name)
    pins = static_identity(preset)
    if from_run:
        workload = json.loads((Path(from_run) / "result.json").read_text())["workload"]
        if workload.get("config_sha256") != pins["config_sha256"]:
            raise ConfigError(f"{from_run} ran a different {preset_name} config than this bench.toml")
        for key in RUN_PINNED:
            if workload.get(key) and key not in pins:
                pins[key] = workload[key]
    return pins


def run(args: argparse.Namespace) -> int:
    try:
        pins = compute_pins(args.preset, args.from_run)
    except (ConfigError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(pins, indent=2, sort_keys=True) + "\n"
    if args.action == "show":
        print(text, end="")
        return 0
    path = pins_path(args.preset)
    path.write_text(text)
    print(f"wrote {path}")
    return 0
