"""Issue 14: every attack of the hostile-submitter pass, replayed against `verify`, `submit` and the board.

Each attack starts from a *real* bundle (a committed smoke run, copied, given a nonce and re-signed,
so its logs, power samples, progress records and per-task CSVs are genuine) and damages it the way
the attack pass did. Every one of them was accepted (ranked, published, or crashed the tool) before
issue 14; each test asserts the refusal and its reason. ``ATTACKS`` names them all: the count in
docs/reliability.md is ``len(ATTACKS)``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

from bench.bundle import write_bundle
from bench.cli import main
from bench.key_registry import load_registry
from bench.leaderboard.build import build_site
from bench.leaderboard.model import collect
from bench.submission import SubmissionError, submit_bundle
from bench.verify import verify_bundle
from tests.bench.real_bundle import file_by_hand, load_result, real_bundle, register_key

ATTACKS = [
    "partial run (download,tokenizer, --no-probe, no scores)",
    "phases: [] re-signed ($0)",
    "counted: false on the counted phases",
    "valid: false",
    "determinism divergent",
    "seconds / 100 with consistent costs",
    "CORE 0.35 claimed",
    "8x H100 claimed in result.json and system.json",
    "fresh unregistered key",
    "progress/ step times scaled with the result",
    "submit without --pins (shipped pins skipped)",
    "spec differs ranked among the others",
    "state.json edited, then --resume",
    "cp -a run + --resume: second bundle of one measurement",
    "submission.json symlink to the private key",
    "FIFO named manifest.json hangs the build",
    "logs/evil.xht with <script> published",
    "manifest name with a lone surrogate",
    '"seconds": 1e400',
    "manifest lists a file twice",
    'kind: "forecasted" submitted',
    "300k-character label",
    "20 MB report.md",
    "busy machine ranked",
    "--hourly-rate 0 ranked first at $0",
]


@pytest.fixture
def env(tmp_path, monkeypatch):
    key_dir = tmp_path / "key"
    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(key_dir))
    subs = tmp_path / "submissions"
    register_key(subs, key_dir)
    return tmp_path, key_dir, subs


def _pins(run: Path) -> dict:
    return load_result(run)["workload"]


def _board(subs: Path, pins: dict) -> tuple[list[str], dict[str, str]]:
    boards, excluded = collect(subs, pins)
    ranked = [e.row.run_id for b in boards for e in b.entries if e.row.ranked]
    return ranked, {x.submission.split("/", 1)[1]: x.reason for x in excluded if "/" in x.submission}


def _honest(env, run_id="honest", **kw) -> Path:
    tmp, key_dir, subs = env
    return real_bundle(tmp / "w", key_dir, run_id=run_id, **kw)


def _refused_by_board(env, run: Path, reason: str, pins: dict | None = None) -> str:
    tmp, _, subs = env
    file_by_hand(run, subs)
    ranked, excluded = _board(subs, pins or _pins(run))
    assert run.name not in ranked
    assert reason in excluded[run.name], excluded[run.name]
    return excluded[run.name]


def test_honest_real_bundle_ranks_with_signer_and_reference_cost(env):
    tmp, key_dir, subs = env
    run = _honest(env, rate=24.0)
    file_by_hand(run, subs)
    boards, excluded = collect(subs, _pins(run))
    assert not excluded, excluded
    row = boards[0].entries[0].row
    assert (row.rank, row.signer, row.signer_owner) == (1, "Test Lab (CI key)", "test-lab")
    assert row.reference_unit == "vCPU-hours" and row.reference_units == pytest.approx(2 * row.minutes / 60)
    assert row.reference_usd == pytest.approx(row.reference_units * row.reference_rate)


def test_partial_run_without_scores_is_not_ranked(env):
    def partial(r):
        r["phases"] = [p for p in r["phases"] if p["name"] in ("download", "tokenizer")]
        r["metrics"] = {"tokenizer": r["metrics"]["tokenizer"]}
        r["determinism"] = {"class": "not_checked", "reason": "probe data missing"}

    run = _honest(env, run_id="partial", mutate=partial)
    # its state.json still holds the other phases: the evidence disagrees outright
    assert not verify_bundle(run).ok
    state = json.loads((run / "state.json").read_text())
    state["phases"] = {k: v for k, v in state["phases"].items() if k in ("download", "tokenizer")}
    (run / "state.json").write_text(json.dumps(state))
    write_bundle(run, key_dir=env[1])
    assert verify_bundle(run).ok  # honest about being partial...
    reason = _refused_by_board(env, run, "incomplete: phase(s) pretrain, base_eval")  # ...so it does not rank
    assert "no CORE score" in reason and "no ChatCORE score" in reason


def test_empty_phases_resigned_is_refused(env):
    run = _honest(env, run_id="nophases", mutate=lambda r: r.update(phases=[]))
    report = verify_bundle(run)
    assert not report.ok and "state.json holds phases result.json leaves out" in report.message
    _refused_by_board(env, run, "state.json holds phases")


def test_uncounted_phases_are_refused(env):
    def uncount(r):
        for p in r["phases"]:
            if p["name"] not in ("download", "determinism_probe"):
                p["counted"] = False

    run = _honest(env, run_id="uncounted", mutate=uncount)
    assert verify_bundle(run).ok  # arithmetic consistent, evidence untouched
    _refused_by_board(env, run, "phase 'pretrain' has counted=False, the preset counts it True")


def test_invalid_run_is_not_ranked(env):
    run = _honest(env, run_id="invalid", mutate=lambda r: r.update(valid=False, validity_problems=["convergence: out of band"]))
    _refused_by_board(env, run, "not valid")


def test_divergent_determinism_claim_disagrees_with_the_probe_records(env):
    run = _honest(env, run_id="divergent", mutate=lambda r: r["determinism"].update({"class": "divergent"}))
    report = verify_bundle(run)
    assert not report.ok and "determinism class 'divergent' != 'bitwise'" in report.message
    _refused_by_board(env, run, "determinism")


def test_seconds_divided_by_100_disagree_with_events_and_power(env):
    def faster(r):
        for p in r["phases"]:
            p["seconds"] /= 100

    run = _honest(env, run_id="fast", mutate=faster)
    report = verify_bundle(run)
    assert not report.ok and "events.jsonl spans" in report.message
    # a forger who also rewrites events.jsonl is caught by power.csv
    events = []
    phases = {p["name"]: p for p in load_result(run)["phases"]}
    starts = {}
    for line in (run / "events.jsonl").read_text().splitlines():
        e = json.loads(line.split(" ", 1)[1])
        if e["key"] == "phase_start":
            starts[e["value"]] = e["time_ms"]
        if e["key"] == "phase_stop":
            e["time_ms"] = starts[e["value"]] + int(phases[e["value"]]["seconds"] * 1000)
        events.append(":::MLLOG " + json.dumps(e))
    (run / "events.jsonl").write_text("\n".join(events) + "\n")
    write_bundle(run, key_dir=env[1])
    report = verify_bundle(run)
    assert not report.ok and "power.csv samples span" in report.message, report.message


def test_claimed_core_disagrees_with_the_per_task_csv(env):
    def better(r):
        r["metrics"]["core"]["score"] = 0.35

    run = _honest(env, run_id="core", mutate=better)
    report = verify_bundle(run)
    assert not report.ok and "metrics.core.score 0.35" in report.message
    # also editing the stage's own result and state.json: the per-task CSV still disagrees
    for rel in ("phases/base_eval/result.json",):
        data = json.loads((run / rel).read_text())
        data["core"] = 0.35
        (run / rel).write_text(json.dumps(data, indent=2))
    state = json.loads((run / "state.json").read_text())
    state["phases"]["base_eval"]["result"]["core"] = 0.35
    (run / "state.json").write_text(json.dumps(state))
    write_bundle(run, key_dir=env[1])
    report = verify_bundle(run)
    assert not report.ok and "CORE 0.35 !=" in report.message, report.message


def test_claimed_gpus_disagree_with_the_cpu_pretraining_record(env):
    gpus = {"count": 8, "devices": [{"name": "NVIDIA H100 80GB HBM3"}] * 8, "driver_version": "570", "cuda_driver_version": 12080}

    run = _honest(env, run_id="h100", mutate=lambda r: r["system"].update(gpus=gpus, accelerator_count=8))
    system = json.loads((run / "system.json").read_text())
    system.update(gpus=gpus, accelerator_count=8)
    (run / "system.json").write_text(json.dumps(system, indent=2))
    write_bundle(run, key_dir=env[1])
    report = verify_bundle(run)
    assert not report.ok and "pretraining ran on the CPU" in report.message


def test_fresh_unregistered_key_is_not_ranked(env):
    tmp, _, subs = env
    run = real_bundle(tmp / "w", tmp / "stranger", run_id="stranger")
    assert verify_bundle(run).ok
    _refused_by_board(env, run, "not in the key registry")
    report = verify_bundle(run, trusted_keys=load_registry(subs / "keys"))
    assert not report.ok and "not in the key registry" in report.message
    with pytest.raises(SubmissionError, match="not in the key registry"):
        submit_bundle(run, tmp / "other-subs", pins=_pins(run), trusted_keys=load_registry(subs / "keys"))


def test_scaled_step_times_break_the_fingerprint_free_sum(env):
    """Rewriting progress/ to match faster seconds changes the steady-state sum: it must equal the result's."""
    run = _honest(env, run_id="steps")
    lines = []
    for line in (run / "progress" / "pretrain.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("key") == "step":
            e["metadata"]["dt"] /= 100
        lines.append(json.dumps(e))
    (run / "progress" / "pretrain.jsonl").write_text("\n".join(lines) + "\n")
    write_bundle(run, key_dir=env[1])
    report = verify_bundle(run)
    assert not report.ok and "summed from progress/pretrain.jsonl" in report.message


def test_submit_checks_the_shipped_pins_by_default(env, monkeypatch):
    tmp, key_dir, subs = env
    run = _honest(env, run_id="spec", mutate=lambda r: r["workload"].update(code_sha256="0" * 64))
    monkeypatch.setattr("bench.submission.shipped_pins", lambda result: {"code_sha256": "1" * 64})
    with pytest.raises(SubmissionError, match="pins"):
        submit_bundle(run, subs)
    assert not (subs / "smoke" / "spec").exists()
    assert submit_bundle(run, subs, pins=False).is_dir()  # an explicit opt-out still files it ...


def test_spec_differs_is_excluded_not_ranked(env):
    run = _honest(env, run_id="spec2", mutate=lambda r: r["workload"].update(code_sha256="0" * 64))
    _refused_by_board(env, run, "workload differs from the pinned spec", pins={**_pins(run), "code_sha256": "1" * 64})


def test_tampered_state_fails_resume(tmp_path, monkeypatch):
    from bench.config import load_config
    from bench.display import RunDisplay
    from bench.phases import Launch
    from bench.pipeline import RunPlan, RunState, execute
    from bench.state_seal import StateTampered, state_secret

    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(tmp_path / "key"))
    run = tmp_path / "run"
    run.mkdir()
    secret = state_secret()
    state = RunState(run / "state.json", {"pretrain": {"ok": True, "seconds": 100.0, "result": {"val_bpb": 2.0}}}, None, "ab" * 16, secret)
    state.save()
    assert RunState.load(run / "state.json", secret=secret).phases["pretrain"]["seconds"] == 100.0
    data = json.loads((run / "state.json").read_text())
    data["phases"]["pretrain"]["seconds"] = 1.0
    (run / "state.json").write_text(json.dumps(data))
    with pytest.raises(StateTampered, match="phase 'pretrain' does not match its seal"):
        RunState.load(run / "state.json", secret=secret)
    preset = load_config().preset("smoke")
    plan = RunPlan(preset=preset, run_dir=run, cache_dir=tmp_path / "cache", launch=Launch(device="cpu"), phases=["pretrain"],
                   hourly_rate=1.0, resume=True)
    with pytest.raises(StateTampered):
        execute(plan, RunDisplay(hourly_rate=1.0))  # refused before any stage starts
    # a state sealed by another user's key does not fit either
    data["phases"]["pretrain"]["seconds"] = 100.0
    (run / "state.json").write_text(json.dumps(data))
    with pytest.raises(StateTampered):
        RunState.load(run / "state.json", secret=state_secret(tmp_path / "other-key"))


