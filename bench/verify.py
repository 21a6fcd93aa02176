"""Check a result bundle: every file hashed, the signature good, the numbers recomputable.

:func:`verify_bundle` runs five independent checkers, in order, and reports the first failure:

1. ``manifest``: the manifest lists exactly the files present (none extra, none missing) and every
   SHA-256 and size matches;
2. ``signature``: ``manifest.sig`` verifies over the exact manifest bytes against its embedded
   public key (and that key is in ``trusted_keys`` when such a list is given);
3. ``schema``: result.json has a ``schema_version`` this nanobench knows and the fields it needs;
4. ``costs``: each phase's USD and the (USD, minutes, CORE, ChatCORE) triple, recomputed from
   seconds, energy, pricing and metrics, equal the stored values (1e-9 relative);
5. ``pins``: the workload hashes in result.json equal the expected ``pins`` (skipped without pins);
6. ``evidence``: the bundle's raw records agree with result.json (:mod:`bench.evidence`: phase
   seconds vs events.jsonl and power.csv, steady state vs progress/ step times, the fingerprint
   chain, CORE/ChatCORE vs the per-task CSVs, system.json vs result.json). Evidence that disagrees
   fails; evidence that is absent is listed in ``report.evidence_missing`` (the leaderboard does not
   rank such a bundle).

Each checker takes the run directory and returns a :class:`CheckResult`; none raises on bad input:
every file is read through :mod:`bench.safe_read` (regular files only, no links, size caps, strict
JSON without duplicate keys or non-finite numbers) and untrusted names appear in messages as
ASCII ``repr``. A checker that still hits something unexpected is reported as a failure.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from bench import RESULT_SCHEMA_VERSION, signing
from bench.bundle import MANIFEST, MANIFEST_VERSION, SIGNATURE, SUBMISSION_META, BundleError, bundle_files
from bench.cost import Pricing, headline_score, phase_cost, triple
from bench.hashing import sha256_file
from bench.key_registry import KeyRegistry
from bench.safe_read import UnsafeFile, is_finite_number, is_regular, parse_json, read_bytes, show

RESULT = "result.json"
MEASURED = "measured"
KNOWN_SCHEMA_VERSIONS = frozenset({RESULT_SCHEMA_VERSION})
_SIG_FIELDS = frozenset({"algorithm", "public_key", "signature", "key_fingerprint", "signed_file"})
REL_TOL = 1e-9
ABS_TOL = 1e-12


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    skipped: bool = False


@dataclass
class VerifyReport:
    run_dir: str
    checks: list[CheckResult] = field(default_factory=list)
    evidence_missing: list[str] = field(default_factory=list)  # absent evidence files (see bench.evidence)
    signer: str | None = None  # the registry name of the signing key, when a registry was given and knows it

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def first_failure(self) -> CheckResult | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def message(self) -> str:
        failure = self.first_failure
        if failure is not None:
            return f"FAIL [{failure.name}] {failure.message}"
        ran = [c.name for c in self.checks if not c.skipped]
        return f"OK: {len(ran)} checks passed ({', '.join(ran)})"

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "ok": self.ok, "message": self.message, "checks": [asdict(c) for c in self.checks],
                "evidence_missing": list(self.evidence_missing), "signer": self.signer}


def _pass(name: str, message: str) -> CheckResult:
    return CheckResult(name, True, message)


def _fail(name: str, message: str) -> CheckResult:
    return CheckResult(name, False, message)


def _load_json(path: Path) -> Any:
    """Strict, capped, link-refusing JSON read; FileNotFoundError when absent, ValueError when bad."""
    try:
        return parse_json(read_bytes(path), path.name)
    except UnsafeFile as exc:
        if not os.path.lexists(path):
            raise FileNotFoundError(str(path)) from None
        raise ValueError(str(exc)) from None


def _safe_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts) and "\\" not in rel and "\x00" not in rel


def check_manifest(run_dir: str | os.PathLike[str]) -> CheckResult:
    """Every present file listed, every listed file present, every hash and size equal."""
    name = "manifest"
    root = Path(run_dir)
    try:
        manifest = _load_json(root / MANIFEST)
    except FileNotFoundError:
        return _fail(name, f"{MANIFEST} is missing")
    except (OSError, ValueError) as exc:
        return _fail(name, f"{MANIFEST} is not valid JSON: {exc}")
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        return _fail(name, f"{MANIFEST} has unknown manifest_version {show(manifest.get('manifest_version') if isinstance(manifest, dict) else None)}")
    if manifest.get("hash") != "sha256" or not isinstance(manifest.get("files"), dict):
        return _fail(name, f"{MANIFEST} must have hash=sha256 and a files object")
    listed: dict[str, Any] = manifest["files"]
    for special in (MANIFEST, SIGNATURE, SUBMISSION_META):  # unmanifested names: still never a link or a FIFO
        if os.path.lexists(root / special) and not is_regular(root / special):
            return _fail(name, f"{special} is not a regular file (a symlink or special file)")
    bad = sorted(rel for rel in listed if not _safe_rel(rel))
    if bad:
        return _fail(name, f"manifest names a path outside the bundle: {show(bad[0])}" + _more(bad))
    try:
        present = bundle_files(root)
    except (BundleError, OSError, UnicodeError) as exc:
        return _fail(name, show(str(exc)))
    missing = sorted(set(listed) - set(present))
    if missing:
        return _fail(name, f"file listed in manifest but missing: {show(missing[0])}" + _more(missing))
    extra = sorted(set(present) - set(listed))
    if extra:
        return _fail(name, f"file not listed in manifest: {show(extra[0])}" + _more(extra))
    for rel in present:
        entry = listed[rel]
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            return _fail(name, f"manifest entry for {show(rel)} has no sha256")
        path = root / rel
        size = os.lstat(path).st_size
        if size != entry.get("size") or isinstance(entry.get("size"), bool):
            return _fail(name, f"size mismatch for {show(rel)}: manifest {show(entry.get('size'))}, file {size}")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            return _fail(name, f"sha256 mismatch for {show(rel)}: manifest {show(entry['sha256'][:16])}..., file {actual[:16]}...")
    return _pass(name, f"{len(present)} files match")


def _more(items: list[str]) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""


def check_signature(run_dir: str | os.PathLike[str], trusted_keys: Iterable[str] | KeyRegistry | None = None) -> CheckResult:
    """``manifest.sig`` verifies over the manifest bytes; the key is trusted when a list is given.

    ``trusted_keys`` holds public keys (hex) and/or fingerprints (``SHA256:...``), or is a
    :class:`~bench.key_registry.KeyRegistry` (then the message names the signer).
    """
    name = "signature"
    root = Path(run_dir)
    try:
        data = read_bytes(root / MANIFEST)
    except UnsafeFile as exc:
        return _fail(name, str(exc))
    try:
        sig = _load_json(root / SIGNATURE)
    except FileNotFoundError:
        return _fail(name, f"{SIGNATURE} is missing")
    except (OSError, ValueError) as exc:
        return _fail(name, f"{SIGNATURE} is not valid JSON: {exc}")
    if not isinstance(sig, dict) or set(sig) != _SIG_FIELDS:
        return _fail(name, f"{SIGNATURE} must have exactly the fields {sorted(_SIG_FIELDS)}")
    if not isinstance(sig.get("key_fingerprint"), str):
        return _fail(name, f"{SIGNATURE} key_fingerprint must be text")
    if sig["algorithm"] != signing.ALGORITHM or sig["signed_file"] != MANIFEST:
        return _fail(name, f"{SIGNATURE} must be an {signing.ALGORITHM} signature of {MANIFEST}")
    public, signature = sig.get("public_key"), sig.get("signature")
    if not isinstance(public, str) or not isinstance(signature, str):
        return _fail(name, f"{SIGNATURE} lacks public_key or signature")
    if not signing.verify_signature(public, signature, data):
        return _fail(name, f"signature does not verify over {MANIFEST}")
    fingerprint = signing.fingerprint_of(public)
    if sig.get("key_fingerprint") != fingerprint:
        return _fail(name, f"key_fingerprint {show(sig.get('key_fingerprint'))} does not match the public key ({fingerprint})")
    if isinstance(trusted_keys, KeyRegistry):
        signer = trusted_keys.lookup(public, fingerprint)
        if signer is None:
            return _fail(name, f"signing key {fingerprint} is not in the key registry ({show(trusted_keys.source)})")
        return _pass(name, f"signed by {fingerprint}: {signer.owner} ({signer.name})")
    if trusted_keys is not None:
        trusted = {k.strip().lower() for k in trusted_keys if isinstance(k, str) and k.strip()}
        if public.lower() not in trusted and fingerprint.lower() not in trusted:
            return _fail(name, f"signing key {fingerprint} is not in the trusted keys")
    return _pass(name, f"signed by {fingerprint}" + (" (trusted)" if trusted_keys is not None else ""))


def _load_result(root: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        result = _load_json(root / RESULT)
    except FileNotFoundError:
        return None, f"{RESULT} is missing"
    except (OSError, ValueError) as exc:
        return None, f"{RESULT} is not valid JSON: {exc}"
    if not isinstance(result, dict):
        return None, f"{RESULT} is not a JSON object"
    return result, None


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "run_id": str,
    "preset": str,
    "workload": dict,
    "pricing": dict,
    "phases": list,
    "triple": dict,
    "metrics": dict,
}


def check_schema(run_dir: str | os.PathLike[str]) -> CheckResult:
    """result.json has a known ``schema_version`` and the top-level and per-phase fields verify needs."""
    name = "schema"
    result, error = _load_result(Path(run_dir))
    if result is None:
        return _fail(name, error or "")
    version = result.get("schema_version")
    if isinstance(version, bool) or version not in KNOWN_SCHEMA_VERSIONS:
        return _fail(name, f"unknown schema_version {show(version)} (this nanobench knows {sorted(KNOWN_SCHEMA_VERSIONS)})")
    kind = result.get("kind", MEASURED)
    if kind != MEASURED:
        return _fail(name, f"kind is {show(kind)}; only a measured run ({MEASURED!r}) is a result (forecasts are not)")
    nonce = result.get("run_nonce")
    if nonce is not None and not (isinstance(nonce, str) and len(nonce) == 32 and all(c in "0123456789abcdef" for c in nonce)):
        return _fail(name, "run_nonce must be 32 lower-case hex digits")
    for key, kind in _REQUIRED.items():
        if not isinstance(result.get(key), kind):
            return _fail(name, f"{RESULT} field {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    for i, phase in enumerate(result["phases"]):
        if not isinstance(phase, dict) or not isinstance(phase.get("name"), str):
            return _fail(name, f"phase #{i} has no name")
        if not isinstance(phase.get("carried_seconds", 0.0), (int, float)) or isinstance(phase.get("carried_seconds"), bool):
            return _fail(name, f"phase {show(phase['name'])} carried_seconds must be a number")
        if not is_finite_number(phase.get("seconds")):
            return _fail(name, f"phase {show(phase['name'])} has no finite numeric seconds")
        if phase["seconds"] < 0:
            return _fail(name, f"phase {show(phase['name'])} has negative seconds")
        if not isinstance(phase.get("counted"), bool):
            return _fail(name, f"phase {show(phase['name'])} has no boolean counted")
        if not is_finite_number(phase.get("usd")):
            return _fail(name, f"phase {show(phase['name'])} has no numeric usd")
        energy = phase.get("energy_joules")
        if energy is not None and not is_finite_number(energy):
            return _fail(name, f"phase {show(phase['name'])} energy_joules must be a number or null")
    return _pass(name, f"schema_version {version}, {len(result['phases'])} phases")


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if not (is_finite_number(a) and is_finite_number(b)):
        return False
    return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def check_costs(run_dir: str | os.PathLike[str]) -> CheckResult:
    """Recompute per-phase USD and the triple from seconds, energy, pricing and metrics."""
    name = "costs"
    result, error = _load_result(Path(run_dir))
    if result is None:
        return _fail(name, error or "")
    try:
        pricing = Pricing.from_dict(result.get("pricing") or {})
    except (ValueError, TypeError) as exc:
        return _fail(name, f"pricing is invalid: {show(str(exc))}")
    phases = result.get("phases")
    if not isinstance(phases, list):
        return _fail(name, "phases is missing")
    recomputed = []
    try:
        for phase in phases:
            usd = phase_cost(phase["seconds"], phase.get("energy_joules"), pricing)
            if not _close(usd, phase.get("usd")):
                return _fail(name, f"phase {show(phase.get('name'))} usd {show(phase.get('usd'))} != recomputed {usd!r}")
            recomputed.append({**phase, "usd": usd})
        metrics = result.get("metrics") or {}
        stored = result.get("triple") or {}
        expected = triple(
            recomputed,
            headline_score(metrics.get("core")),
            headline_score(metrics.get("chatcore")),
            core_label=stored.get("core_label", "CORE"),
        )
    except (KeyError, TypeError, ValueError, OverflowError, ArithmeticError) as exc:
        return _fail(name, f"cannot recompute costs: {show(str(exc))}")
    for key in ("usd", "minutes", "core", "chatcore"):
        if key not in stored:
            return _fail(name, f"triple lacks {key!r}")
        if not _close(expected[key], stored[key]):
            return _fail(name, f"triple {key} {show(stored[key])} != recomputed {expected[key]!r}")
    return _pass(name, f"{len(phases)} phase costs and the triple recompute (usd {expected['usd']:.6g}, {expected['minutes']:.4g} min)")


def _diff_pins(expected: Any, actual: Any, path: str) -> str | None:
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{path} is {show(actual)[:200]}, expected an object"
        for key in sorted(expected):
            sub = f"{path}.{key}"
            if key not in actual:
                return f"{sub} is missing (expected {expected[key]!r})"
            diff = _diff_pins(expected[key], actual[key], sub)
            if diff:
                return diff
        return None
    if expected != actual:
        return f"{path} is {show(actual)[:200]}, expected {expected!r}"
    return None


def check_pins(run_dir: str | os.PathLike[str], pins: Mapping[str, Any] | None) -> CheckResult:
    """``result["workload"]`` agrees with every value in ``pins`` (nested dicts compared key by key)."""
    name = "pins"
    if pins is None:
        return CheckResult(name, True, "no pins given", skipped=True)
    result, error = _load_result(Path(run_dir))
    if result is None:
        return _fail(name, error or "")
    diff = _diff_pins(pins, result.get("workload"), "workload")
    if diff:
        return _fail(name, diff)
    return _pass(name, f"{len(pins)} pinned workload values match")


def load_pins(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a pins file: JSON, or TOML when the name ends in ``.toml``. A ``workload`` table is unwrapped."""
    p = Path(path)
    if p.suffix == ".toml":
        try:
            import tomllib
        except ImportError as exc:  # Python 3.10
            raise ValueError("TOML pins need Python 3.11+; use a JSON pins file") from exc
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    else:
        data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{p}: pins must be an object")
    if set(data) == {"workload"} and isinstance(data["workload"], dict):
        data = data["workload"]
    return data


