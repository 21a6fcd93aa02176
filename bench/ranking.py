"""What may rank: the rules a verified bundle must also meet to get a place on the leaderboard.

A bundle that verifies (hashes, signature, arithmetic, cross-checks) is honest about what it did;
these rules decide whether what it did is *the benchmark*. :func:`ranking_problems` lists every
rule a result breaks (empty list: it may rank):

1. ``kind`` is ``measured``;
2. every phase the preset defines ran, once, with ``counted`` as the phase registry says
   (``bench.phases``), and nothing else ran; the expected list comes from the shipped preset
   (``bench.toml``) through :func:`bench.pipeline.selected_phases`, so a phase added to the
   registry or enabled in a preset is required automatically; the determinism probe is required
   when the preset's ``checks.probe_steps`` is above 0;
3. ``valid`` is true and determinism is not ``divergent``;
4. the triple has both scores (CORE and ChatCORE);
5. the workload pins match (checked by the caller, passed in as ``pins_ok``);
6. the signing key is in the key registry (``signer_known``);
7. the evidence is complete (no absent evidence files);
8. the run nonce is present (duplicates are refused by the board, which sees all bundles);
9. the machine was not busy (``run_conditions.busy``) unless the run says ``allow_busy``. A bundle
   without ``run_conditions`` (made before nanobench recorded them) is treated as not busy: the
   load it ran under is then simply unknown, and the page says so.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from bench.safe_read import is_finite_number, show


@lru_cache(maxsize=32)
def expected_phases(preset_name: str) -> tuple[str, ...] | None:
    """The phases a full run of the shipped preset ``preset_name`` has (``None``: no such preset)."""
    from bench.config import ConfigError, load_config
    from bench.phases import PROBE
    from bench.pipeline import selected_phases

    try:
        preset = load_config().preset(preset_name)
    except (ConfigError, KeyError, ValueError, OSError):
        return None
    names = list(selected_phases(preset, None, None))
    if getattr(preset.checks, "probe_steps", 0) and "pretrain" in names:
        names.append(PROBE.name)
    return tuple(names)


def _counted_by_registry(name: str) -> bool | None:
    from bench.phases import phase_spec

    try:
        return phase_spec(name).counted
    except KeyError:
        return None



def is_busy(result: Mapping[str, Any]) -> bool:
    """True when the run recorded a busy machine and did not opt in with ``allow_busy``."""
    cond = result.get("run_conditions")
    if not isinstance(cond, Mapping):
        return False
    return cond.get("busy") is True and cond.get("allow_busy") is not True


def ranking_problems(
    result: Mapping[str, Any],
    *,
    pins_ok: bool | None,
    pins_detail: str = "",
    signer_known: bool,
    evidence_missing: list[str] | tuple[str, ...] = (),
    expected: tuple[str, ...] | None = None,
) -> list[str]:
    """Every ranking rule ``result`` breaks, as short reasons (see the module docstring)."""
    problems: list[str] = []
    if result.get("kind", "measured") != "measured":
        problems.append(f"kind is {show(result.get('kind'))}, not a measured run")
    preset = result.get("preset")
    if expected is None and isinstance(preset, str):
        expected = expected_phases(preset)
    phases = [p for p in result.get("phases") or [] if isinstance(p, Mapping)] if isinstance(result.get("phases"), list) else []
    names = [p.get("name") for p in phases]
    if expected is None:
        problems.append(f"preset {show(preset)} is not a shipped preset, so no phase list to check against")
    else:
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        dupes = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
        if missing:
            problems.append(f"incomplete: phase(s) {', '.join(missing)} did not run")
        if extra:
            problems.append(f"phase(s) {', '.join(show(n) for n in extra)} are not part of preset {show(preset)}")
        if dupes:
            problems.append(f"phase(s) {', '.join(dupes)} listed twice")
    for p in phases:
        want = _counted_by_registry(p.get("name")) if isinstance(p.get("name"), str) else None
        if want is not None and p.get("counted") is not want:
            problems.append(f"phase {show(p.get('name'))} has counted={show(p.get('counted'))}, the preset counts it {want}")
    if result.get("valid") is not True:
        problems.append("not valid (valid is not true): " + "; ".join(str(x) for x in (result.get("validity_problems") or [])[:3] if isinstance(x, str))[:300])
    det = result.get("determinism")
    det_class = det.get("class") if isinstance(det, Mapping) else None
    if det_class == "divergent":
        problems.append("determinism probe divergent")
    elif expected is not None and "determinism_probe" in expected and det_class not in ("bitwise", "close"):
        problems.append(f"determinism {show(det_class)}: the preset's determinism probe did not confirm the run")
    triple = result.get("triple") if isinstance(result.get("triple"), Mapping) else {}
    for key, label in (("core", "CORE"), ("chatcore", "ChatCORE")):
        if not is_finite_number(triple.get(key)):
            problems.append(f"no {label} score")
    if pins_ok is False:
        problems.append(f"workload differs from the pinned spec ({pins_detail})" if pins_detail else "workload differs from the pinned spec")
    elif pins_ok is None:
        problems.append("no pinned workload spec to check against")
    if not signer_known:
        problems.append("signed by a key that is not in the key registry (submissions/keys/)")
    if evidence_missing:
        problems.append("evidence incomplete: " + "; ".join(evidence_missing)[:300])
    if not isinstance(result.get("run_nonce"), str):
        problems.append("no run nonce (made by a nanobench without copy protection)")
    if is_busy(result):
        problems.append("the machine was busy during the run (run_conditions.busy) and allow_busy is not set")
    return problems
