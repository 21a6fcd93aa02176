"""Preflight (bench/preflight.py): divisibility for a world size, the CPU-box stop with the command to run
instead, network and disk checks, and `nanobench run --hourly-rate 24` stopping before anything is created."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from bench.config import load_config
from bench.pipeline import selected_phases
from bench.preflight import (
    HardwareFound,
    check_divisibility,
    download_needs,
    reachable,
    run_preflight,
)

CFG = load_config()
CPU_BOX = HardwareFound("cpu", None, [], 2, 24 * 2**30, "2.13.0+cpu")
H100_BOX = HardwareFound("cuda", None, [{"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 * 2**30}] * 8, 64, 2**40, "2.13.0, CUDA 12.8")


def _phases(name: str) -> list[str]:
    return selected_phases(CFG.preset(name), None, None)


def test_smoke_at_8_processes_adapts_the_sft_device_batch():
    div = check_divisibility(CFG.preset("smoke"), _phases("smoke"), 8)
    assert div.ok, div.problems
    # 8 examples per step over 8 processes: device batch 4 cannot divide (4 x 8 = 32), 1 does
    assert div.sft_device_batch == 1
    assert any("sft: device batch 4 -> 1" in n for n in div.notes)


def test_smoke_at_16_processes_refuses_up_front():
    div = check_divisibility(CFG.preset("smoke"), _phases("smoke"), 16)
    assert not div.ok
    assert any(p.startswith("pretrain: 8 rows per step") and "16 processes" in p for p in div.problems)
    assert any(p.startswith("mid_train:") for p in div.problems)


def test_speedrun_config_at_16_processes_runs_with_a_smaller_sft_device_batch():
    div = check_divisibility(CFG.preset("speedrun"), _phases("speedrun"), 16)
    assert div.ok, div.problems
    assert div.sft_device_batch == 2  # 32 examples per step = 2 x 16 processes, grad accum 1
    rl = check_divisibility(CFG.preset("speedrun-rl"), _phases("speedrun-rl"), 16)
    assert rl.ok, rl.problems


def test_rl_examples_that_cannot_divide_are_refused():
    div = check_divisibility(CFG.preset("speedrun-rl"), _phases("speedrun-rl"), 3)
    assert any(p.startswith("rl: examples_per_step 16") for p in div.problems)
    assert any(p.startswith("pretrain:") for p in div.problems)  # 256 rows over 3


def test_one_process_needs_no_adaptation():
    for name in ("smoke", "speedrun", "d26", "d32", "speedrun-rl"):
        div = check_divisibility(CFG.preset(name), _phases(name), 1)
        assert div.ok and div.sft_device_batch is None and not div.notes and not div.idle, (name, div)


def _offline(url: str) -> str:
    return "cannot resolve huggingface.co (DNS: Name or service not known)"


def test_speedrun_on_a_cpu_box_stops_with_the_command_to_run_instead(tmp_path):
    pf = run_preflight(CFG.preset("speedrun"), phases=_phases("speedrun"), nproc=1, nnodes=1, device_kind="cpu",
                       cache_dir=tmp_path / "cache", hourly_rate=24, check_network=_offline, hardware=CPU_BOX,
                       cpu_flops=50e9)
    assert pf.blocked(yes=False)
    text = pf.message(yes=False)
    assert "no GPU found" in text
    assert "STOP: no GPU found and the forecast for preset speedrun is" in text
    assert "network is unreachable: cannot resolve huggingface.co" in text
    assert "run this instead: nanobench run --preset smoke --hourly-rate 24" in text
    assert pf.record["forecast"]["seconds"] > 3600 * 24 * 365  # years on 2 cores
    # --yes overrides the advice, says it is continuing, and suggests nothing
    assert not pf.blocked(yes=True)
    assert "WARNING (--yes given, continuing)" in pf.message(yes=True)


@pytest.mark.parametrize("cpu_flops", [50e9, 5e9])  # a quiet and a very busy 2-core box
def test_smoke_on_a_cpu_box_passes_without_the_network(tmp_path, cpu_flops):
    calls = []
    pf = run_preflight(CFG.preset("smoke"), phases=_phases("smoke"), nproc=1, nnodes=1, device_kind="cpu",
                       cache_dir=tmp_path, hourly_rate=24, check_network=lambda u: calls.append(u) or "down",
                       hardware=CPU_BOX, cpu_flops=cpu_flops)
    assert not pf.blocked(yes=False), pf.message(False)
    assert calls == []  # shipped data: no network check at all
    assert "network: not needed" in pf.message(False)
    assert pf.record["forecast"]["seconds_low"] < 3600


def test_speedrun_on_8_h100_is_not_stopped_and_forecasts_hours(tmp_path):
    pf = run_preflight(CFG.preset("speedrun"), phases=_phases("speedrun"), nproc=8, nnodes=1, device_kind="cuda",
                       cache_dir=tmp_path, hourly_rate=24, check_network=lambda u: None, hardware=H100_BOX)
    assert not pf.blocked(yes=False), pf.message(False)
    assert 2 * 3600 < pf.record["forecast"]["seconds"] < 8 * 3600
    assert "8xNVIDIA H100 80GB HBM3" in pf.record["forecast"]["hardware"]


def test_a_world_that_cannot_divide_stops_even_with_yes(tmp_path):
    pf = run_preflight(CFG.preset("smoke"), phases=_phases("smoke"), nproc=16, nnodes=1, device_kind="cpu",
                       cache_dir=tmp_path, hourly_rate=1, hardware=CPU_BOX, cpu_flops=50e9)
    assert pf.blocked(yes=True)
    assert "choose another --nproc" in pf.message(True)


def test_disk_too_small_stops(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.preflight.free_bytes", lambda p: 10**9)
    pf = run_preflight(CFG.preset("speedrun"), phases=_phases("speedrun"), nproc=8, nnodes=1, device_kind="cuda",
                       cache_dir=tmp_path, hourly_rate=24, check_network=lambda u: None, hardware=H100_BOX)
    assert any("GB free" in s for s in pf.stops)


def test_download_size_counts_only_missing_shards(tmp_path):
    from nanochat_core.dataset import shard_filename

    preset = CFG.preset("speedrun")
    full, urls = download_needs(preset, tmp_path, ["download"])
    (tmp_path / "base_data").mkdir()
    for i in range(40):
        (tmp_path / "base_data" / shard_filename(i)).write_bytes(b"x")
    fewer, _ = download_needs(preset, tmp_path, ["download"])
    assert full - fewer == pytest.approx(40 * 100e6)
    assert any("huggingface" in u or "HF_ENDPOINT" in u or "/datasets/" in u for u in urls)
    assert download_needs(preset, tmp_path, ["pretrain"]) == (0.0, [])


def test_reachable_answers_fast_for_a_listening_and_a_closed_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert reachable(f"http://127.0.0.1:{port}/x", timeout=2) is None
    finally:
        server.close()
    t0 = time.monotonic()
    why = reachable(f"http://127.0.0.1:{port}/x", timeout=2)
    assert why and f"127.0.0.1:{port}" in why
    assert time.monotonic() - t0 < 3


def test_run_hourly_rate_24_stops_on_this_cpu_box_before_creating_anything(tmp_path, monkeypatch, capsys):
    """The usage line `nanobench run --hourly-rate 24` (speedrun) on a machine without a GPU and network."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from bench.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bench.preflight.reachable", lambda url, timeout=3.0: "cannot resolve huggingface.co (DNS)")
    monkeypatch.setattr("bench.preflight.cpu_hardware", lambda flops=None: __import__("bench.whatif", fromlist=["x"]).cpu_hardware(50e9))
    code = main(["run", "--hourly-rate", "24", "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no GPU found" in err and "run this instead: nanobench run --preset smoke --hourly-rate 24" in err
    assert not (tmp_path / "runs").exists()


def test_a_dns_failure_is_not_retried(tmp_path, monkeypatch):
    from nanochat_core.download import DownloadError, download_file

    calls = []

    def no_dns(*args, **kwargs):
        calls.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(DownloadError, match="cannot resolve host example.invalid.*not retried"):
        download_file("http://example.invalid/shard.parquet", tmp_path / "x", retries=5, backoff=5.0)
    assert len(calls) == 1  # one attempt, no backoff sleeps


def test_run_smoke_at_16_processes_refuses_before_any_phase(tmp_path, capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.setattr("bench.preflight.cpu_hardware", lambda flops=None: __import__("bench.whatif", fromlist=["x"]).cpu_hardware(50e9))
    code = main(["run", "--preset", "smoke", "--hourly-rate", "1", "--nproc", "16", "--device", "cpu", "--yes",
                 "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert "STOP: pretrain: 8 rows per step" in err and "choose another --nproc" in err
    assert not (tmp_path / "runs").exists()
