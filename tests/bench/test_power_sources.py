"""GPU power sources: only the GPUs a run uses are charged (visible-device mapping, MIG), and AMD SMI
(fake amdsmi) gives energy with the same contract as NVML: counters cross-checked against samples,
null + reason when unavailable."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from bench.power import PowerMonitor
from bench.power_sources import AmdSmiGpus, NvmlGpus, amd_visible_entries, load_amdsmi, map_visible_nvml

try:
    from tests.bench.fake_amdsmi import FakeAmdSmi
    from tests.bench.harness_fixtures import FakeNvml, FakeNVMLError, ManualClock
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from fake_amdsmi import FakeAmdSmi
    from harness_fixtures import FakeNvml, FakeNVMLError, ManualClock


class MigNvml(FakeNvml):
    """FakeNvml plus UUID/PCI/MIG lookups. GPU i has bus id 0000:{0x10*i+0x0b:02x}:00.0; MIG instances
    ``MIG-<g>-<n>`` live on GPU g."""

    def nvmlDeviceGetPciInfo(self, handle: int):
        return SimpleNamespace(busId=f"00000000:{0x10 * handle + 0x0B:02X}:00.0".encode())

    def nvmlDeviceGetHandleByUUID(self, uuid: str):
        if uuid.startswith("MIG-"):
            gpu = int(uuid.split("-")[1])
            if gpu < len(self.watts):
                return ("mig", gpu)
        raise FakeNVMLError("Not Found")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle):
        return handle[1]

    def nvmlDeviceGetIndex(self, handle: int) -> int:
        return handle


def _phase(mon: PowerMonitor, clock: ManualClock, seconds: float = 10.0, samples: int = 9) -> dict:
    mon.open_sources()
    mon.begin_phase("pretrain")
    for _ in range(samples):
        clock.advance(seconds / (samples + 1))
        mon.sample_once()
    clock.advance(seconds / (samples + 1))
    return mon.end_phase()


# ------------------------------------------------------------------------ NVML: the GPUs used


def test_one_process_on_an_eight_gpu_box_is_charged_for_one_gpu():
    clock = ManualClock()
    fake = MigNvml([300.0] + [60.0] * 7, clock)  # GPU 0 trains, 7 idle GPUs draw 60 W each
    r = _phase(PowerMonitor(nvml=fake, rapl_root=None, clock=clock, visible=None, used=1), clock)
    assert r["gpu_energy_joules"] == pytest.approx([3000.0], rel=1e-6)
    assert r["energy_joules"] == pytest.approx(3000.0, rel=1e-6)  # not 3000 + 7 * 600


def test_visible_indices_and_nproc_pick_the_used_gpus():
    nvml = MigNvml([1.0] * 8, ManualClock())
    assert map_visible_nvml(nvml, "3,5,6", used=2) == ([3, 5], [])
    assert map_visible_nvml(nvml, None, used=None)[0] == list(range(8))
    assert map_visible_nvml(nvml, "6,2", used=None)[0] == [6, 2]


def test_visible_by_uuid_and_pci_bus_id():
    nvml = MigNvml([1.0] * 8, ManualClock())
    assert map_visible_nvml(nvml, "GPU-00005-fake,GPU-00002")[0] == [5, 2]  # full UUID and a unique prefix
    assert map_visible_nvml(nvml, "0000:4b:00.0")[0] == [4]  # nvidia-smi writes 00000000:4B:00.0
    assert map_visible_nvml(nvml, "00000000:1B:00.0")[0] == [1]


def test_mig_instance_maps_to_its_parent_gpu_with_a_note():
    clock = ManualClock()
    fake = MigNvml([100.0, 400.0, 100.0], clock)
    indices, notes = map_visible_nvml(fake, "MIG-1-0")
    assert indices == [1] and "MIG instance of GPU 1" in notes[0]
    mon = PowerMonitor(nvml=fake, rapl_root=None, clock=clock, visible="MIG-1-0,MIG-1-1", used=2)
    r = _phase(mon, clock)
    assert r["gpu_energy_joules"] == pytest.approx([4000.0], rel=1e-6)  # two instances, one parent, counted once
    assert "whole GPU" in mon.summary()["sources"]["gpu"]["notes"][0]


@pytest.mark.parametrize(
    ("visible", "words"),
    [("9", "NVML sees 3"), ("GPU-nope", "no GPU has that UUID"), ("GPU-0000", "more than one"),
     ("MIG-7-0", "MIG device"), ("bogus", "not an index"), ("", "hides every GPU"), ("-1", "hides every GPU")],
)
def test_bad_visible_devices_give_null_energy_with_the_reason(visible, words):
    clock = ManualClock()
    fake = MigNvml([100.0] * 3, clock)
    r = _phase(PowerMonitor(nvml=fake, rapl_root=None, clock=clock, visible=visible, used=1), clock)
    assert r["energy_joules"] is None and r["energy_status"] == "unavailable"
    assert words in r["unavailable_reason"]
    assert fake.initialised is False  # NVML shut down again


def test_cpu_mps_xpu_devices_charge_no_gpu():
    clock = ManualClock()
    for kind, words in (("cpu", "no GPU is used"), ("mps", "without root"), ("xpu", "Level Zero")):
        fake = FakeNvml([300.0], clock)
        r = _phase(PowerMonitor(nvml=fake, rapl_root=None, clock=clock, device=kind), clock)
        assert r["energy_joules"] is None and words in r["unavailable_reason"], kind
        assert fake.power_calls == 0


def test_nvml_open_without_selection_keeps_every_gpu():
    gpus, reason = NvmlGpus.open(MigNvml([1.0] * 4, ManualClock()))
    assert reason is None and gpus.indices == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------- AMD SMI


def test_amdsmi_counter_energy_crosschecked_against_samples():
    clock = ManualClock()
    fake = FakeAmdSmi([600.0, 500.0], clock)
    mon = PowerMonitor(rapl_root=None, clock=clock, device="rocm", amdsmi=fake, visible=None, used=2)
    r = _phase(mon, clock)
    assert r["energy_source"] == "amdsmi_counter" and r["energy_status"] == "measured"
    assert r["gpu_energy_joules"] == pytest.approx([6000.0, 5000.0], rel=1e-4)
    assert r["sampled_energy_joules"] == pytest.approx(11000.0, rel=1e-9)
    assert abs(r["crosscheck_rel_diff"]) < 1e-4
    assert r["gpu_max_temp_c"] == [50, 51] and r["gpu_avg_sm_clock_mhz"] == [2100.0, 2100.0]
    assert mon.summary()["sources"]["gpu"]["library"] == "amdsmi"
    assert fake.init_flags == fake.AmdSmiInitFlags.INIT_AMD_GPUS


def test_amdsmi_legacy_accumulator_key():
    clock = ManualClock()
    fake = FakeAmdSmi([300.0], clock, legacy_keys=True)
    r = _phase(PowerMonitor(rapl_root=None, clock=clock, device="rocm", amdsmi=fake), clock, 4.0, 3)
    assert r["energy_source"] == "amdsmi_counter"
    assert r["energy_joules"] == pytest.approx(1200.0, rel=1e-4)


def test_amdsmi_counter_unsupported_falls_back_to_samples():
    clock = ManualClock()
    fake = FakeAmdSmi([250.0], clock, counter_supported=False)
    mon = PowerMonitor(rapl_root=None, clock=clock, device="rocm", amdsmi=fake)
    r = _phase(mon, clock, 4.0, 3)
    assert r["energy_source"] == "amdsmi_power_samples"
    assert r["energy_joules"] == pytest.approx(1000.0, rel=1e-9)
    assert "NOT_SUPPORTED" in mon.summary()["sources"]["gpu"]["energy_counter_unsupported"][0]


def test_amdsmi_power_failure_mid_phase_is_partial():
    clock = ManualClock()
    fake = FakeAmdSmi([300.0], clock)
    mon = PowerMonitor(rapl_root=None, clock=clock, device="rocm", amdsmi=fake)
    mon.open_sources()
    mon.begin_phase("pretrain")
    clock.advance(1.0)
    mon.sample_once()
    fake.fail_power = True
    clock.advance(1.0)
    mon.sample_once()
    clock.advance(1.0)
    r = mon.end_phase()
    assert r["energy_status"] == "partial" and "AMD SMI power read failed" in r["unavailable_reason"]
    assert r["energy_joules"] == pytest.approx(900.0, rel=1e-4)


def test_amdsmi_unavailable_is_null_with_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    module, reason = load_amdsmi()
    assert module is None and "not importable" in reason
    clock = ManualClock()
    r = _phase(PowerMonitor(rapl_root=None, clock=clock, device="rocm"), clock)
    assert r["energy_joules"] is None and "amdsmi" in r["unavailable_reason"]
    fake = FakeAmdSmi([1.0], clock, init_error="AMDSMI_STATUS_DRIVER_NOT_LOADED")
    r = _phase(PowerMonitor(rapl_root=None, clock=clock, device="rocm", amdsmi=fake), clock)
    assert r["energy_joules"] is None and "DRIVER_NOT_LOADED" in r["unavailable_reason"]


def test_amdsmi_visible_devices_and_auto_fallback():
    clock = ManualClock()
    fake = FakeAmdSmi([100.0, 200.0, 300.0, 400.0], clock)
    assert amd_visible_entries({"HIP_VISIBLE_DEVICES": "2,3", "CUDA_VISIBLE_DEVICES": "0"}) == "2,3"
    assert amd_visible_entries({"ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "2"}) == "1"
    gpus, _ = AmdSmiGpus.open(fake, visible="2,3", used=1)
    assert gpus.indices == [2]
    gpus, _ = AmdSmiGpus.open(fake, visible=fake.amdsmi_get_gpu_device_uuid("handle-1"))
    assert gpus.indices == [1]
    gpus, reason = AmdSmiGpus.open(fake, visible="7")
    assert gpus is None and "matches no AMD GPU" in reason
    # device auto on a machine whose NVML fails: AMD SMI is tried next
    no_nvml = FakeNvml([1.0], clock, init_error="NVML Shared Library Not Found")
    r = _phase(PowerMonitor(nvml=no_nvml, amdsmi=fake, rapl_root=None, clock=clock, used=1), clock)
    assert r["energy_source"] == "amdsmi_counter" and r["gpu_energy_joules"] == pytest.approx([1000.0], rel=1e-4)


def test_pipeline_charges_the_launchs_gpus(tmp_path, monkeypatch):
    """bench.pipeline.execute opens the power monitor for the stages' device, visible GPUs and nproc."""
    from bench import pipeline
    from bench.config import load_config
    from bench.display import RunDisplay
    from bench.phases import Launch

    seen = {}

    class Stop(Exception):
        pass

    def fake_monitor(**kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(pipeline, "PowerMonitor", fake_monitor)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb")
    plan = pipeline.RunPlan(preset=load_config().preset("smoke"), run_dir=tmp_path / "run", cache_dir=tmp_path / "cache",
                            launch=Launch(nproc=1, device="cuda"), phases=[], hourly_rate=0.0)
    with pytest.raises(Stop):
        pipeline.execute(plan, RunDisplay(hourly_rate=0.0))
    assert seen["device"] == "cuda" and seen["visible"] == "GPU-aaaa,GPU-bbbb" and seen["used"] == 1
