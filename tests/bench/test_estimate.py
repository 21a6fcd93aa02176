"""bench.estimate / `nanobench estimate`: the forecast arithmetic on synthetic step times and events,
the forecast document (compare marks it FORECAST beside a real result, submit refuses it), and a
slow end-to-end check that the forecast lands within 15% of a real `nanobench run` on this machine."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bench.compare import compare
from bench.config import load_config
from bench.cost import Pricing
from bench.estimate import (
    Band,
    Component,
    EstimateOptions,
    EvalCalibration,
    PhaseForecast,
    TrainingCalibration,
    bootstrap_mean_band,
    calibration_config,
    core_fewshot_floor,
    count_periodic,
    eval_blocks,
    eval_forecast,
    finite_json,
    fixed_cost,
    forecast_document,
    memory_verdict,
    parallel_share,
    quantile,
    steady_state,
    step_dts,
    step_overhead,
    tail_after_last_eval,
    task_durations,
    tokenizer_forecast,
    training_forecast,
)
from bench.submission import SubmissionError, is_forecast, submit_bundle
from nanochat_core.evals.core_tasks import load_offline_tasks

try:
    from tests.bench.test_leaderboard import make_result
except ImportError:
    from test_leaderboard import make_result

REPO = Path(__file__).resolve().parents[2]
PRICING = Pricing(hourly_rate_usd=3.6, price_source="test", price_kind="on-demand", captured_on="2026-01-01")


# ---- band arithmetic -------------------------------------------------------------------------------


def test_band_addition_scaling_and_margin():
    a, b = Band(1, 2, 3), Band(10, 20, 30)
    assert a + b == Band(11, 22, 33)
    assert a.scale(2) == Band(2, 4, 6)
    assert Band.with_margin(100, 0.25) == Band(75, 100, 125)
    assert Band.with_margin(0, 0.25) == Band(0, 0, 0)
    with pytest.raises(ValueError):
        Band(3, 2, 1)
    with pytest.raises(ValueError):
        a.scale(-1)


def test_quantile_matches_linear_interpolation():
    xs = [4.0, 1.0, 3.0, 2.0]
    assert quantile(xs, 0.0) == 1.0 and quantile(xs, 1.0) == 4.0
    assert quantile(xs, 0.5) == pytest.approx(2.5)
    assert quantile(xs, 0.1) == pytest.approx(1.3)


def test_steady_state_drops_warmup_and_needs_two_steps():
    dts = [9.0, 5.0, 1.0, 1.1, 0.9]
    assert steady_state(dts, 2) == [1.0, 1.1, 0.9]
    with pytest.raises(ValueError):
        steady_state(dts, 4)


def test_bootstrap_band_brackets_the_mean_and_narrows_with_less_spread():
    wide = [1.0, 1.5, 0.5, 2.0, 0.6, 1.4, 0.9, 1.1] * 3
    narrow = [1.0 + 0.01 * (i % 3 - 1) for i in range(24)]
    bw, bn = bootstrap_mean_band(wide, seed=1), bootstrap_mean_band(narrow, seed=1)
    assert bw.low < bw.expected < bw.high and bw.expected == pytest.approx(statistics.mean(wide))
    assert bn.high - bn.low < (bw.high - bw.low) / 10
    # the band is about the mean: far inside the p10..p90 of the raw step times
    assert quantile(wide, 0.1) < bw.low and bw.high < quantile(wide, 0.9)
    assert bootstrap_mean_band([2.0, 2.0, 2.0]) == Band(2.0, 2.0, 2.0)
    assert bootstrap_mean_band(wide, seed=3) == bootstrap_mean_band(wide, seed=3)  # seeded


def test_count_periodic_mirrors_the_stage_loops():
    # pretrain/mid/sft: evals at step % every == 0 for step > 0, and at the last step (counted once)
    assert count_periodic(200, 50) == 4  # 50, 100, 150, 200
    assert count_periodic(201, 50) == 5  # 50, 100, 150, 200, 201
    assert count_periodic(20, 50) == 1  # only the final one
    assert count_periodic(20, -1) == 1
    assert count_periodic(120, 60, at_zero=True) == 3  # rl: 0, 60, 120
    assert count_periodic(130, 60, at_end=False) == 2  # interim checkpoints: 60, 120
    assert count_periodic(20, 0, at_end=False) == 0


def test_fixed_cost_extraction_from_a_synthetic_stage():
    # 20 steps of 0.5 s + 0.01 s bookkeeping, two evals of 3 s, 12 s of start-up/compile/checkpoint
    wall = 12 + 20 * 0.51 + 2 * 3
    assert fixed_cost(wall, steps=20, step_s=0.5, overhead_s=0.01, evals=2, eval_s=3.0) == pytest.approx(12.0)
    assert fixed_cost(1.0, steps=20, step_s=0.5, overhead_s=0, evals=0, eval_s=0) == 0.0  # never negative


def _step_events(dts, *, t0=1000.0, overhead=0.02, start_gap=5.0, eval_at_end=2.0, tail=1.5):
    events = [{"time_ms": int(t0 * 1000), "key": "stage_start", "value": "pretrain", "metadata": {}}]
    t = t0 + start_gap
    for i, dt in enumerate(dts):
        t += dt + overhead
        events.append({"time_ms": round(t * 1000), "key": "step", "value": i, "metadata": {"dt": dt}})
    t += eval_at_end
    events.append({"time_ms": round(t * 1000), "key": "eval", "value": "val_bpb", "metadata": {"value": 3.0}})
    t += tail
    events.append({"time_ms": round(t * 1000), "key": "stage_end", "value": "pretrain", "metadata": {"ok": True}})
    return events, t - t0


def test_event_parsing_and_training_forecast_reproduce_the_calibration():
    dts = [4.0, 2.0, 1.2] + [1.0, 1.1, 0.9, 1.0, 1.05, 0.95] * 3
    events, span = _step_events(dts)
    assert step_dts(events) == dts
    assert step_overhead(events) == pytest.approx(0.02, abs=2e-3)
    assert eval_blocks(events) == [pytest.approx(2.0, abs=2e-3)]
    assert tail_after_last_eval(events) == pytest.approx(1.5, abs=2e-3)
    wall = span + 0.8  # process start before the first event
    cal = TrainingCalibration(wall, dts, step_overhead(events), eval_blocks(events), tail_after_last_eval(events), warmup=3)
    assert cal.step_band().expected == pytest.approx(1.0)
    # start-up 5 s + launch 0.8 s + warm-up excess (3 + 1 + 0.2) + final checkpoint 1.5 s
    assert cal.fixed_s() == pytest.approx(5.0 + 0.8 + 4.2 + 1.5, abs=0.05)
    same = training_forecast("pretrain", cal, full_steps=len(dts), full_evals=1)
    assert same.seconds().expected == pytest.approx(wall, rel=1e-9)  # K steps forecast = the calibration itself
    full = training_forecast("pretrain", cal, full_steps=1000, full_evals=5, full_checkpoints=2)
    by_name = {c.name: c for c in full.components}
    assert by_name["steps"].seconds.expected == pytest.approx(1000.0)
    assert by_name["steps"].seconds.low < 1000.0 < by_name["steps"].seconds.high
    assert by_name["evals"].seconds == Band.with_margin(5 * cal.eval_s(), 0.25)
    assert by_name["interim checkpoints"].seconds.expected == pytest.approx(3.0, abs=0.01)
    assert full.seconds().expected == pytest.approx(1000 + 1000 * cal.overhead_s + 5 * cal.eval_s() + 3.0 + cal.fixed_s(), rel=1e-9)


def test_scaling_assumption_divides_only_the_parallel_work():
    assert parallel_share(Band(8, 10, 12), 1, 0.5) == Band(8, 10, 12)  # one process: no assumption applied
    assert parallel_share(Band(8, 10, 12), 4, 0.5) == Band(4, 5, 6)
    with pytest.raises(ValueError):
        parallel_share(Band(1, 1, 1), 2, 1.5)
    fc = PhaseForecast("pretrain", True, components=[
        Component("steps", Band(90, 100, 110), "", scales_with_nproc=True), Component("fixed", Band(15, 20, 25), ""),
    ])
    assert fc.seconds(8, 0.9).expected == pytest.approx(100 / 7.2 + 20)
    doc = forecast_document(
        preset=load_config().preset("smoke"), pricing=PRICING, phases=[fc], nproc=8, efficiency=0.9,
        scaling_source="assumed (test)", calibration_launch={"nproc": 1}, memory={}, assumptions=[], not_forecast={},
    )
    assert doc["scaling"] == {"nproc": 8, "calibrated_nproc": 1, "efficiency": 0.9, "source": "assumed (test)"}
    assert doc["phases"][0]["seconds"] == pytest.approx(100 / 7.2 + 20)
    one = forecast_document(
        preset=load_config().preset("smoke"), pricing=PRICING, phases=[fc], nproc=1, efficiency=0.9,
        scaling_source="assumed (test)", calibration_launch={"nproc": 1}, memory={}, assumptions=[], not_forecast={},
    )
    assert one["scaling"]["efficiency"] == 1.0 and one["scaling"]["source"].startswith("measured")


def test_eval_forecast_per_task_rates_and_borrowed_start():
    events = [
        {"time_ms": 0, "key": "stage_start", "value": "chat_eval", "metadata": {}},
        {"time_ms": 9000, "key": "eval", "value": "chat_eval/ARC-Easy", "metadata": {}},
        {"time_ms": 11000, "key": "eval", "value": "chat_eval/ARC-Challenge", "metadata": {}},
        {"time_ms": 19000, "key": "eval", "value": "chat_eval/GSM8K", "metadata": {}},
        {"time_ms": 19500, "key": "eval", "value": "chat_eval/ChatCORE", "metadata": {}},
    ]
    done = lambda e: e["value"][10:] if e["key"] == "eval" and e["value"] != "chat_eval/ChatCORE" else None
    durations, timed_first = task_durations(events, start=lambda e: False, done=done)
    assert not timed_first and durations["ARC-Challenge"] == 2.0 and durations["GSM8K"] == 8.0
    cal = EvalCalibration(wall_s=21.0, task_s=durations, task_examples={"ARC-Easy": 2, "ARC-Challenge": 2, "GSM8K": 2},
                          task_kind={"ARC-Easy": "categorical", "ARC-Challenge": "categorical", "GSM8K": "generative"})
    fc = eval_forecast("chat_eval", cal, {"ARC-Easy": 10, "ARC-Challenge": 2, "GSM8K": 100})
    comps = {c.name: c.seconds for c in fc.components}
    assert comps["task ARC-Easy"].expected == pytest.approx(10.0)  # rate borrowed from ARC-Challenge: 1 s/example
    assert comps["task ARC-Challenge"] == Band.exact(2.0)  # ran in full: no extrapolation margin
    assert comps["task GSM8K"].expected == pytest.approx(400.0)
    assert comps["fixed"].expected == pytest.approx(21.0 - 2 - 2 - 8)  # wall - task time (ARC-Easy at its borrowed rate)
    assert any("borrowed" in n for n in fc.notes)


def test_tokenizer_forecast_extrapolates_chars():
    fc = tokenizer_forecast(wall_s=12.0, train_s=2.0, cal_chars=1_000_000, full_chars=10_000_000)
    comps = {c.name: c.seconds for c in fc.components}
    assert comps["bpe training"].expected == pytest.approx(20.0) and comps["bpe training"].high == pytest.approx(25.0)
    assert comps["fixed"].expected == pytest.approx(10.0)
    whole = tokenizer_forecast(wall_s=12.0, train_s=2.0, cal_chars=1_000_000, full_chars=1_000_000)
    assert whole.seconds().expected == pytest.approx(12.0)


def test_memory_verdict_names_the_batch_it_would_need():
    v = memory_verdict("BatchSizeError: a device batch of 1 row needs about 90.00 GiB but the budget is 40.00 GiB",
                       rows_per_rank=256, configured_batch=0)
    assert v["fits"] is False and "grad accum 256" in v["needs"] and "90.00 GiB" in v["error"]
    v = memory_verdict("OutOfMemoryError: CUDA out of memory", rows_per_rank=32, configured_batch=16)
    assert v["device_batch_needed"] == 8 and "device_batch_size <= 8" in v["needs"]
    assert memory_verdict("ValueError: something else", rows_per_rank=1, configured_batch=0) is None


def test_calibration_config_shortens_lengths_not_shapes():
    w = load_config().preset("speedrun").workload
    c = calibration_config(w, EstimateOptions(calibration_steps=20, eval_examples=3, tokenizer_chars=10_000_000))
    assert c.pretrain.num_iterations == 20 and c.mid_train.num_iterations == 20 and c.sft.num_iterations == 20
    assert (c.pretrain.depth, c.pretrain.seq_len, c.pretrain.total_batch_tokens) == (w.pretrain.depth, w.pretrain.seq_len, w.pretrain.total_batch_tokens)
    assert c.base_eval.core_max_per_task == 3 and c.chat_eval.max_problems == 3
    assert c.tokenizer.max_chars == 10_000_000 and c.tokenizer.vocab_size == w.tokenizer.vocab_size
    # CORE draws few-shot examples from the task's own rows: calibrate with enough rows for full prompts
    assert core_fewshot_floor(w) == 11  # the bundle is absent here: CORE's largest few-shot count + 1
    offline = dataclasses.replace(w, base_eval=dataclasses.replace(w.base_eval, bundle="offline"))
    assert core_fewshot_floor(offline) == max(t.num_fewshot for t in load_offline_tasks().tasks) + 1
    assert calibration_config(w, EstimateOptions(eval_examples=3), core_min_examples=11).base_eval.core_max_per_task == 11
    s = load_config().preset("smoke").workload
    cs = calibration_config(s, EstimateOptions(calibration_steps=50, eval_examples=20))
    # never longer than the preset
    assert cs.sft.num_iterations == min(50, s.sft.num_iterations) and cs.chat_eval.max_problems == min(20, s.chat_eval.max_problems)


def _doc_with_pretrain(seconds: float) -> dict:
    fc = PhaseForecast("pretrain", True, components=[Component("steps", Band.with_margin(seconds, 0.1), "", True)])
    dl = PhaseForecast("tokenizer", True, components=[Component("fixed", Band.exact(30.0), "")])
    return forecast_document(
        preset=load_config().preset("smoke"), pricing=PRICING, phases=[dl, fc], nproc=1, efficiency=0.9,
        scaling_source="x", calibration_launch={"nproc": 1}, memory={}, assumptions=["a"], not_forecast={"download": "not counted"},
    )


def test_forecast_document_triple_and_strict_json(tmp_path):
    doc = _doc_with_pretrain(3600.0)
    assert doc["kind"] == "forecast" and is_forecast(doc)
    t = doc["triple"]
    assert t["minutes"] == pytest.approx(60.5) and t["minutes_low"] == pytest.approx(54.5) and t["minutes_high"] == pytest.approx(66.5)
    assert t["usd"] == pytest.approx(3.6 * 3630 / 3600) and t["complete"] is True
    json.dumps(finite_json({"x": float("nan"), "y": [float("inf"), 1.0]}), allow_nan=False)
    assert finite_json({"x": float("nan")}) == {"x": None}


def test_compare_shows_the_forecast_beside_a_real_result_and_submit_refuses_it(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "result.json").write_text(json.dumps(make_result("run-a", rate=3.6, pretrain_s=3600.0, energy=False)))
    doc = _doc_with_pretrain(7200.0)
    fpath = tmp_path / "forecast.json"
    fpath.write_text(json.dumps(doc))
    data = json.loads(compare([str(real), str(fpath)], fmt="json"))
    assert [e["kind"] for e in data["entries"]] == ["measured", "forecast"]
    assert data["entries"][1]["name"].startswith("FORECAST forecast-smoke-")
    time_row = next(r for r in data["rows"] if r["metric"] == "time")
    assert time_row["values"][1] == pytest.approx(doc["triple"]["minutes"])
    pre = next(r for r in data["rows"] if r["metric"] == "pretrain time")
    assert pre["values"] == [pytest.approx(60.0), pytest.approx(120.0)] and pre["ratios"][1] == pytest.approx(2.0)
    assert "FORECAST" in compare([str(real), str(fpath)], fmt="table")
    fdir = tmp_path / "fc_run"
    fdir.mkdir()
    (fdir / "result.json").write_text(json.dumps(doc))
    with pytest.raises(SubmissionError, match="forecast"):
        submit_bundle(fdir, tmp_path / "submissions")


# ---- end to end (slow): forecast vs a real run on this machine ---------------------------------------

# Derived from the smoke preset: same tables and data, fewer steps and smaller shapes so that the
# estimate + the run fit in minutes on a shared 2-core CPU. The estimate and the run use this SAME preset.
VALIDATION_TOML = """
[harness]
runs_dir = "runs"
cache_dir = "{cache}"
idle_baseline_seconds = 0.5