def test_copied_run_gives_one_measurement_not_two(env):
    tmp, key_dir, subs = env
    first = _honest(env, run_id="original")
    nonce = load_result(first)["run_nonce"]
    copy = real_bundle(tmp / "w2", key_dir, run_id="copy", nonce=nonce)
    submit_bundle(first, subs, pins=_pins(first))
    with pytest.raises(SubmissionError, match="run nonce already submitted as smoke/original"):
        submit_bundle(copy, subs, pins=_pins(copy))
    file_by_hand(copy, subs)  # filed by hand instead
    ranked, excluded = _board(subs, _pins(first))
    assert ranked == ["original"] and "same run nonce as smoke/original" in excluded["copy"]


def test_symlinked_submission_json_never_publishes_the_key(env):
    tmp, key_dir, subs = env
    run = file_by_hand(_honest(env, run_id="keylink"), subs)
    secret = (key_dir / "signing_key.pem").read_text()
    (run / "submission.json").symlink_to(key_dir / "signing_key.pem")
    report = build_site(subs, tmp / "site", pins=_pins(run))
    leaked = [p for p in (tmp / "site").rglob("*") if p.is_file() and "PRIVATE KEY" in p.read_text(errors="replace")]
    assert not leaked and secret
    assert any("submission.json is not a regular file" in x.reason for x in report.excluded)


