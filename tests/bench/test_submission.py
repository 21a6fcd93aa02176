"""bench.submission and `nanobench submit`: valid bundles are filed (and still verify); tampered,
unsigned, forecast and replayed ones are refused with the reason."""

from __future__ import annotations

import json

import pytest

from bench.bundle import write_bundle
from bench.cli import main
from bench.submission import (
    SubmissionError,
    iter_submission_dirs,
    load_meta,
    resolve_ref,
    submit_bundle,
)
from bench.verify import verify_bundle

try:
    from tests.bench.harness_fixtures import make_run_dir, synthetic_result
except ImportError:
    from harness_fixtures import make_run_dir, synthetic_result

RUN_ID = "20261125-120000-abcd"


@pytest.fixture
def key_dir(tmp_path, monkeypatch):
    d = tmp_path / "keys"
    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(d))
    return d


def _bundle(tmp_path, name="a", result=None):
    root = tmp_path / name
    root.mkdir()
    run = make_run_dir(root, result)
    write_bundle(run)
    return run


def test_submit_files_a_verifying_copy_without_artifacts(tmp_path, key_dir):
    run = _bundle(tmp_path)
    subs = tmp_path / "submissions"
    dest = submit_bundle(run, subs, label="8xH100 SXM (lambda)", availability="rentable", notes="first try", pins=False)
    assert dest == subs / "speedrun" / RUN_ID
    assert (dest / "result.json").read_bytes() == (run / "result.json").read_bytes()
    assert (dest / "manifest.sig").is_file() and (dest / "logs" / "pretrain.log").is_file()
    assert not (dest / "artifacts").exists()
    assert verify_bundle(dest).ok, verify_bundle(dest).message  # submission.json sits outside the signature
    meta, problem = load_meta(dest)
    assert problem is None
    assert meta["label"] == "8xH100 SXM (lambda)" and meta["availability"] == "rentable" and meta["notes"] == "first try"
    assert len(meta["manifest_sha256"]) == 64 and meta["key_fingerprint"].startswith("SHA256:")
    assert "label" not in json.loads((dest / "result.json").read_text())
    assert iter_submission_dirs(subs) == [dest]


def test_cli_submit(tmp_path, key_dir, capsys):
    run = _bundle(tmp_path)
    subs = tmp_path / "submissions"
    assert main(["submit", str(run), "--no-preset-pins", "--submissions", str(subs), "--label", "1x test", "--availability", "owned"]) == 0
    assert "submitted" in capsys.readouterr().out
    assert load_meta(subs / "speedrun" / RUN_ID)[0]["availability"] == "owned"


def test_tampered_bundle_is_refused(tmp_path, key_dir, capsys):
    run = _bundle(tmp_path)
    result = json.loads((run / "result.json").read_text())
    result["triple"]["usd"] = 1.0
    (run / "result.json").write_text(json.dumps(result))
    subs = tmp_path / "submissions"
    with pytest.raises(SubmissionError, match=r"does not verify: FAIL \[manifest\]"):
        submit_bundle(run, subs, pins=False)
    assert main(["submit", str(run), "--no-preset-pins", "--submissions", str(subs)]) == 1
    assert "submission refused" in capsys.readouterr().err
    assert iter_submission_dirs(subs) == []


def test_unsigned_bundle_is_refused(tmp_path, key_dir):
    run = _bundle(tmp_path)
    (run / "manifest.sig").unlink()
    with pytest.raises(SubmissionError, match="not signed"):
        submit_bundle(run, tmp_path / "submissions", pins=False)


def test_forecast_is_refused_even_when_signed(tmp_path, key_dir):
    run = _bundle(tmp_path, result=synthetic_result(kind="forecast"))
    report = verify_bundle(run)  # signed and consistent, but a forecast is not a result
    assert not report.ok and "kind" in report.message
    with pytest.raises(SubmissionError, match="forecast"):
        submit_bundle(run, tmp_path / "submissions", pins=False)
    assert not (tmp_path / "submissions" / "speedrun").exists()


