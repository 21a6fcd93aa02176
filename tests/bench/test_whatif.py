"""What-if forecast for named hardware (bench/whatif.py, `nanobench estimate --hardware`): exact pretraining
FLOPs, peak from the MFU table, MFU from submissions on the same accelerator or a stated default, prices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config import load_config
from bench.pipeline import selected_phases
from bench.whatif import (
    DEFAULT_MFU,
    WhatIfError,
    forecast,
    model_shape,
    parse_hardware,
    phase_work,
    reference_hourly_rate,
)

CFG = load_config()


def _speedrun(hw: str, **kw):
    p = CFG.preset("speedrun")
    return forecast(p.workload, selected_phases(p, None, None), parse_hardware(hw), hourly_rate=kw.pop("rate", 24.0),
                    price_source="test", **kw)


def test_parse_hardware_counts_and_peaks():
    h = parse_hardware("8xH100")
    assert (h.count, h.name, h.peak_flops) == (8, "H100", 989e12)
    assert parse_hardware("4x4090").peak_flops == pytest.approx(165.2e12)
    assert parse_hardware("A100").count == 1
    assert parse_hardware("2 x H100 PCIe").peak_flops == 756e12
    for bad in ("8xFOO", "", "0xH100"):
        with pytest.raises(WhatIfError):
            parse_hardware(bad)


def test_pretraining_flops_are_the_models_exact_flops():
    import torch

    from nanochat_core.model import GPTConfig, build_model

    w = CFG.preset("smoke").workload
    cfg = GPTConfig.from_depth(w.pretrain.depth, vocab_size=w.tokenizer.vocab_size, seq_len=w.pretrain.seq_len)
    real = build_model(cfg, torch.device("cpu"), seed=0)
    assert model_shape(w) == (real.num_params(), real.flops_per_token())
    pre = next(p for p in phase_work(w, ["pretrain"]) if p.name == "pretrain")
    train = real.flops_per_token() * w.pretrain.num_iterations * w.pretrain.total_batch_tokens
    assert pre.basis == "exact" and pre.flops >= train
    assert pre.flops - train == pytest.approx(real.flops_per_token() / 3 * w.pretrain.eval_tokens * 3)  # evals at 0, 50, 100


def test_speedrun_on_8xh100_is_about_four_hours_and_scales_with_the_count():
    eight = _speedrun("8xH100")
    assert eight["kind"] == "forecast"
    assert 3 * 3600 < eight["total"]["seconds"] < 5 * 3600  # ORIG: ~4 h on 8xH100
    assert eight["mfu"]["expected"] == DEFAULT_MFU and "assumed" in eight["mfu"]["source"]
    four = _speedrun("4xH100")
    pre8 = next(r for r in eight["phases"] if r["name"] == "pretrain")
    pre4 = next(r for r in four["phases"] if r["name"] == "pretrain")
    fixed = 20.0
    assert (pre4["seconds"] - fixed) == pytest.approx(2 * (pre8["seconds"] - fixed), rel=1e-9)
    t = eight["total"]
    assert t["seconds_low"] < t["seconds"] < t["seconds_high"]
    assert t["usd"] == pytest.approx(t["seconds"] / 3600 * 24)


def test_mfu_comes_from_submissions_on_the_same_accelerator(tmp_path):
    def submission(name: str, gpu: str, mfu: float) -> None:
        d = tmp_path / "speedrun" / name
        d.mkdir(parents=True)
        d.joinpath("result.json").write_text(json.dumps({
            "kind": "measured", "system": {"gpus": {"devices": [{"name": gpu}] * 8}}, "metrics": {"mfu": mfu}}))

    submission("a", "NVIDIA H100 80GB HBM3", 30.0)
    submission("b", "NVIDIA H100 80GB HBM3", 34.0)
    submission("c", "NVIDIA A100-SXM4-80GB", 55.0)  # another class: ignored for H100
    doc = _speedrun("8xH100", submissions_dir=tmp_path)
    assert doc["mfu"]["expected"] == pytest.approx(0.32)
    assert "median of 2 submission(s)" in doc["mfu"]["source"]
    slower = doc["total"]["seconds"]
    assert slower > _speedrun("8xH100")["total"]["seconds"]  # 32% < the 40% default
    assert _speedrun("1xA100", submissions_dir=tmp_path)["mfu"]["expected"] == pytest.approx(0.55)


def test_reference_price_for_named_hardware():
    rate, source = reference_hourly_rate(parse_hardware("8xH100"))
    assert rate > 0 and "reference price: 8 x" in source


def test_estimate_hardware_cli_is_offline_and_labelled(tmp_path, capsys):
    from bench.cli import main

    out = tmp_path / "f.json"
    code = main(["estimate", "--preset", "speedrun", "--hardware", "8xH100", "--hourly-rate", "24", "--out", str(out),
                 "--submissions-dir", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "FORECAST (what-if) speedrun on 8xH100" in text and "kind: forecast" in text
    doc = json.loads(out.read_text())
    assert doc["kind"] == "forecast" and doc["hardware"]["count"] == 8


def test_estimate_without_a_price_for_unlisted_hardware_asks_for_one(capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.setattr("bench.whatif.reference_hourly_rate", lambda hw: None)
    assert main(["estimate", "--preset", "speedrun", "--hardware", "4x4090"]) == 2
    assert "give --hourly-rate" in capsys.readouterr().err


def test_estimate_nproc_8_on_a_box_without_gpus_refuses(capsys):
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() >= 8:
        pytest.skip("this machine has 8 GPUs")
    from bench.cli import main

    assert main(["estimate", "--preset", "smoke", "--nproc", "8", "--hourly-rate", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot stand for 8 GPUs" in err and "--hardware 8xH100" in err
