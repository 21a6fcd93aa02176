"""A real, rankable bundle for tests: a committed smoke submission copied, given a nonce, re-signed.

The smoke submissions under ``submissions/smoke/`` are real runs (their logs, power samples,
progress records and per-task CSVs agree with result.json), so every cross-check of
``bench.evidence`` applies to them. :func:`real_bundle` copies one, lets a test change result.json
(re-pricing the phases and the triple consistently when asked), and signs it with a test key;
:func:`register_key` puts that key into a submissions tree's key registry. Tests pass the bundle's
own workload as pins (the shipped pins follow the current code, which an old bundle predates).
"""

from __future__ import annotations

import copy
import json
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable

from bench.bundle import write_bundle
from bench.cost import Pricing, headline_score, price_phases, triple
from bench.signing import public_key_hex

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "submissions" / "smoke"


def smoke_dir() -> Path:
    runs = sorted(p for p in SMOKE.iterdir() if p.is_dir() and (p / "manifest.sig").is_file())
    assert runs, "no committed smoke submission to copy"
    return runs[0]


def load_result(run: Path) -> dict[str, Any]:
    return json.loads((run / "result.json").read_text(encoding="utf-8"))


def write_result(run: Path, result: dict[str, Any]) -> None:
    (run / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def reprice(result: dict[str, Any], rate: float | None = None) -> None:
    """Recompute every phase's USD and the triple from the (possibly edited) result, as a forger would."""
    pricing = dict(result["pricing"])
    if rate is not None:
        pricing["hourly_rate_usd"] = rate
    result["pricing"] = Pricing.from_dict(pricing).to_dict()
    rows = [{k: v for k, v in p.items() if k != "usd"} for p in result["phases"]]
    result["phases"] = price_phases(rows, Pricing.from_dict(result["pricing"]))
    metrics = result.get("metrics") or {}
    label = (result.get("triple") or {}).get("core_label", "CORE")
    result["triple"] = triple(result["phases"], headline_score(metrics.get("core")), headline_score(metrics.get("chatcore")), core_label=label)


def real_bundle(
    dest: Path,
    key_dir: Path,
    *,
    run_id: str | None = None,
    nonce: str | None = "new",
    rate: float | None = None,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    recost: bool = True,
    sign: bool = True,
) -> Path:
    """Copy the smoke bundle to ``dest/<run_id>``, apply ``mutate``, re-price, sign with ``key_dir``."""
    src = smoke_dir()
    result = load_result(src)
    run_id = run_id or result["run_id"]
    run = dest / run_id
    shutil.copytree(src, run, ignore=shutil.ignore_patterns("submission.json", "manifest.json", "manifest.sig"))
    result = copy.deepcopy(result)
    result["run_id"] = run_id
    if isinstance(result.get("run_conditions"), dict):
        result["run_conditions"] = {**result["run_conditions"], "busy": False}  # tests about busy runs set it themselves
    if nonce == "new":
        result["run_nonce"] = secrets.token_hex(16)
    elif nonce is not None:
        result["run_nonce"] = nonce
    if mutate is not None:
        mutate(result)
    if recost:
        reprice(result, rate)
    write_result(run, result)
    if sign:
        write_bundle(run, key_dir=key_dir)
    return run


def register_key(submissions: Path, key_dir: Path, owner: str = "test-lab", name: str = "Test Lab (CI key)") -> Path:
    keys = submissions / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    path = keys / f"{owner}.pub"
    path.write_text(f'name = "{name}"\npublic_key = "{public_key_hex(key_dir)}"\n', encoding="utf-8")
    return path


def file_by_hand(run: Path, submissions: Path, preset: str = "smoke") -> Path:
    """Put a bundle into the submissions tree without `submit` (as a pull request could)."""
    target = submissions / preset / run.name
    shutil.copytree(run, target, symlinks=True, ignore=shutil.ignore_patterns("artifacts"))
    return target
