"""Bad input and tampering: malformed, tampered, replayed and foreign-key bundles against all three
consumers — `verify` (must fail naming the problem, never crash), `submit` (must refuse, file nothing)
and the leaderboard build (must exclude with a reason, never stop). tests/bench/test_verify.py,
test_submission.py and test_leaderboard.py cover byte flips, re-signed edits, unsigned, forecast and
same-run-id replays; this adds hostile *structure* (garbage/nested JSON, traversal paths, symlinks,
special values) and the foreign-key and copy-under-another-name replays, all through the three paths."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from bench.bundle import write_bundle
from bench.leaderboard.model import Excluded, collect
from bench.signing import key_fingerprint
from bench.submission import SubmissionError, submit_bundle
from bench.verify import verify_bundle
from bench_fixtures import make_run_dir, synthetic_result


@pytest.fixture
def keys(tmp_path, monkeypatch):
    own = tmp_path / "keys-own"
    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(own))
    return own, tmp_path / "keys-attacker"


@pytest.fixture
def bundle(tmp_path, keys) -> Path:
    run = make_run_dir(tmp_path / "src")
    write_bundle(run)
    assert verify_bundle(run).ok
    return run


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _resign(run: Path, key_dir: Path) -> None:
    write_bundle(run, key_dir=key_dir)


# Each mutation gets (run_dir, attacker_key_dir) and damages the bundle in place.
def sig_not_json(run, _k):
    (run / "manifest.sig").write_text("{not json")


def sig_signature_not_hex(run, _k):
    _edit_json(run / "manifest.sig", lambda d: d.update(signature="zz" * 64))


def sig_short_public_key(run, _k):
    _edit_json(run / "manifest.sig", lambda d: d.update(public_key="abcd"))


def sig_null_fields(run, _k):
    _edit_json(run / "manifest.sig", lambda d: d.update(public_key=None, signature=None))


def sig_extra_field(run, _k):
    _edit_json(run / "manifest.sig", lambda d: d.update(comment="trust me"))


def sig_foreign_public_key(run, k):
    """Claim someone else's key while keeping our signature."""
    from bench.signing import public_key_hex

    _edit_json(run / "manifest.sig", lambda d: d.update(public_key=public_key_hex(k)))


def manifest_traversal_entry(run, _k):
    _edit_json(run / "manifest.json", lambda d: d["files"].update({"../outside.txt": {"sha256": "0" * 64, "size": 1}}))


def manifest_files_is_a_list(run, _k):
    _edit_json(run / "manifest.json", lambda d: d.update(files=list(d["files"])))


def manifest_is_an_array(run, _k):
    (run / "manifest.json").write_text("[1, 2, 3]")


def manifest_invalid_utf8(run, _k):
    (run / "manifest.json").write_bytes(b'{"files": "\xff\xfe"}')


def manifest_deeply_nested(run, _k):
    (run / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)


def result_deeply_nested_resigned(run, k):
    (run / "result.json").write_text('{"schema_version": ' + "[" * 200_000 + "]" * 200_000 + "}")
    _resign(run, k)