[presets.smoke-mini]
seed = 42
[presets.smoke-mini.tokenizer]
vocab_size = 1024
max_chars = 2_000_000
doc_cap = 10_000
[presets.smoke-mini.data]
source = "shipped"
[presets.smoke-mini.pretrain]
depth = 2
seq_len = 128
total_batch_tokens = 1024
num_iterations = {pretrain_steps}
target_param_data_ratio = -1.0
eval_every = 25
eval_tokens = 4096
warmdown_ratio = 0.2
muon_momentum_ramp_steps = 20
[presets.smoke-mini.base_eval]
bundle = "offline"
core_max_per_task = 4
[presets.smoke-mini.mid_train]
total_batch_tokens = 1024
num_iterations = 24
eval_every = 12
eval_tokens = 2048
mixture_limit = 100
[presets.smoke-mini.sft]
device_batch_size = 4
target_examples_per_step = 8
num_iterations = 20
eval_every = 10
eval_steps = 2
eval_metrics_every = -1
mixture_limit = 100
[presets.smoke-mini.rl]
enabled = false
[presets.smoke-mini.chat_eval]
max_problems = 4
max_new_tokens = 32
source = "sft"
[presets.smoke-mini.checks]
probe_steps = 4
val_bpb_band = [0.0, 10.0]
val_bpb_band_source = "placeholder, as the smoke preset"
"""


def validation_config(tmp: Path, *, pretrain_steps: int = 60) -> Path:
    path = tmp / "bench.toml"
    path.write_text(VALIDATION_TOML.format(cache=tmp / "cache", pretrain_steps=pretrain_steps))
    return path


@pytest.mark.slow
def test_forecast_within_15_percent_of_a_real_run(tmp_path):
    config = validation_config(tmp_path)
    # one thread per process for both: the 2-core machine is shared, and oversubscribed OpenMP threads
    # spin-wait, which makes step times swing by 3-10x.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--config", str(config), "--preset", "smoke-mini", "--hourly-rate", "1", "--device", "cpu"]
    forecast = tmp_path / "forecast.json"
    subprocess.run([sys.executable, "-m", "bench.cli", "estimate", *common, "--calibration-steps", "12",
                    "--calibration-examples", "2", "--out", str(forecast)], check=True, env=env, cwd=REPO, timeout=1800)
    subprocess.run([sys.executable, "-m", "bench.cli", "run", *common, "--runs-dir", str(tmp_path / "runs"),
                    "--run-id", "measured", "--key-dir", str(tmp_path / "keys")], check=True, env=env, cwd=REPO, timeout=1800)
    doc = json.loads(forecast.read_text())
    result = json.loads((tmp_path / "runs" / "measured" / "result.json").read_text())
    predicted, measured = doc["triple"]["minutes"], result["triple"]["minutes"]
    error = (predicted - measured) / measured
    per_phase = {p["name"]: (p["seconds"], next(q["seconds"] for q in result["phases"] if q["name"] == p["name"])) for p in doc["phases"]}
    print(f"\nforecast {predicted:.3f} min (band {doc['triple']['minutes_low']:.3f}..{doc['triple']['minutes_high']:.3f}), "
          f"measured {measured:.3f} min, error {100 * error:+.1f}%; per phase (forecast s, measured s): {per_phase}")
    data = json.loads(compare([str(tmp_path / "runs" / "measured"), str(forecast)], fmt="json"))
    assert [e["kind"] for e in data["entries"]] == ["measured", "forecast"]
    assert abs(error) <= 0.15, f"forecast {predicted:.3f} min vs measured {measured:.3f} min ({100 * error:+.1f}%)"
