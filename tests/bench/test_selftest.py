"""`nanobench selftest --gpu`: the prepared GPU check. Its presets resolve, its figures are read from the
real progress/result files, and its --dry-run runs the whole check on the CPU (slow set) so it cannot rot."""

from __future__ import annotations

import json

import pytest

from bench.cli import main as cli_main
from bench.config import load_config
from bench.selftest import D20, SMOKE, _compile_total, compile_seconds, step_times, write_check_config


def test_check_presets_are_the_speedrun_model_and_batch_on_shipped_data(tmp_path):
    cfg = load_config(write_check_config(tmp_path / "b.toml", dry_run=False, vocab=16_384, steps=30, probe_steps=20))
    speedrun = load_config().preset("speedrun").workload.pretrain
    d20 = cfg.preset(D20).workload
    p = d20.pretrain
    assert (p.depth, p.seq_len, p.total_batch_tokens) == (speedrun.depth, speedrun.seq_len, speedrun.total_batch_tokens) == (20, 2048, 524_288)
    assert p.num_iterations == 30 and p.device_batch_size == 0  # the auto-sizer chooses
    assert d20.data.source == "shipped" and d20.tokenizer.vocab_size == 16_384  # offline
    assert cfg.preset(SMOKE).workload.to_dict() | {"preset": None} == load_config().preset("smoke").workload.to_dict() | {"preset": None}


def test_dry_run_presets_are_tiny(tmp_path):
    cfg = load_config(write_check_config(tmp_path / "b.toml", dry_run=True, vocab=16_384, steps=4, probe_steps=3))
    p = cfg.preset(D20).workload.pretrain
    assert p.depth == 2 and p.num_iterations == 4 and cfg.preset(SMOKE).checks.probe_steps == 3


def test_step_times_and_compile_seconds(tmp_path):
    progress = tmp_path / "pretrain.jsonl"
    lines = [{"time_ms": 1, "key": "stage_start", "value": "pretrain", "metadata": {}}]
    dts = [45.0] + [2.0] * 11 + [2.1, 1.9, 2.0]
    lines += [{"time_ms": 2 + i, "key": "step", "value": i, "metadata": {"dt": dt, "loss": 1.0}} for i, dt in enumerate(dts)]
    progress.write_text("\n".join(json.dumps(x) for x in lines) + "\n{truncated")
    assert step_times(progress) == dts
    assert compile_seconds(dts) == pytest.approx(43.0)
    assert compile_seconds([3.0]) is None
    # compiling happens in the device-batch probe (training's shape) and in the first step
    assert _compile_total(43.0, {"probe_seconds": 50.0}) == 93.0 and _compile_total(None, {"probe_seconds": 5.0}) == 5.0
    assert step_times(tmp_path / "missing.jsonl") == []


def test_selftest_without_a_gpu_is_refused_in_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert cli_main(["selftest", "--gpu", "--out", "/nonexistent/x.json"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda is not available" in err and "Traceback" not in err
    assert cli_main(["selftest"]) == 2


@pytest.mark.slow
def test_dry_run_on_cpu_writes_the_figures(tmp_path):
    out = tmp_path / "check.json"
    code = cli_main(["selftest", "--gpu", "--dry-run", "--steps", "4", "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == 0, report["problems"]
    assert report["schema"] == "nanobench-gpu-check/1" and report["ok"] is True and report["dry_run"] is True
    d20 = report["d20"]
    assert d20["device_batch_size"] >= 1 and d20["tok_per_s"] is None or d20["tok_per_s"] > 0
    assert len(d20["step_seconds"]) == 4 and d20["compile_seconds"] is not None
    assert d20["device_batch_choice"]["source"] == "auto" and d20["device_info"]["kind"] == "cpu"
    assert {p["name"] for p in d20["energy"]} >= {"tokenizer", "pretrain"}
    assert report["smoke"]["triple"] is not None and report["determinism"]["class"] in ("bitwise", "close")
