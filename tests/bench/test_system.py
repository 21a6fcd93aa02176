"""bench.system: fast MLPerf-style description; GPUs via (fake) NVML; missing things are None + reason."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest

from bench.system import describe_system, hash_hostname, machine_id

try:
    from tests.bench.harness_fixtures import FakeNvml, ManualClock
except ImportError:
    from harness_fixtures import FakeNvml, ManualClock


def test_describe_system_on_this_machine_is_fast_and_json():
    start = time.perf_counter()
    info = describe_system()
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    json.dumps(info)  # JSON-ready
    assert info["cpu"]["logical_cores"] >= 1
    assert info["memory"]["total_bytes"] > 0
    assert info["software"]["python"].count(".") == 2
    assert info["software"]["nanobench"]
    assert socket.gethostname() not in json.dumps(info)
    assert info["hostname_sha256"] == hash_hostname(socket.gethostname())
    for key, value in (("git_commit", info["source"]["git_commit"]),):
        if value is None:
            assert "source." + key in info["unavailable"]
    if info["accelerator_count"] == 0:
        assert info["machine_id"].startswith("cpu-")
        assert info["unavailable"]["gpus"]
        assert info["gpu_topology"] is None


def test_gpus_from_nvml():
    fake = FakeNvml([300.0] * 8, ManualClock())
    info = describe_system(nvml=fake)
    gpus = info["gpus"]
    assert info["accelerator_count"] == 8 == gpus["count"]
    assert info["machine_id"] == "8xNVIDIA-H100-80GB-HBM3"
    dev = gpus["devices"][3]
    assert dev["name"] == "NVIDIA H100 80GB HBM3" and dev["uuid"] == "GPU-00003-fake"
    assert dev["memory_bytes"] == 80 * 2**30 and dev["power_limit_watts"] == 700.0
    assert gpus["driver_version"] == "570.86.15" and gpus["cuda_driver_version"] == "12.8"
    assert info["mlperf"]["accelerators_per_node"] == 8
    assert info["mlperf"]["accelerator_memory_capacity"] == "80 GiB"
    assert "gpus" not in info["unavailable"]
    assert fake.initialised is False  # NVML shut down again


def test_nvml_failure_reason():
    fake = FakeNvml([300.0], ManualClock(), init_error="Driver Not Loaded")
    info = describe_system(nvml=fake)
    assert info["accelerator_count"] == 0
    assert "Driver Not Loaded" in info["unavailable"]["gpus"]


def test_machine_id_mixed_gpus():
    gpus = {"count": 3, "devices": [{"name": "NVIDIA A100-SXM4-80GB"}, {"name": "NVIDIA A100-SXM4-80GB"}, {"name": "NVIDIA L4"}]}
    assert machine_id(gpus, {}) == "2xNVIDIA-A100-SXM4-80GB+1xNVIDIA-L4"


def test_machine_slug_is_readable():
    cpu = {"model": "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz", "logical_cores": 224}
    assert machine_id({"count": 0, "devices": []}, cpu) == "cpu-Intel-Xeon-Platinum-8480-224c"
    amd = {"model": "AMD EPYC 7763 64-Core Processor", "logical_cores": 2}
    assert machine_id({"count": 0, "devices": []}, amd) == "cpu-AMD-EPYC-7763-2c"
    assert machine_id({"count": 8, "devices": [{"name": "NVIDIA H100 80GB HBM3"}] * 8}, {}) == "8xNVIDIA-H100-80GB-HBM3"


def test_source_outside_git(tmp_path):
    info = describe_system(nvml=False, source_root=tmp_path)
    assert info["source"] == {"git_commit": None, "git_dirty": None}
    assert "source.git_commit" in info["unavailable"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_source_git_commit_and_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "init")
    info = describe_system(nvml=False, source_root=tmp_path)
    assert len(info["source"]["git_commit"]) == 40 and info["source"]["git_dirty"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert describe_system(nvml=False, source_root=tmp_path)["source"]["git_dirty"] is True


def test_amd_gpus_from_amdsmi_when_nvml_has_none(monkeypatch, tmp_path):
    try:
        from tests.bench.fake_amdsmi import FakeAmdSmi
    except ImportError:
        from fake_amdsmi import FakeAmdSmi
    rocm = tmp_path / "rocm"
    (rocm / ".info").mkdir(parents=True)
    (rocm / ".info" / "version").write_text("6.3.1-48\n")
    monkeypatch.setenv("ROCM_PATH", str(rocm))
    no_nvml = FakeNvml([1.0], ManualClock(), init_error="NVML Shared Library Not Found")
    fake = FakeAmdSmi([700.0] * 8, ManualClock())
    info = describe_system(nvml=no_nvml, amdsmi=fake)
    gpus = info["gpus"]
    assert info["machine_id"] == "8xAMD-Instinct-MI300X" and gpus["vendor"] == "amd"
    dev = gpus["devices"][2]
    assert dev["memory_bytes"] == 196592 * 2**20 and dev["power_limit_watts"] == 750.0
    assert dev["arch"] == "gfx942" and dev["pci_bus_id"] == "0000:2c:00.0" and dev["energy_counter"] is True
    assert gpus["driver_version"] == "6.10.5"
    import sys as _sys
    expected_rocm = getattr(getattr(_sys.modules.get("torch"), "version", None), "hip", None) or "6.3.1-48"
    assert info["software"]["rocm"] == expected_rocm
    assert info["gpu_topology"].splitlines()[1].split("\t")[1:4] == ["X", "XGMI", "XGMI"]
    assert info["mlperf"]["accelerator_model_name"] == "AMD Instinct MI300X"
    assert "gpus" not in info["unavailable"] and fake.initialised is False


def test_no_gpu_library_at_all_names_both(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "amdsmi", None)
    info = describe_system(nvml=FakeNvml([1.0], ManualClock(), init_error="Driver Not Loaded"))
    assert "Driver Not Loaded" in info["unavailable"]["gpus"] and "amdsmi" in info["unavailable"]["gpus"]
