"""Submissions: verified result bundles filed under ``submissions/<preset>/<run_id>/``.

:func:`submit_bundle` refuses anything that is not a signed, verifying measurement (forecasts,
unsigned or tampered bundles), copies the bundle's signed files (never ``artifacts/``) into place
atomically, and writes the submitter's label/availability/notes to ``submission.json`` beside them.
That file is not covered by the signature (``bench.bundle`` leaves it out of manifests), so the
bundle still verifies; its ``manifest_sha256`` ties it to the bundle it describes.

A run_id names one submission for good: submitting a *different* bundle under an existing
``<preset>/<run_id>`` is refused as a replay; submitting the identical bundle again only updates
the metadata. A run nonce names one measurement for good: a bundle whose ``run_nonce`` another
submission already carries (a copied and resumed run directory) is refused.

By default the bundle is checked against the pins nanobench ships for its preset
(``bench/pins/<preset>.json``; ``pins=False`` opts out), and its signer is looked up in the key
registry ``<submissions>/keys``: with ``trusted_keys`` given an unknown signer is refused, without
it the submission is filed and :func:`submit_bundle`'s caller is told the board will not rank it
until the key is registered. Every file is read without following links and with size caps.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.atomic import write_json_atomic
from bench.bundle import MANIFEST, SIGNATURE, SUBMISSION_META, BundleError, bundle_files
from bench.hashing import sha256_file
from bench.safe_read import UnsafeFile, is_regular, load_json, read_bytes, show
from bench.verify import MEASURED, RESULT, verify_bundle

AVAILABILITY = ("rentable", "owned", "pre-release")
SUBMISSION_VERSION = 1
FORECAST_KINDS = frozenset({"forecast", "estimate", "projection"})
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_LABEL_CHARS = 200
MAX_NOTES_CHARS = 4000
KEYS_DIRNAME = "keys"  # submissions/keys/: the key registry, not a preset


class SubmissionError(Exception):
    """A bundle cannot be submitted; the message says why."""


@dataclass(frozen=True)
class SubmissionMeta:
    """What ``submission.json`` holds (submitter-provided, unsigned)."""

    run_id: str
    preset: str
    manifest_sha256: str
    key_fingerprint: str
    submitted_utc: str
    label: str | None = None
    availability: str | None = None
    notes: str | None = None
    submission_version: int = SUBMISSION_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_forecast(result: Mapping[str, Any]) -> bool:
    """True when a result.json dict is anything but a measured run (a forecast, estimate, "forecasted", ...).

    A bundle without ``kind`` predates the field and was measured."""
    kind = result.get("kind", MEASURED)
    return kind != MEASURED


def safe_name(value: Any) -> bool:
    """True when ``value`` can be one path component of ``submissions/`` (no separators, no dots first)."""
    return isinstance(value, str) and bool(_SAFE_NAME.match(value))


def _read_json(path: Path) -> Any:
    """Strict, capped, link-refusing JSON; FileNotFoundError when absent, ValueError otherwise."""
    try:
        return load_json(path)
    except UnsafeFile as exc:
        if not os.path.lexists(path):
            raise FileNotFoundError(str(path)) from None
        raise ValueError(str(exc)) from None


def _read_result(run_dir: Path) -> dict[str, Any]:
    try:
        result = _read_json(run_dir / RESULT)
    except FileNotFoundError as exc:
        raise SubmissionError(f"{run_dir} has no {RESULT}") from exc
    except (OSError, ValueError) as exc:
        raise SubmissionError(f"{RESULT} is not valid JSON: {exc}") from exc
    if not isinstance(result, dict):
        raise SubmissionError(f"{RESULT} is not a JSON object")
    return result


def _clean_text(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SubmissionError(f"{name} must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SubmissionError(f"{name} is not valid Unicode text") from None
    text = value.strip()
    if len(text) > limit:
        raise SubmissionError(f"{name} is longer than {limit} characters")
    return text or None


def _same_bundle(a: Path, b: Path) -> bool:
    """Two bundle directories carry byte-identical manifests and signatures."""
    try:
        return all((a / n).read_bytes() == (b / n).read_bytes() for n in (MANIFEST, SIGNATURE))
    except OSError:
        return False


def _copy_bundle(src: Path, dest: Path) -> int:
    """Copy the manifest-covered files plus manifest and signature; returns the file count."""
    try:
        rels = bundle_files(src)
    except BundleError as exc:
        raise SubmissionError(str(exc)) from exc
    for rel in [*rels, MANIFEST, SIGNATURE]:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = read_bytes(src / rel, cap=1 << 30)  # never through a link, never a FIFO
        except UnsafeFile as exc:
            raise SubmissionError(str(exc)) from None
        target.write_bytes(data)
    return len(rels) + 2


def _fingerprint(run_dir: Path) -> str:
    try:
        sig = _read_json(run_dir / SIGNATURE)
    except (OSError, ValueError):
        return ""
    return str(sig.get("key_fingerprint", "")) if isinstance(sig, dict) else ""


def nonces_in(submissions_dir: str | os.PathLike[str]) -> dict[str, str]:
    """``run_nonce -> "<preset>/<run_id>"`` over every filed submission (unreadable ones skipped)."""
    found: dict[str, str] = {}
    for path in iter_submission_dirs(submissions_dir):
        try:
            result = _read_json(path / RESULT)
        except (OSError, ValueError):
            continue
        nonce = result.get("run_nonce") if isinstance(result, dict) else None
        if isinstance(nonce, str):
            found.setdefault(nonce, f"{path.parent.name}/{path.name}")
    return found


def shipped_pins(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pins nanobench ships for the result's preset, if any."""
    from bench.workload_identity import load_preset_pins

    preset = result.get("preset")
    if not safe_name(preset):
        return None
    try:
        return load_preset_pins(preset)
    except (OSError, ValueError):
        return None


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def submit_bundle(
    run_dir: str | os.PathLike[str],
    submissions_dir: str | os.PathLike[str] = "submissions",
    *,
    label: str | None = None,
    availability: str | None = None,
    notes: str | None = None,
    pins: Mapping[str, Any] | None | bool = None,
    trusted_keys: Any = None,
    replace_meta: bool = False,
) -> Path:
    """Verify ``run_dir`` and file it as ``submissions_dir/<preset>/<run_id>/``; returns that path.

    ``pins``: a pins mapping, ``None`` (the shipped pins of the bundle's preset, when there are
    any) or ``False`` (no pin check). ``trusted_keys``: a key list or
    :class:`~bench.key_registry.KeyRegistry` the signer must be in (``None``: anyone may file).

    Raises :class:`SubmissionError` (with the reason) for a forecast, an unsigned or failing
    bundle, unsafe preset/run_id names, bad metadata, a different bundle already filed under
    the same run_id, or a bundle whose run nonce is already filed.
    """
    src = Path(run_dir)
    try:
        if not src.is_dir():
            raise SubmissionError(f"{show(str(src))} is not a directory")
    except (OSError, ValueError) as exc:
        raise SubmissionError(f"{show(str(src))} cannot be read: {exc}") from None
    result = _read_result(src)
    if is_forecast(result):
        raise SubmissionError(f"{show(str(src))} holds a forecast (kind={show(result.get('kind'))}), not a measured run; forecasts cannot be submitted")
    if pins is None:
        pins = shipped_pins(result)
    elif pins is False:
        pins = None
    if not is_regular(src / SIGNATURE):
        raise SubmissionError(f"{src} is not signed ({SIGNATURE} is missing); only signed bundles can be submitted")
    if availability is not None and availability not in AVAILABILITY:
        raise SubmissionError(f"availability must be one of {AVAILABILITY}, got {availability!r}")
    label = _clean_text("label", label, MAX_LABEL_CHARS)
    notes = _clean_text("notes", notes, MAX_NOTES_CHARS)
    report = verify_bundle(src, pins=pins, trusted_keys=trusted_keys)
    if not report.ok:
        raise SubmissionError(f"bundle does not verify: {report.message}")
    preset, run_id = result.get("preset"), result.get("run_id")
    for field, value in (("preset", preset), ("run_id", run_id)):
        if not safe_name(value) or value == KEYS_DIRNAME:
            raise SubmissionError(f"result.json {field} {show(value)[:200]} cannot name a submission directory (letters, digits, . _ - only)")
    nonce = result.get("run_nonce")
    if isinstance(nonce, str):
        holder = nonces_in(submissions_dir).get(nonce)
        if holder is not None and holder != f"{preset}/{run_id}":
            raise SubmissionError(f"run nonce already submitted as {holder}: this bundle is a copy of that measurement")

    preset_dir = Path(submissions_dir) / preset
    dest = preset_dir / run_id
    meta = SubmissionMeta(
        run_id=run_id,
        preset=preset,
        manifest_sha256=sha256_file(src / MANIFEST),
        key_fingerprint=_fingerprint(src),
        submitted_utc=_utc_now(),
        label=label,
        availability=availability,
        notes=notes,
    )
    if dest.exists():
        if not dest.is_dir() or dest.is_symlink() or not _same_bundle(src, dest):
            raise SubmissionError(
                f"replayed submission refused: {dest} already holds a different bundle with run_id {run_id!r}"
            )
        previous, _ = load_meta(dest)
        changed = [k for k in ("label", "availability", "notes")
                   if getattr(meta, k) is not None and previous.get(k) is not None and previous.get(k) != getattr(meta, k)]
        if changed and not replace_meta:  # a second submit never silently overwrites what the first one said
            raise SubmissionError(
                f"{preset}/{run_id} is already filed with " + ", ".join(f"{k} {show(previous[k])[:80]}" for k in changed)
                + "; pass --replace-meta to change it"
            )
        kept = {k: previous.get(k) for k in ("label", "availability", "notes") if getattr(meta, k) is None}
        merged = {**meta.to_dict(), **{k: v for k, v in kept.items() if v is not None}}
        write_json_atomic(dest / SUBMISSION_META, merged, sort_keys=True)
        return dest

    preset_dir.mkdir(parents=True, exist_ok=True)
    staging = preset_dir / f".incoming-{run_id}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        _copy_bundle(src, staging)
        copied = verify_bundle(staging, pins=pins, trusted_keys=trusted_keys)
        if not copied.ok:
            raise SubmissionError(f"the copied bundle does not verify (changed while copying?): {copied.message}")
        write_json_atomic(staging / SUBMISSION_META, meta.to_dict(), sort_keys=True)
        try:
            os.rename(staging, dest)
        except OSError as exc:
            raise SubmissionError(f"{dest} appeared while submitting; not overwriting it ({exc})") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def load_meta(submission_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], str | None]:
    """The ``submission.json`` of a submission as a dict, plus a problem description (or None).

    Never raises: a missing file gives ``({}, None)``; unreadable or wrongly typed content gives
    ``({}, reason)`` or the usable fields with the reason.
    """
    path = Path(submission_dir) / SUBMISSION_META
    if not os.path.lexists(path):
        return {}, None
    try:
        data = _read_json(path)
    except (OSError, ValueError) as exc:
        return {}, f"{SUBMISSION_META} is not valid JSON: {exc}"
    if not isinstance(data, dict):
        return {}, f"{SUBMISSION_META} is not a JSON object"
    meta: dict[str, Any] = {}
    problems = []
    for key in ("label", "availability", "notes", "submitted_utc", "manifest_sha256", "key_fingerprint"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            limit = MAX_NOTES_CHARS if key == "notes" else MAX_LABEL_CHARS
            if len(value) > limit:
                problems.append(f"{key} cut to {limit} characters")
                value = value[:limit] + "..."
            meta[key] = value
        else:
            problems.append(f"{key} is not text")
    if meta.get("availability") not in (None, *AVAILABILITY):
        problems.append(f"unknown availability {meta.pop('availability')!r}")
    return meta, ("; ".join(problems) or None)


def iter_submission_dirs(submissions_dir: str | os.PathLike[str]) -> list[Path]:
    """Every ``<preset>/<run_id>`` directory under ``submissions_dir`` (hidden names skipped), sorted."""
    root = Path(submissions_dir)
    if not root.is_dir():
        return []
    found = []
    for preset in sorted(root.iterdir()):
        if preset.name.startswith(".") or preset.name == KEYS_DIRNAME or not preset.is_dir() or preset.is_symlink():
            continue
        for run in sorted(preset.iterdir()):
            if run.name.startswith(".") or not run.is_dir() or run.is_symlink():
                continue
            found.append(run)
    return found


def resolve_ref(ref: str, submissions_dir: str | os.PathLike[str] = "submissions") -> Path:
    """A run dir, submission dir or result.json path as given, else ``submissions_dir/<preset>/<run_id>``."""
    path = Path(ref)
    if path.exists():
        return path
    parts = ref.strip("/").split("/")
    if len(parts) == 2 and all(safe_name(p) for p in parts):
        candidate = Path(submissions_dir) / parts[0] / parts[1]
        if candidate.is_dir():
            return candidate
    raise SubmissionError(f"{ref!r} is neither a path nor a submission id <preset>/<run_id> under {submissions_dir}")
