"""Issue 15, "Config and CLI": every numeric value in bench.toml, on the command line and in a resumed
run's launch.json is finite and within a sane range before anything starts; errors name the key and
the allowed range (no traceback, exit status 2 for the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main as nanobench
from bench.config import DEFAULT_CONFIG_PATH, ConfigError, load_config

SMOKE_LAUNCH = Path(__file__).resolve().parents[2] / "submissions" / "smoke"


def _config_with(tmp_path: Path, section: str, line: str) -> Path:
    """The shipped bench.toml with `line` set in [section] (replacing that key's line when present)."""
    lines = DEFAULT_CONFIG_PATH.read_text().splitlines()
    key = line.split("=")[0].strip()
    start = next(i for i, text in enumerate(lines) if text.split("#")[0].strip() == f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    kept = [text for text in lines[start + 1:end] if text.split("=")[0].strip() != key]
    lines[start + 1:end] = [line, *kept]
    path = tmp_path / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("section", "line", "key", "allowed"),
    [
        ("harness", "power_interval_seconds = nan", "harness.power_interval_seconds", "finite"),
        ("harness", "power_interval_seconds = 1e-300", "harness.power_interval_seconds", "from 0.001 to 0.1"),
        ("harness", "idle_baseline_seconds = inf", "harness.idle_baseline_seconds", "finite"),
        ("harness", "idle_baseline_seconds = 1e9", "harness.idle_baseline_seconds", ">= 0 and <= 3600"),
        ("presets.smoke.pretrain", "matrix_lr = inf", "presets.smoke.pretrain.matrix_lr", "finite"),
        ("presets.smoke.pretrain", "matrix_lr = 1e300", "presets.smoke.pretrain.matrix_lr", "from 0 to 10"),
        ("presets.smoke.pretrain", "weight_decay = -nan", "presets.smoke.pretrain.weight_decay", "finite"),
        ("presets.smoke.pretrain", "num_iterations = 9223372036854775807", "presets.smoke.pretrain.num_iterations", "from -1 to 1,000,000,000"),
        ("presets.smoke.pretrain", "adam_betas = [0.8, 1.5]", "presets.smoke.pretrain.adam_betas", "from 0 to"),
        ("presets.smoke.sft", "eval_steps = 1000000000000000", "presets.smoke.sft.eval_steps", "to 1,000,000,000,000"),
        ("presets.smoke.checks", "close_rel_tol = inf", "presets.smoke.checks.close_rel_tol", "finite"),
        ("presets.smoke.checks", "close_rel_tol = 5.0", "presets.smoke.checks.close_rel_tol", ">= 0 and <= 1"),
        ("presets.smoke.checks", "val_bpb_band = [0.5, 1e300]", "presets.smoke.checks.val_bpb_band", "<= 100"),
    ],
)
def test_bad_numbers_in_bench_toml_name_key_and_range(tmp_path, section, line, key, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(_config_with(tmp_path, section, line))
    message = str(err.value)
    assert key in message and allowed in message, message


def test_the_shipped_config_is_in_range():
    assert set(load_config().presets) >= {"smoke", "speedrun"}


@pytest.mark.parametrize(
    ("argv", "flag", "allowed"),
    [
        (["run", "--hourly-rate", "1.7e308"], "--hourly-rate", "from 0 to 1e+06"),
        (["run", "--hourly-rate", "nan"], "--hourly-rate", "finite"),
        (["run", "--hourly-rate", "24", "--energy-price", "inf"], "--energy-price", "finite"),
        (["run", "--hourly-rate", "24", "--nproc", "0"], "--nproc", "from 1 to 1024"),
        (["run", "--hourly-rate", "24", "--nnodes", "9" * 5000], "--nnodes", "5000-character"),
        (["estimate", "--assume-scaling", "1e-400"], "--assume-scaling", "above 0"),
        (["estimate", "--calibration-steps", "-3"], "--calibration-steps", "from 1"),
        (["eval", "core", "--run-dir", "x", "--max-per-task", "0"], "--max-per-task", "not 0"),
        (["serve", "--run-dir", "x", "--port", "70000"], "--port", "from 1 to 65535"),
        (["chat", "--run-dir", "x", "--temperature=-inf"], "--temperature", "finite"),
    ],
)
def test_bad_numeric_flags_stop_before_anything_starts(argv, flag, allowed, capsys):
    with pytest.raises(SystemExit) as exc:
        nanobench(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and allowed in err and "Traceback" not in err, err


def _smoke_launch() -> dict:
    launch = next(SMOKE_LAUNCH.glob("*/launch.json"))
    return json.loads(launch.read_text())


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["pricing"].update(hourly_rate_usd=1.7e308), "'pricing.hourly_rate_usd' must be a finite number from 0 to 1e+06"),
        (lambda d: d["pricing"].update(energy_price_usd_per_kwh=float("nan")), "pricing.energy_price_usd_per_kwh"),
        (lambda d: d["launch"].update(nproc=10**9), "'launch.nproc' must be an integer from 1 to 1024"),
        (lambda d: d["launch"].update(nproc="8"), "'launch.nproc'"),
        (lambda d: d["launch"].update(node_rank=3), "'launch.node_rank' must be an integer from 0 to 0"),
        (lambda d: d["launch"].update(device="tpu"), "'launch.device'"),
        (lambda d: d["launch"].update(rogue=1), "unknown key 'launch.rogue'"),
        (lambda d: d.update(phases=["pretrain", "mine_bitcoin"]), "'phases'"),
        (lambda d: d.update(probe="yes"), "'probe'"),
        (lambda d: d.update(resumes=-1), "'resumes'"),
    ],
)
def test_launch_json_is_revalidated_on_resume(tmp_path, mutate, fragment, capsys):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    saved = _smoke_launch()
    mutate(saved)
    (run_dir / "launch.json").write_text(json.dumps(saved))
    assert nanobench(["run", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "launch.json" in err and "Traceback" not in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == ["launch.json"]  # nothing started


def test_an_intact_launch_json_passes_revalidation():
    from bench.launch_record import validate_launch_record

    for path in SMOKE_LAUNCH.glob("*/launch.json"):
        validate_launch_record(json.loads(path.read_text()), path.parent)
