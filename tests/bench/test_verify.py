"""bench.verify and `nanobench verify`: a valid bundle passes; any tampering fails, naming the first failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import verify
from bench.bundle import write_bundle
from bench.cli import main

try:
    from tests.bench.harness_fixtures import make_run_dir, synthetic_result
except ImportError:
    from harness_fixtures import make_run_dir, synthetic_result

BUNDLE_FILES = [
    "result.json",
    "events.jsonl",
    "power.csv",
    "logs/pretrain.log",
    "phases/base_eval/core.csv",
    "manifest.json",
    "manifest.sig",
]


@pytest.fixture
def key_dir(tmp_path, monkeypatch):
    d = tmp_path / "keys"
    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(d))
    return d


@pytest.fixture
def bundle(tmp_path, key_dir):
    run = make_run_dir(tmp_path)
    write_bundle(run)
    return run


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=60, env=os.environ.copy())


def _rewrite_result(run, mutate) -> None:
    result = json.loads((run / "result.json").read_text())
    mutate(result)
    (run / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def test_valid_bundle_passes(bundle):
    report = verify.verify_bundle(bundle)
    assert report.ok, report.message
    assert [c.name for c in report.checks] == ["manifest", "signature", "schema", "costs", "pins", "evidence"]
    assert report.message.startswith("OK")
    assert report.checks[-2].skipped  # no pins given
    assert "state.json" in " ".join(report.evidence_missing)  # the synthetic bundle has no state.json: noted, not ranked


def test_valid_bundle_passes_through_cli(bundle):
    proc = _cli("verify", str(bundle), "--no-preset-pins")
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


@pytest.mark.parametrize("rel", BUNDLE_FILES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipping_any_byte_fails(bundle, rel, where):
    path = bundle / rel
    data = bytearray(path.read_bytes())
    index = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[index] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify.verify_bundle(bundle)
    assert not report.ok
    assert main(["verify", str(bundle)]) == 1


def test_tampered_bundle_fails_through_cli(bundle):
    _rewrite_result(bundle, lambda r: r["triple"].update(usd=1.0))
    proc = _cli("verify", str(bundle))
    assert proc.returncode != 0
    assert "FAIL [manifest]" in proc.stderr and "result.json" in proc.stderr


def test_edited_number_fails_even_when_resigned(bundle, key_dir):
    """Whoever edits a cost and re-signs with their own key still fails the recomputation."""
    _rewrite_result(bundle, lambda r: r["phases"][2].update(seconds=r["phases"][2]["seconds"] - 600))
    assert verify.check_manifest(bundle).ok is False
    write_bundle(bundle, key_dir=key_dir / "attacker")
    report = verify.verify_bundle(bundle)
    assert report.first_failure.name == "costs"
    assert "pretrain" in report.message


def test_edited_triple_fails_when_resigned(bundle):
    _rewrite_result(bundle, lambda r: r["triple"].update(minutes=r["triple"]["minutes"] * 0.9))
    write_bundle(bundle)
    report = verify.verify_bundle(bundle)
    assert report.first_failure.name == "costs" and "minutes" in report.message


def test_edited_score_fails_when_resigned(bundle):
    _rewrite_result(bundle, lambda r: r["metrics"]["core"].update(score=0.3))
    write_bundle(bundle)
    assert "core" in verify.check_costs(bundle).message


def test_untrusted_key_fails(bundle, key_dir):
    from bench import signing

    own = signing.public_key_hex()
    assert verify.verify_bundle(bundle, trusted_keys=[own]).ok
    assert verify.verify_bundle(bundle, trusted_keys=[signing.key_fingerprint()]).ok
    write_bundle(bundle, key_dir=key_dir / "other")
    report = verify.verify_bundle(bundle, trusted_keys=[own])
    assert report.first_failure.name == "signature" and "not in the trusted keys" in report.message


def test_extra_and_missing_files(bundle):
    (bundle / "logs" / "extra.log").write_text("sneaked in\n")
    assert "not listed" in verify.check_manifest(bundle).message
    os.remove(bundle / "logs" / "extra.log")
    os.remove(bundle / "power.csv")
    assert "missing: 'power.csv'" in verify.check_manifest(bundle).message
    assert verify.check_signature(bundle).ok  # each checker stands alone


def test_artifacts_may_change(bundle):
    (bundle / "artifacts" / "checkpoints" / "base" / "model_000010.pt").write_bytes(b"other")
    assert verify.verify_bundle(bundle).ok


def test_missing_signature_and_manifest(bundle):
    os.remove(bundle / "manifest.sig")
    assert verify.verify_bundle(bundle).first_failure.name == "signature"
    os.remove(bundle / "manifest.json")
    report = verify.verify_bundle(bundle)
    assert report.first_failure.name == "manifest" and "missing" in report.message


def test_unknown_schema_version(bundle):
    _rewrite_result(bundle, lambda r: r.update(schema_version=99))
    write_bundle(bundle)
    report = verify.verify_bundle(bundle)
    assert report.first_failure.name == "schema" and "99" in report.message


def test_schema_requires_phase_fields(tmp_path, key_dir):
    result = synthetic_result()
    del result["phases"][1]["counted"]
    run = make_run_dir(tmp_path, result)
    write_bundle(run)
    assert "counted" in verify.check_schema(run).message


def test_pins(bundle, tmp_path):
    good = {"code_sha256": "a" * 64, "checkpoints": {"base": "f" * 64}}
    assert verify.verify_bundle(bundle, pins=good).ok
    bad = {"code_sha256": "a" * 64, "tokenizer_sha256": "0" * 64}
    report = verify.verify_bundle(bundle, pins=bad)
    assert report.first_failure.name == "pins" and "tokenizer_sha256" in report.message
    assert "missing" in verify.check_pins(bundle, {"new_hash": "x"}).message
    pins_file = tmp_path / "pins.json"
    pins_file.write_text(json.dumps({"workload": bad}))
    assert main(["verify", str(bundle), "--pins", str(pins_file)]) == 1
    pins_file.write_text(json.dumps(good))
    assert main(["verify", str(bundle), "--pins", str(pins_file)]) == 0


def test_pins_toml(bundle, tmp_path):
    pins_file = tmp_path / "pins.toml"
    pins_file.write_text('[workload]\ncode_sha256 = "' + "a" * 64 + '"\n[workload.checkpoints]\nbase = "' + "f" * 64 + '"\n')
    assert verify.load_pins(pins_file) == {"code_sha256": "a" * 64, "checkpoints": {"base": "f" * 64}}


def test_json_output(bundle, capsys):
    assert main(["verify", str(bundle), "--json", "--no-preset-pins"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and len(out["checks"]) == 6


def test_trusted_keys_file(bundle, tmp_path, capsys):
    from bench import signing

    keys = tmp_path / "trusted.txt"
    keys.write_text(f"# our lab\n{signing.key_fingerprint()}  # main key\n")
    assert main(["verify", str(bundle), "--trusted-keys", str(keys), "--no-preset-pins"]) == 0
    keys.write_text("SHA256:" + "0" * 32 + "\n")
    assert main(["verify", str(bundle), "--trusted-keys", str(keys)]) == 1


def test_not_a_directory(tmp_path):
    report = verify.verify_bundle(tmp_path / "nope")
    assert not report.ok and "not a directory" in report.message


def test_cli_checks_the_pins_shipped_for_the_preset_by_default(bundle):
    """The fixture's made-up workload hashes are not the speedrun pins nanobench ships."""
    assert main(["verify", str(bundle)]) == 1
    assert main(["verify", str(bundle), "--no-preset-pins"]) == 0