def _in_thread(fn, seconds=60):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung"
    return box.get("value")


def test_fifo_named_like_a_bundle_file_does_not_hang(env):
    tmp, _, subs = env
    run = file_by_hand(_honest(env, run_id="fifo"), subs)
    (run / "manifest.json").unlink()
    os.mkfifo(run / "manifest.json")
    run2 = file_by_hand(_honest(env, run_id="fifo2"), subs)
    os.mkfifo(run2 / "submission.json")
    report = _in_thread(lambda: build_site(subs, tmp / "site", pins=_pins(run)))
    reasons = {x.submission: x.reason for x in report.excluded}
    assert "not a regular file" in reasons["smoke/fifo"] and "not a regular file" in reasons["smoke/fifo2"]
    assert _in_thread(lambda: main(["verify", str(run), "--no-preset-pins"])) == 1


def test_xht_log_is_served_as_text(env):
    tmp, key_dir, subs = env
    run = _honest(env, run_id="xht")
    (run / "logs" / "evil.xht").write_text('<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>')
    write_bundle(run, key_dir=key_dir)
    file_by_hand(run, subs)
    build_site(subs, tmp / "site", pins=_pins(run))
    files = tmp / "site" / "s" / "smoke" / "xht" / "files" / "logs"
    assert not (files / "evil.xht").exists() and (files / "evil.xht.txt").is_file()
    assert not [p for p in (tmp / "site").rglob("*") if p.suffix.lower() in (".xht", ".xhtml", ".svgz", ".xml")]