def result_truncated_resigned(run, k):
    text = (run / "result.json").read_text()
    (run / "result.json").write_text(text[: len(text) // 2])
    _resign(run, k)


def result_invalid_utf8_resigned(run, k):
    (run / "result.json").write_bytes(b"\xff" + (run / "result.json").read_bytes())
    _resign(run, k)


def result_nan_seconds_resigned(run, k):
    text = (run / "result.json").read_text()
    data = json.loads(text)
    data["phases"][0]["seconds"] = float("nan")
    (run / "result.json").write_text(json.dumps(data))  # json.dumps writes NaN, json.loads accepts it
    _resign(run, k)


def result_huge_number_resigned(run, k):
    text = (run / "result.json").read_text()
    data = json.loads(text)
    data["phases"][0]["usd"] = "__HUGE__"
    (run / "result.json").write_text(json.dumps(data).replace('"__HUGE__"', "1e999"))  # parses as inf
    _resign(run, k)


def result_phases_not_a_list_resigned(run, k):
    _edit_json(run / "result.json", lambda d: d.update(phases={"pretrain": 1}))
    _resign(run, k)


def result_is_an_array_resigned(run, k):
    (run / "result.json").write_text("[]")
    _resign(run, k)


def symlink_to_outside(run, _k):
    os.symlink("/etc/passwd", run / "logs" / "passwd")


def file_replaced_by_directory(run, _k):
    (run / "report.md").unlink(missing_ok=True)
    (run / "power.csv").unlink()
    (run / "power.csv").mkdir()


def fifo_in_bundle(run, _k):
    os.mkfifo(run / "logs" / "pipe")


MUTATIONS = [
    sig_not_json, sig_signature_not_hex, sig_short_public_key, sig_null_fields, sig_extra_field, sig_foreign_public_key,
    manifest_traversal_entry, manifest_files_is_a_list, manifest_is_an_array, manifest_invalid_utf8, manifest_deeply_nested,
    result_deeply_nested_resigned, result_truncated_resigned, result_invalid_utf8_resigned, result_nan_seconds_resigned,
    result_huge_number_resigned, result_phases_not_a_list_resigned, result_is_an_array_resigned,
    symlink_to_outside, file_replaced_by_directory, fifo_in_bundle,
]


@pytest.mark.parametrize("mutate", MUTATIONS, ids=[m.__name__ for m in MUTATIONS])
def test_bad_bundle_fails_verify_is_refused_by_submit_and_excluded_from_the_leaderboard(tmp_path, keys, bundle, mutate, capsys):
    from bench.cli import main

    _, attacker = keys
    mutate(bundle, attacker)
    report = verify_bundle(bundle)  # must not raise
    assert not report.ok and report.first_failure.message
    assert main(["verify", str(bundle)]) == 1
    assert "FAIL [" in capsys.readouterr().err
    subs = tmp_path / "submissions"
    with pytest.raises(SubmissionError):
        submit_bundle(bundle, subs, pins=False)
    assert not any(p for p in subs.rglob("*") if p.is_file()) if subs.exists() else True
    # filed by hand (a pull request to submissions/): the build must exclude it, with a reason, and go on
    target = subs / "speedrun" / "20261125-120000-abcd"
    shutil.copytree(bundle, target, symlinks=True, ignore=lambda d, names: [n for n in names if n == "pipe"])
    if mutate is fifo_in_bundle:
        os.mkfifo(target / "logs" / "pipe")
    boards, excluded = collect(subs, rank_rules=False)
    assert boards == [] and len(excluded) == 1 and isinstance(excluded[0], Excluded)
    assert excluded[0].reason


def test_foreign_key_resigned_bundle_is_visible_and_refused_where_keys_are_pinned(tmp_path, keys, bundle):
    """Someone edits a bundle and signs it with their own key: the signature is valid, so only a trusted-key
    list can refuse it; without one the foreign fingerprint is what everyone sees."""
    own, attacker = keys
    _edit_json(bundle / "result.json", lambda d: d.update(preset="speedrun"))
    _resign(bundle, attacker)
    trusted = [key_fingerprint(own)]
    assert verify_bundle(bundle).ok
    report = verify_bundle(bundle, trusted_keys=trusted)
    assert not report.ok and "not in the trusted keys" in report.message
    with pytest.raises(SubmissionError, match="trusted keys"):
        submit_bundle(bundle, tmp_path / "subs", trusted_keys=trusted, pins=False)
    keys_file = tmp_path / "trusted.txt"
    keys_file.write_text(f"# our lab\n{trusted[0]}\n")
    from bench.cli import main

    assert main(["verify", str(bundle), "--trusted-keys", str(keys_file)]) == 1
    dest = submit_bundle(bundle, tmp_path / "subs", pins=False)
    boards, excluded = collect(tmp_path / "subs", rank_rules=False)
    assert not excluded and boards[0].rows[0].key_fingerprint == key_fingerprint(attacker) != trusted[0]
    assert json.loads((dest / "submission.json").read_text())["key_fingerprint"] == key_fingerprint(attacker)


def test_replays_under_another_name_or_preset_are_excluded(tmp_path, keys, bundle):
    """A verifying bundle copied to a second place in submissions/ must not appear twice."""
    subs = tmp_path / "subs"
    dest = submit_bundle(bundle, subs, pins=False)
    shutil.copytree(dest, subs / "speedrun" / "20261125-120000-copy")  # same bundle, new directory name
    shutil.copytree(dest, subs / "smoke" / dest.name)  # same bundle under another preset
    boards, excluded = collect(subs, rank_rules=False)
    assert [len(b.rows) for b in boards] == [1]
    reasons = sorted(e.reason for e in excluded)
    assert len(reasons) == 2
    assert any("result.json says run_id" in r for r in reasons) and any("result.json says preset" in r for r in reasons)


def test_replayed_run_id_with_new_content_is_refused_and_the_original_kept(tmp_path, keys, bundle):
    subs = tmp_path / "subs"
    dest = submit_bundle(bundle, subs, pins=False)
    original = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    other = make_run_dir(tmp_path / "other", synthetic_result(notes_extra="different"))
    write_bundle(other)
    with pytest.raises(SubmissionError, match="replayed submission refused"):
        submit_bundle(other, subs, pins=False)
    assert {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == original