def test_replayed_run_id_with_different_content_is_refused(tmp_path, key_dir):
    subs = tmp_path / "submissions"
    first = submit_bundle(_bundle(tmp_path, "a"), subs, label="original", pins=False)
    original = (first / "result.json").read_bytes()
    other = synthetic_result()
    other["metrics"]["val_bpb"] = 0.5  # same run_id, different (validly signed) content
    with pytest.raises(SubmissionError, match="replayed"):
        submit_bundle(_bundle(tmp_path, "b", other), subs, pins=False)
    assert (first / "result.json").read_bytes() == original
    assert load_meta(first)[0]["label"] == "original"


def test_identical_resubmission_only_updates_metadata(tmp_path, key_dir):
    subs = tmp_path / "submissions"
    run = _bundle(tmp_path)
    dest = submit_bundle(run, subs, label="old label", notes="keep", pins=False)
    # a second submit never silently overwrites the label: refused, the first label stays
    with pytest.raises(SubmissionError, match="already filed with label 'old label'.*--replace-meta"):
        submit_bundle(run, subs, label="new label", pins=False)
    assert load_meta(dest)[0]["label"] == "old label"
    assert submit_bundle(run, subs, label="old label", availability="owned", pins=False) == dest  # same label, new field: fine
    assert submit_bundle(run, subs, label="new label", pins=False, replace_meta=True) == dest
    meta, _ = load_meta(dest)
    assert meta["label"] == "new label" and meta["notes"] == "keep" and meta["availability"] == "owned"
    assert verify_bundle(dest).ok


def test_cli_second_submit_with_another_label_is_refused(tmp_path, key_dir, capsys):
    subs = tmp_path / "submissions"
    run = _bundle(tmp_path)
    assert main(["submit", str(run), "--submissions", str(subs), "--label", "first", "--no-preset-pins"]) == 0
    capsys.readouterr()
    assert main(["submit", str(run), "--submissions", str(subs), "--label", "second", "--no-preset-pins"]) == 1
    assert "--replace-meta" in capsys.readouterr().err
    assert main(["submit", str(run), "--submissions", str(subs), "--label", "second", "--no-preset-pins", "--replace-meta"]) == 0


@pytest.mark.parametrize("run_id", ["../escape", "a/b", ".hidden", ""])
def test_unsafe_run_id_is_refused(tmp_path, key_dir, run_id):
    run = _bundle(tmp_path, result=synthetic_result(run_id=run_id))
    with pytest.raises(SubmissionError, match="run_id"):
        submit_bundle(run, tmp_path / "submissions", pins=False)
    assert not (tmp_path / "escape").exists()


def test_bad_metadata_is_refused(tmp_path, key_dir):
    run = _bundle(tmp_path)
    with pytest.raises(SubmissionError, match="availability"):
        submit_bundle(run, tmp_path / "submissions", availability="cheap", pins=False)
    with pytest.raises(SubmissionError, match="label"):
        submit_bundle(run, tmp_path / "submissions", label="x" * 1000, pins=False)


def test_resolve_ref_and_broken_metadata(tmp_path, key_dir):
    subs = tmp_path / "submissions"
    dest = submit_bundle(_bundle(tmp_path), subs, pins=False)
    assert resolve_ref(f"speedrun/{RUN_ID}", subs) == dest
    assert resolve_ref(str(dest), subs) == dest
    with pytest.raises(SubmissionError):
        resolve_ref("speedrun/nope", subs)
    (dest / "submission.json").write_text('{"label": 5, "availability": "free"}')
    meta, problem = load_meta(dest)
    assert meta.get("label") is None and "availability" not in meta
    assert "label is not text" in problem and "unknown availability" in problem
    (dest / "submission.json").write_text("not json")
    assert load_meta(dest)[0] == {} and "not valid JSON" in load_meta(dest)[1]