def test_lone_surrogate_manifest_name_neither_crashes_build_nor_verify(env, capsys):
    tmp, key_dir, subs = env
    run = file_by_hand(_honest(env, run_id="surrogate"), subs)
    manifest = (run / "manifest.json").read_text()
    (run / "manifest.json").write_text(manifest.replace('"config.json"', '"config\\udcff.json"', 1))
    report = build_site(subs, tmp / "site", pins=_pins(run))
    assert any(x.submission == "smoke/surrogate" and "surrogate" in x.reason for x in report.excluded)
    assert main(["verify", str(run), "--no-preset-pins"]) == 1
    assert "lone surrogate" in capsys.readouterr().err


def test_overflowing_seconds_fail_cleanly(env, capsys):
    run = _honest(env, run_id="overflow", recost=False)
    text, n = re.subn(r'"seconds": [0-9.eE+-]+', '"seconds": 1e400', (run / "result.json").read_text(), count=1)
    assert n == 1  # the attack really changed a phase's seconds
    (run / "result.json").write_text(text)
    write_bundle(run, key_dir=env[1])
    report = verify_bundle(run)
    assert not report.ok and "out of range" in report.message
    assert main(["verify", str(run), "--no-preset-pins"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_manifest_listing_a_file_twice_is_refused(env):
    run = _honest(env, run_id="twice")
    text = (run / "manifest.json").read_text()
    entry_start = text.index('  "config.json"')
    entry = text[entry_start:text.index("},", entry_start) + 2]
    (run / "manifest.json").write_text(text.replace(entry, entry + "\n" + entry, 1))
    report = verify_bundle(run)
    assert not report.ok and "duplicate key 'config.json'" in report.message


def test_forecasted_kind_is_refused(env):
    tmp, _, subs = env
    run = _honest(env, run_id="forecasted", mutate=lambda r: r.update(kind="forecasted"))
    with pytest.raises(SubmissionError, match="not a measured run"):
        submit_bundle(run, subs, pins=_pins(run))
    assert not verify_bundle(run).ok


def test_huge_label_is_capped_on_the_site(env):
    tmp, _, subs = env
    run = file_by_hand(_honest(env, run_id="label"), subs)
    (run / "submission.json").write_text(json.dumps({"label": "A" * 300_000, "notes": "N" * 300_000}))
    report = build_site(subs, tmp / "site", pins=_pins(run))
    assert report.rows == 1
    biggest = max(p.stat().st_size for p in (tmp / "site").rglob("*") if p.is_file() and "/files/" not in str(p))
    assert biggest < 2_000_000


def test_huge_report_is_cut_on_the_page(env):
    tmp, key_dir, subs = env
    run = _honest(env, run_id="bigreport")
    (run / "report.md").write_text(("| a | b |\n|---|---|\n" + "| x | y |\n" * 1_000_000)[:20_000_000])
    write_bundle(run, key_dir=key_dir)
    file_by_hand(run, subs)
    report = build_site(subs, tmp / "site", pins=_pins(run))
    assert report.rows == 1
    page = tmp / "site" / "s" / "smoke" / "bigreport" / "index.html"
    assert page.stat().st_size < 5_000_000


def test_busy_run_ranks_only_with_allow_busy(env):
    busy = {"busy": True, "allow_busy": False, "reason": "load 3.5 on 2 cores"}
    run = _honest(env, run_id="busy", mutate=lambda r: r.update(run_conditions=busy))
    _refused_by_board(env, run, "machine was busy")
    ok = _honest(env, run_id="busy-allowed", mutate=lambda r: r.update(run_conditions={**busy, "allow_busy": True}))
    file_by_hand(ok, env[2])
    ranked, _ = _board(env[2], _pins(ok))
    assert "busy-allowed" in ranked


def test_rate_zero_is_time_only_not_first(env):
    tmp, key_dir, subs = env
    paid = _honest(env, run_id="paid", rate=24.0)
    free = _honest(env, run_id="free", rate=0.0)
    for run in (paid, free):
        file_by_hand(run, subs)
    boards, excluded = collect(subs, _pins(paid))
    rows = {e.row.run_id: e.row for e in boards[0].entries}
    assert not excluded
    assert (rows["paid"].rank, rows["free"].rank, rows["free"].time_only, rows["free"].ranked) == (1, 0, True, False)
    assert [e.row.run_id for e in boards[0].entries] == ["paid", "free"]
    # the same work at either rate shows the same reference cost and GPU(vCPU)-hours
    assert rows["paid"].reference_usd == pytest.approx(rows["free"].reference_usd)


def test_attack_list_matches_the_tests():
    assert len(ATTACKS) == 25
