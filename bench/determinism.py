"""Determinism validation: the repeat probe and the convergence band.

The probe re-runs the first N pretraining steps from the same seed in a fresh process and compares
losses, batch fingerprints and the weight hash after N steps with the main run:

- `bitwise`: identical losses, fingerprints and weights;
- `close`: identical fingerprints (same data), losses within `rel_tol` (stated), weights may differ
  (non-deterministic kernels, reduction order);
- `divergent`: anything else. A divergent run is not valid.
"""

from __future__ import annotations

import math
from typing import Any


def classify_probe(main: dict[str, Any] | None, repeat: dict[str, Any] | None, *, rel_tol: float) -> dict[str, Any]:
    if not main or not repeat:
        return {"class": "not_checked", "reason": "probe data missing (a resumed pretraining run does not record it)"}
    n = min(len(main["losses"]), len(repeat["losses"]))
    if n == 0 or n != main.get("steps") or n != repeat.get("steps"):
        return {"class": "divergent", "reason": f"probe covered {n} steps, expected {main.get('steps')}", "steps": n}
    same_data = main["fingerprints"][:n] == repeat["fingerprints"][:n]
    diffs = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(main["losses"][:n], repeat["losses"][:n])]
    max_rel = max(diffs) if diffs else 0.0
    if any(not math.isfinite(d) for d in diffs):
        max_rel = math.inf  # a NaN loss on either side is never "close"
    same_weights = main.get("params_sha256") is not None and main.get("params_sha256") == repeat.get("params_sha256")
    info = {
        "steps": n,
        "same_batch_fingerprints": same_data,
        "max_rel_loss_diff": max_rel if math.isfinite(max_rel) else None,  # None: a non-finite loss
        "same_weights": same_weights,
        "rel_tol": rel_tol,
    }
    if same_data and max_rel == 0.0 and same_weights:
        return {"class": "bitwise", **info}
    if same_data and math.isfinite(max_rel) and max_rel <= rel_tol:
        return {"class": "close", **info, "reason": f"losses agree within {rel_tol:g} relative; weights differ bitwise" if not same_weights else "losses differ below tolerance"}
    reason = "batch fingerprints differ" if not same_data else f"losses differ by {max_rel:.3g} relative (> {rel_tol:g})"
    return {"class": "divergent", **info, "reason": reason}


def check_convergence(val_bpb: float | None, band: tuple[float, float], source: str) -> dict[str, Any]:
    lo, hi = band
    shown = [lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None]  # JSON has no infinity
    if val_bpb is None or not math.isfinite(val_bpb):
        return {"ok": False, "val_bpb": val_bpb, "band": shown, "source": source, "reason": "no finite val bpb"}
    ok = lo <= val_bpb <= hi
    return {"ok": ok, "val_bpb": val_bpb, "band": shown, "source": source,
            "reason": None if ok else f"val bpb {val_bpb:.4f} outside [{lo}, {hi}]"}


def validity(probe: dict[str, Any], convergence: dict[str, Any] | None) -> tuple[bool, list[str]]:
    problems = []
    if probe.get("class") == "divergent":
        problems.append(f"determinism probe divergent: {probe.get('reason')}")
    if convergence is not None and not convergence.get("ok"):
        problems.append(f"convergence: {convergence.get('reason')}")
    return (not problems), problems
