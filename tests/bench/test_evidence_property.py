"""Property (issue 14): change any number in a real bundle's result.json, re-sign it (optionally
re-pricing it consistently, as a forger would), and `verify` either rejects the bundle or every
number the leaderboard ranks by still agrees with the bundle's own evidence.

"Agrees" means within the tolerance the cross-checks allow a genuine measurement: phase seconds
within 1 s + 2 % of the events/power records, scores within 2e-6 (the CSVs' six decimals),
counts and hardware exactly. Prices are the submitter's own (self-reported, shown next to the
reference price), so a re-priced bundle may verify with a different USD.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bundle import write_bundle
from bench.verify import verify_bundle
from tests.bench.real_bundle import load_result, real_bundle, reprice, write_result

_STATE: dict[str, Any] = {}


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [path]
    return []


def _get(obj: Any, path: tuple) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _set(obj: Any, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        obj = obj[part]
    obj[path[-1]] = value


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    key_dir = root / "key"
    run = real_bundle(root, key_dir, run_id="base")
    assert verify_bundle(run).ok
    result = load_result(run)
    _STATE.update(run=run, key_dir=key_dir, result=result, leaves=_leaves(result))
    return _STATE


def _ranked_numbers(result: dict[str, Any]) -> dict[str, Any]:
    """What the board ranks and shows as measured: time per phase, the triple's time and scores, hardware."""
    metrics = result.get("metrics") or {}
    out: dict[str, Any] = {f"phase.{p.get('name')}.seconds": p.get("seconds") for p in result.get("phases") or []}
    out.update({f"phase.{p.get('name')}.counted": p.get("counted") for p in result.get("phases") or []})
    triple = result.get("triple") or {}
    out.update({"minutes": triple.get("minutes"), "core": triple.get("core"), "chatcore": triple.get("chatcore")})
    out.update({"core.score": (metrics.get("core") or {}).get("score"), "chatcore.score": (metrics.get("chatcore") or {}).get("score")})
    for key in ("val_bpb", "tok_per_s", "total_training_time", "world_size", "pretrain_steps"):
        out[key] = metrics.get(key)
    out["system"] = result.get("system")  # compared by value: 0 and 0.0 describe the same machine
    return out


def _agrees(key: str, old: Any, new: Any) -> bool:
    if isinstance(old, (bool, str, dict, list)) or old is None:
        return old == new
    if isinstance(old, int) and key in ("world_size", "pretrain_steps"):
        return old == new
    if not isinstance(new, (int, float)) or isinstance(new, bool) or not math.isfinite(new):
        return False
    if key.endswith(".seconds") or key in ("minutes", "total_training_time"):
        scale = 60.0 if key == "minutes" else 1.0
        return abs(new - old) * scale <= 1.0 * (8 if key == "minutes" else 1) + 0.02 * abs(old) * scale
    if key == "tok_per_s":
        return math.isclose(new, old, rel_tol=1e-6)
    return abs(new - old) <= 2e-6 + 1e-9 * abs(old)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    data=st.data(),
    value=st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.integers(min_value=-10**9, max_value=10**9),
        st.sampled_from([0, 1, -1, 0.5, 2.0, 1e-9, 100.0]),
    ),
    recost=st.booleans(),
    scale=st.sampled_from([None, 0.01, 0.5, 0.999, 1.001, 2.0]),
)
def test_mutated_result_is_rejected_or_still_agrees_with_its_evidence(base, data, value, recost, scale):
    path = data.draw(st.sampled_from(base["leaves"]), label="field")
    original = base["result"]
    old = _get(original, path)
    new_value = old * scale if scale is not None else value
    work = Path(tempfile.mkdtemp(prefix="prop-"))
    try:
        run = work / "run"
        shutil.copytree(base["run"], run)
        result = json.loads(json.dumps(original))
        _set(result, path, new_value)
        if recost:
            try:
                reprice(result)
            except (ValueError, TypeError, KeyError, OverflowError):
                pass  # the forger cannot re-price this edit consistently; the stored numbers stay
        write_result(run, result)
        write_bundle(run, key_dir=base["key_dir"])
        report = verify_bundle(run)
        if report.ok:
            before, after = _ranked_numbers(original), _ranked_numbers(load_result(run))
            moved = {k: (before[k], after.get(k)) for k in before if not _agrees(k, before[k], after.get(k))}
            assert not moved, f"verify accepted {path}={new_value!r} (recost={recost}) but {moved} no longer match the evidence"
    finally:
        shutil.rmtree(work, ignore_errors=True)
