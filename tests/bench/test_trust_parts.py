"""The parts behind issue 14: safe reads, the key registry, reference prices, state seals, ranking rules,
and the three commands never ending in a traceback whatever path they are given."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from bench.cli import main
from bench.key_registry import KeyRegistryError, load_registry
from bench.ranking import expected_phases, ranking_problems
from bench.reference_prices import load_table, match_accelerator, reference_cost
from bench.safe_read import UnsafeFile, load_json, parse_json, read_bytes
from bench.state_seal import StateTampered, check_seals, seals_for


# ------------------------------------------------------------------ safe reads


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"s": 1e400}', "out of range"),
        ('{"s": NaN}', "not a JSON number"),
        ('{"s": Infinity}', "not a JSON number"),
        ('{"s": "\\udcff"}', "lone surrogate"),
        ('{"n": ' + "9" * 60 + "}", "more than 40 digits"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        ("{not json", "not valid JSON"),
    ],
)
def test_strict_json_rejects_hostile_values(text, problem):
    with pytest.raises(UnsafeFile, match=problem):
        parse_json(text, "x.json")


def test_reads_refuse_links_fifos_and_oversized_files(tmp_path):
    (tmp_path / "real.json").write_text('{"ok": true}')
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    os.mkfifo(tmp_path / "fifo.json")
    assert load_json(tmp_path / "real.json") == {"ok": True}
    with pytest.raises(UnsafeFile, match="cannot be opened as a regular file"):
        read_bytes(tmp_path / "link.json")
    done = threading.Event()

    def fifo():
        with pytest.raises(UnsafeFile, match="not a regular file"):
            read_bytes(tmp_path / "fifo.json")
        done.set()

    threading.Thread(target=fifo, daemon=True).start()
    assert done.wait(10), "reading a FIFO blocked"
    with pytest.raises(UnsafeFile, match="over the 4-byte limit"):
        read_bytes(tmp_path / "real.json", cap=4)
    with pytest.raises(UnsafeFile, match="missing"):
        read_bytes(tmp_path / "absent.json")


# ------------------------------------------------------------------ key registry


def test_registry_reads_named_keys_and_rejects_bad_files(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "alice.pub").write_text('name = "Alice Lab"\npublic_key = "' + "ab" * 32 + '"\n')
    registry = load_registry(keys)
    signer = registry.lookup("AB" * 32)
    assert signer is not None and (signer.owner, signer.name) == ("alice", "Alice Lab")
    assert registry.lookup(None, signer.fingerprint) == signer and registry.lookup("cd" * 32) is None
    (keys / "bob.pub").write_text('name = "Bob"\npublic_key = "xyz"\n')
    with pytest.raises(KeyRegistryError, match="bob.pub.*64 hex digits"):
        load_registry(keys)
    (keys / "bob.pub").unlink()
    (keys / "eve.pub").symlink_to(keys / "alice.pub")
    with pytest.raises(KeyRegistryError, match="not a regular file"):
        load_registry(keys)
    with pytest.raises(KeyRegistryError, match="no such file"):
        load_registry(tmp_path / "nowhere")


def test_shipped_registry_names_the_smoke_signer():
    repo = Path(__file__).resolve().parents[2]
    registry = load_registry(repo / "submissions" / "keys")
    sig = json.loads(next((repo / "submissions" / "smoke").glob("*/manifest.sig")).read_text())
    signer = registry.lookup(sig["public_key"])
    assert signer is not None and signer.name, (
        "the key that signed the committed smoke submissions must be registered in submissions/keys/<owner>.pub"
    )


# ------------------------------------------------------------------ reference prices


def test_reference_table_is_dated_sourced_and_matches_device_names():
    table = load_table()
    assert table["captured_on"] and "approximate" in table["source"]
    names = {
        "NVIDIA H100 80GB HBM3": "H100 SXM", "NVIDIA H100 PCIe": "H100 PCIe", "NVIDIA H200": "H200",
        "NVIDIA A100-SXM4-80GB": "A100 80GB", "NVIDIA A100-PCIE-40GB": "A100 40GB", "NVIDIA L4": "L4",
        "NVIDIA L40S": "L40S", "AMD Instinct MI300X": "MI300X",
    }
    for device, model in names.items():
        assert match_accelerator(device)["model"] == model, device


def test_reference_cost_is_gpu_hours_times_the_table_price():
    system = {"gpus": {"count": 8, "devices": [{"name": "NVIDIA H100 80GB HBM3"}] * 8}}
    ref = reference_cost(system, 60.0)
    assert (ref.units, ref.unit, ref.usd) == (8.0, "GPU-hours", 8.0 * ref.usd_per_hour)
    nodes = {"nodes": [system, system], "number_of_nodes": 2}
    assert reference_cost(nodes, 60.0).units == 16.0  # multi-node: summed over the nodes
    cpu = reference_cost({"gpus": {"count": 0, "devices": []}, "cpu": {"logical_cores": 4}}, 30.0)
    assert (cpu.unit, cpu.units) == ("vCPU-hours", 2.0)
    odd = reference_cost({"gpus": {"count": 1, "devices": [{"name": "Mystery GPU"}]}}, 60.0)
    assert odd.usd is None and "no single reference price" in odd.reason
    assert reference_cost("not a dict", 1.0).usd is None  # type: ignore[arg-type]


# ------------------------------------------------------------------ state seals


def test_seals_bind_record_label_and_nonce():
    secret, nonce = b"k" * 32, "ab" * 16
    phases = {"pretrain": {"ok": True, "seconds": 10.0}}
    seals = seals_for(secret, nonce, phases, None)
    check_seals(secret, nonce, phases, None, seals)
    with pytest.raises(StateTampered, match="phase 'pretrain'"):
        check_seals(secret, nonce, {"pretrain": {"ok": True, "seconds": 9.0}}, None, seals)
    with pytest.raises(StateTampered):
        check_seals(secret, "cd" * 16, phases, None, seals)  # moved to another run
    with pytest.raises(StateTampered, match="running-phase"):
        check_seals(secret, nonce, phases, {"name": "sft", "started_unix": 1.0}, seals)
    with pytest.raises(StateTampered, match="no run nonce"):
        check_seals(secret, None, phases, None, seals)


def test_resumed_state_round_trips_with_non_finite_values(tmp_path):
    from bench.pipeline import RunState

    state = RunState(tmp_path / "state.json", {"pretrain": {"ok": True, "seconds": 1.0, "result": {"loss": float("nan")}}},
                     {"name": "sft", "started_unix": 5.0, "carried_seconds": 0.0}, "ab" * 16, b"s" * 32)
    state.save()
    loaded = RunState.load(tmp_path / "state.json", secret=b"s" * 32)
    assert loaded.nonce == "ab" * 16 and loaded.phases["pretrain"]["result"]["loss"] is None


# ------------------------------------------------------------------ ranking rules


def test_expected_phases_follow_the_phase_registry(monkeypatch):
    from bench import phases as phase_registry

    base = expected_phases("smoke")
    assert base is not None and base[0] == "download" and base[-1] == "determinism_probe"
    extra = phase_registry.PhaseSpec("base_loss", True, "a phase added later")
    expected_phases.cache_clear()
    monkeypatch.setattr(phase_registry, "PHASES", (*phase_registry.PHASES, extra))
    try:
        import bench.pipeline as pipeline

        monkeypatch.setattr(pipeline, "PHASES", phase_registry.PHASES)
        assert "base_loss" in expected_phases("smoke")
    finally:
        expected_phases.cache_clear()
    assert expected_phases("no-such-preset") is None


def test_ranking_problems_lists_every_broken_rule():
    result = {"kind": "measured", "preset": "smoke", "phases": [{"name": "download", "counted": True}], "valid": False,
              "determinism": {"class": "divergent"}, "triple": {"core": None, "chatcore": 0.1},
              "run_conditions": {"busy": True, "allow_busy": False}}
    problems = " | ".join(ranking_problems(result, pins_ok=False, signer_known=False, evidence_missing=["power: power.csv is absent"]))
    for part in ("incomplete", "counted=True", "not valid", "divergent", "no CORE score", "pinned spec",
                 "key registry", "evidence incomplete", "no run nonce", "busy"):
        assert part in problems, part
    # a bundle from before run_conditions existed is treated as not busy
    assert not any("busy" in p for p in ranking_problems({**result, "run_conditions": None}, pins_ok=True, signer_known=True))


# ------------------------------------------------------------------ commands never raise


@pytest.mark.parametrize("kind", ["missing", "file", "fifo", "symlink-loop", "surrogate", "empty-dir"])
def test_commands_never_raise_on_odd_paths(tmp_path, kind, capsys):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("x")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink-loop":
        target.symlink_to(target)
    elif kind == "surrogate":
        target = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff"))
        target.mkdir()
    elif kind == "empty-dir":
        target.mkdir()
    results = {}

    def go():
        results["verify"] = main(["verify", str(target)])
        results["submit"] = main(["submit", str(target), "--submissions", str(tmp_path / "subs")])
        results["build"] = main(["leaderboard", "build", "--submissions", str(target), "--out", str(tmp_path / "site")])

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "a command hung"
    assert results["verify"] == 1 and results["submit"] == 1 and results["build"] in (0, 1)
    assert "Traceback" not in capsys.readouterr().err


def test_execute_makes_a_nonce_seals_every_record_and_refuses_an_edited_state(tmp_path, monkeypatch):
    """The real pipeline loop (stages replaced by instant fakes): nonce at start, sealed records, resume checks."""
    from bench import pipeline
    from bench.config import load_config
    from bench.display import RunDisplay
    from bench.phases import Launch, StageOutcome

    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(tmp_path / "key"))
    monkeypatch.setattr(pipeline, "run_stage", lambda name, **kw: StageOutcome(name, True, 0.05, 0, {"stage": name}, "log"))

    def plan(resume: bool) -> pipeline.RunPlan:
        return pipeline.RunPlan(preset=load_config().preset("smoke"), run_dir=tmp_path / "run", cache_dir=tmp_path / "cache",
                                launch=Launch(device="cpu"), phases=["tokenizer", "pretrain"], hourly_rate=1.0,
                                idle_baseline_s=0.0, resume=resume, probe=False)

    outcome = pipeline.execute(plan(False), RunDisplay(hourly_rate=1.0))
    nonce = outcome["state"].nonce
    data = json.loads((tmp_path / "run" / "state.json").read_text())
    assert isinstance(nonce, str) and len(nonce) == 32 and data["nonce"] == nonce
    assert set(data["seals"]) == {"phase:tokenizer", "phase:pretrain"}
    again = pipeline.execute(plan(True), RunDisplay(hourly_rate=1.0))  # an untouched state resumes, same nonce
    assert again["state"].nonce == nonce
    data["phases"]["pretrain"]["seconds"] = 0.001
    (tmp_path / "run" / "state.json").write_text(json.dumps(data))
    with pytest.raises(StateTampered, match="pretrain"):
        pipeline.execute(plan(True), RunDisplay(hourly_rate=1.0))


def test_run_lock_is_named_by_the_real_path(tmp_path, monkeypatch):
    from bench.commands.run import run_lock_path

    real = tmp_path / "runs" / "X"
    real.mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "runs")
    (tmp_path / "runs" / "Z").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    paths = {run_lock_path(p) for p in (real, tmp_path / "alias" / "X", tmp_path / "runs" / "Z", Path("runs/X"), Path("alias/../runs/X"))}
    assert paths == {tmp_path.resolve() / "runs" / ".X.lock"}