def check_evidence(run_dir: str | os.PathLike[str]) -> tuple[CheckResult, list[str]]:
    """The cross-checks of :mod:`bench.evidence`; returns the result and the absent evidence."""
    from bench.evidence import cross_check

    name = "evidence"
    root = Path(run_dir)
    result, error = _load_result(root)
    if result is None:
        return _fail(name, error or ""), []
    try:
        files = bundle_files(root)
    except (BundleError, OSError, UnicodeError) as exc:
        return _fail(name, show(str(exc))), []
    failures, missing, held = cross_check(root, result, files)
    if failures:
        return _fail(name, failures[0] + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")), missing
    text = f"{len(held)} cross-checks hold ({', '.join(held)})" if held else "no cross-check applies"
    if missing:
        text += f"; evidence absent: {'; '.join(missing)}"
    return _pass(name, text), missing


def verify_bundle(
    run_dir: str | os.PathLike[str],
    *,
    pins: Mapping[str, Any] | None = None,
    trusted_keys: Iterable[str] | KeyRegistry | None = None,
    evidence: bool = True,
) -> VerifyReport:
    """Run every checker on ``run_dir``; ``report.ok`` is True only if all hold. Never raises.

    Checkers after a failed ``manifest``/``signature``/``schema`` check are not run (their input
    cannot be trusted); ``evidence=False`` leaves the cross-checks out (tests of other checkers).
    """
    root = Path(run_dir)
    report = VerifyReport(_printable(str(root)))
    try:
        if not root.is_dir():
            report.checks.append(_fail("bundle", f"{show(str(root))} is not a directory"))
            return report
    except (OSError, ValueError) as exc:
        report.checks.append(_fail("bundle", f"{show(str(root))} cannot be read: {show(str(exc))}"))
        return report
    trusted = trusted_keys if isinstance(trusted_keys, KeyRegistry) else (list(trusted_keys) if trusted_keys is not None else None)
    steps: list[tuple[str, Callable[[], CheckResult]]] = [
        ("manifest", lambda: check_manifest(root)),
        ("signature", lambda: check_signature(root, trusted)),
        ("schema", lambda: check_schema(root)),
        ("costs", lambda: check_costs(root)),
        ("pins", lambda: check_pins(root, pins)),
    ]
    gate = {"manifest", "signature", "schema"}
    for name, step in steps:
        try:
            check = step()
        except Exception as exc:  # noqa: BLE001 - verify never raises on a hostile bundle
            check = _fail(name, f"cannot check: {type(exc).__name__}: {show(str(exc))[:300]}")
        report.checks.append(check)
        if not check.ok and name in gate:
            return report
    if isinstance(trusted, KeyRegistry):
        signer = _signer_of(root, trusted)
        report.signer = signer
    if evidence:
        try:
            check, missing = check_evidence(root)
        except Exception as exc:  # noqa: BLE001
            check, missing = _fail("evidence", f"cannot check: {type(exc).__name__}: {show(str(exc))[:300]}"), []
        report.checks.append(check)
        report.evidence_missing = missing
    return report


def _printable(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return show(text)


def signer_of(run_dir: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """(public key hex, fingerprint) from a bundle's manifest.sig, or (None, None); never raises."""
    try:
        sig = _load_json(Path(run_dir) / SIGNATURE)
    except (OSError, ValueError):
        return None, None
    if not isinstance(sig, dict):
        return None, None
    public, fp = sig.get("public_key"), sig.get("key_fingerprint")
    return (public if isinstance(public, str) else None), (fp if isinstance(fp, str) else None)


def _signer_of(root: Path, registry: KeyRegistry) -> str | None:
    public, fp = signer_of(root)
    signer = registry.lookup(public, fp)
    return None if signer is None else signer.name
