"""Device selection (`--device auto|cuda|rocm|mps|xpu|cpu`) with faked torch builds, on the CPU:
what auto picks, one-line errors for absent devices, precision (bf16 / fp32 below sm_80), compile,
collective backend, and the harness refusing an absent device before anything starts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench.devices import device_count, prepare_stage_environment, visible_entries
from nanochat_core import device as dm
from nanochat_core.common import Runtime, init_runtime


def fake_torch(*, cuda=None, hip=None, gpus=(), xpu=0, mps=False, bf16=True, xccl=False, version="2.9.0"):
    """A torch-shaped namespace. ``gpus``: (name, (major, minor)) per CUDA/ROCm device."""
    gpus = list(gpus)

    def props(i):
        name, (major, minor) = gpus[i]
        return SimpleNamespace(name=name, major=major, minor=minor, total_memory=80 * 2**30, gcnArchName="gfx942:sramecc+:xnack-")

    cuda_mod = SimpleNamespace(
        is_available=lambda: bool(gpus) and bool(cuda or hip), device_count=lambda: len(gpus),
        get_device_name=lambda i=0: gpus[i][0], get_device_capability=lambda i=0: gpus[i][1],
        get_device_properties=props, is_bf16_supported=lambda: bf16, set_device=lambda i: None,
    )
    return SimpleNamespace(
        __version__=version,
        version=SimpleNamespace(cuda=cuda, hip=hip),
        cuda=cuda_mod,
        xpu=SimpleNamespace(is_available=lambda: xpu > 0, device_count=lambda: xpu, is_bf16_supported=lambda: bf16,
                            get_device_properties=lambda i: SimpleNamespace(name="Intel(R) Data Center GPU Max 1550", total_memory=64 * 2**30)),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps, is_built=lambda: mps)),
        distributed=SimpleNamespace(is_xccl_available=lambda: xccl),
    )


H100 = ("NVIDIA H100 80GB HBM3", (9, 0))
T4 = ("Tesla T4", (7, 5))
MI300X = ("AMD Instinct MI300X", (9, 4))
CPU_TORCH = fake_torch(version="2.13.0+cpu")


def test_auto_picks_what_is_present_and_says_so():
    c = dm.resolve_device("auto", fake_torch(cuda="12.8", gpus=[H100] * 8))
    assert (c.kind, c.torch_type) == ("cuda", "cuda") and "8 CUDA GPU" in c.reason
    c = dm.resolve_device("auto", fake_torch(hip="6.3.1", gpus=[MI300X] * 8))
    assert (c.kind, c.torch_type) == ("rocm", "cuda") and "ROCm" in c.reason
    assert dm.resolve_device("auto", fake_torch(xpu=2)).kind == "xpu"
    assert dm.resolve_device("auto", fake_torch(mps=True)).kind == "mps"
    c = dm.resolve_device("auto", CPU_TORCH)
    assert c.kind == "cpu" and "no accelerator" in c.reason and "CPU-only build" in c.reason


def test_requested_device_present():
    assert dm.resolve_device("cuda", fake_torch(cuda="12.8", gpus=[H100])).kind == "cuda"
    # a ROCm torch answers to `cuda` too (torch.cuda API) and is recorded as rocm
    assert dm.resolve_device("cuda", fake_torch(hip="6.3", gpus=[MI300X])).kind == "rocm"
    assert dm.resolve_device("rocm", fake_torch(hip="6.3", gpus=[MI300X])).torch_type == "cuda"
    assert dm.resolve_device("xpu", fake_torch(xpu=1)).torch_type == "xpu"
    assert dm.resolve_device("mps", fake_torch(mps=True)).torch_type == "mps"
    assert dm.resolve_device("CPU", CPU_TORCH).kind == "cpu"


@pytest.mark.parametrize(
    ("requested", "torch_mod", "words"),
    [
        ("cuda", CPU_TORCH, "CPU-only build"),
        ("cuda", fake_torch(cuda="12.8", gpus=[]), "sees no GPU"),
        ("rocm", fake_torch(cuda="12.8", gpus=[H100]), "CUDA (NVIDIA) build, not ROCm"),
        ("rocm", CPU_TORCH, "not a ROCm build"),
        ("mps", CPU_TORCH, "without MPS"),
        ("xpu", CPU_TORCH, "no Intel GPU"),
        ("tpu", CPU_TORCH, "unknown device"),
    ],
)
def test_absent_device_is_one_clear_line(requested, torch_mod, words):
    with pytest.raises(dm.DeviceUnavailable) as err:
        dm.resolve_device(requested, torch_mod)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_precision_bf16_where_the_hardware_has_it():
    t = fake_torch(cuda="12.8", gpus=[H100, T4])
    assert dm.precision_for("cuda", 0, t).autocast_dtype == "bfloat16"
    low = dm.precision_for("cuda", 1, t)
    assert low.autocast_dtype is None and "sm_75" in low.reason and "fp32" in low.reason
    assert dm.precision_for("rocm", 0, fake_torch(hip="6.3", gpus=[MI300X])).autocast_dtype == "bfloat16"
    assert dm.precision_for("rocm", 0, fake_torch(hip="6.3", gpus=[MI300X], bf16=False)).autocast_dtype is None
    assert dm.precision_for("mps", 0, fake_torch(mps=True)).autocast_dtype is None
    assert dm.precision_for("xpu", 0, fake_torch(xpu=1)).autocast_dtype == "bfloat16"
    assert dm.precision_for("cpu").autocast_dtype is None


def test_native_bf16_decides_the_embedding_dtype():
    t = fake_torch(cuda="12.8", gpus=[H100, T4])
    assert dm.has_native_bf16(torch.device("cuda", 0), t) is True
    assert dm.has_native_bf16(torch.device("cuda", 1), t) is False  # T4: the model stays fp32
    assert dm.has_native_bf16(torch.device("cuda", 0), fake_torch(hip="6.3", gpus=[MI300X])) is True
    assert dm.has_native_bf16(torch.device("cpu"), t) is False


def test_describe_device_records_what_ran():
    info = dm.describe_device(dm.resolve_device("rocm", fake_torch(hip="6.3", gpus=[MI300X])), 0,
                              fake_torch(hip="6.3", gpus=[MI300X]))
    d = info.to_dict()
    assert d["vendor"] == "amd" and d["name"] == "AMD Instinct MI300X" and d["capability"].startswith("gfx942")
    assert d["precision"] == "bf16" and d["compile_default"] is True and d["dist_backend"] == "nccl"
    t4 = fake_torch(cuda="12.4", gpus=[T4])
    d = dm.describe_device(dm.resolve_device("cuda", t4), 0, t4).to_dict()
    assert d["capability"] == "sm_75" and d["precision"] == "fp32" and "sm_80" in d["precision_reason"]
    mps = fake_torch(mps=True)
    d = dm.describe_device(dm.resolve_device("mps", mps), 0, mps).to_dict()
    assert d["precision"] == "fp32" and d["compile_default"] is False and d["dist_backend"] == "gloo"


def test_collective_backends():
    assert dm.dist_backend("cuda") == dm.dist_backend("rocm") == "nccl"  # RCCL answers to "nccl"
    assert dm.dist_backend("xpu", fake_torch(xccl=True)) == "xccl"
    assert dm.dist_backend("xpu", fake_torch(xccl=False)) == "gloo"
    assert dm.dist_backend("cpu") == "gloo"


def test_runtime_autocast_follows_the_recorded_precision():
    cpu = torch.device("cpu")
    with Runtime(device=cpu, autocast_dtype=torch.bfloat16).autocast():
        assert torch.is_autocast_enabled("cpu")
    with Runtime(device=cpu, autocast_dtype=None).autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Runtime(device=cpu).autocast():  # a hand-built CPU Runtime: fp32 as before
        assert not torch.is_autocast_enabled("cpu")


def test_init_runtime_on_cpu_and_refusal_of_cuda_here():
    rt = init_runtime(device="auto" if not torch.cuda.is_available() else "cpu")
    assert rt.device.type == "cpu" and rt.autocast_dtype is None and rt.compile is False
    if not torch.cuda.is_available():
        with pytest.raises(dm.DeviceUnavailable, match="--device cuda is not available"):
            init_runtime(device="cuda")


def test_harness_environment_and_counts():
    env: dict[str, str] = {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:512"}
    done = prepare_stage_environment("cuda", env)
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:512"
    assert done == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}  # the user's own setting is kept
    assert prepare_stage_environment("cpu", {}) == {}
    assert visible_entries("rocm", {"HIP_VISIBLE_DEVICES": "1,2"}) == "1,2"
    assert visible_entries("cuda", {"CUDA_VISIBLE_DEVICES": "GPU-abc"}) == "GPU-abc"
    assert device_count("cuda", fake_torch(cuda="12.8", gpus=[H100] * 8)) == 8
    assert device_count("xpu", fake_torch(xpu=4)) == 4
    assert device_count("mps") == 1 and device_count("cpu") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_and_stage_refuse_an_absent_device_without_traceback(tmp_path, capsys):
    from bench.cli import main as cli_main
    from bench.config import load_config, workload_to_json
    from nanochat_core.stages.__main__ import main as stage_main

    code = cli_main(["run", "--preset", "smoke", "--hourly-rate", "1", "--device", "cuda", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda is not available" in err and "CPU-only build" in err
    assert not (tmp_path / "runs").exists()  # refused before anything was created
    cfg = tmp_path / "config.json"
    cfg.write_text(workload_to_json(load_config().preset("smoke").workload))
    code = stage_main(["tokenizer", "--config", str(cfg), "--run-dir", str(tmp_path / "r"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "error: --device cuda is not available" in err and "Traceback" not in err
    events = (tmp_path / "r" / "progress" / "tokenizer.jsonl").read_text()
    assert "not available" in events  # the harness's live display sees why the stage ended


def test_gpus_below_sm80_fall_back_to_fp32_everywhere(monkeypatch):
    """On a T4 (sm_75) the autocast, the embedding dtype and Newton-Schulz all stay fp32; on an H100 bf16."""
    from nanochat_core.optim import newton_schulz_dtype

    capability = {"value": (7, 5)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability["value"])
    monkeypatch.setattr(torch.version, "hip", None)
    cuda0 = torch.device("cuda", 0)
    assert dm.has_native_bf16(cuda0) is False and newton_schulz_dtype(cuda0) == torch.float32
    capability["value"] = (9, 0)
    assert dm.has_native_bf16(cuda0) is True and newton_schulz_dtype(cuda0) == torch.bfloat16


def test_allocator_gets_expandable_segments_unless_configured():
    env: dict[str, str] = {}
    cuda = dm.DeviceChoice("cuda", "cuda", "cuda", "")
    assert dm.prepare_allocator(cuda, env) == "expandable_segments:True" == env["PYTORCH_CUDA_ALLOC_CONF"]
    env = {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128"}
    assert dm.prepare_allocator(cuda, env) == "max_split_size_mb:128"
    env = {}
    assert dm.prepare_allocator(dm.DeviceChoice("rocm", "rocm", "cuda", ""), env) == "expandable_segments:True"
    assert env["PYTORCH_HIP_ALLOC_CONF"] == "expandable_segments:True"
    assert dm.prepare_allocator(dm.DeviceChoice("cpu", "cpu", "cpu", ""), {}) is None


def test_mps_sums_avoid_float64():
    """MPS has no float64: loss/byte sums (bpb, SFT/mid/RL stats) use float32 there, float64 elsewhere."""
    assert dm.accum_dtype(torch.device("mps")) == torch.float32
    assert dm.accum_dtype(torch.device("cpu")) == dm.accum_dtype(torch.device("cuda", 0)) == torch.float64


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_estimate_and_eval_refuse_an_absent_device_in_one_line(tmp_path, capsys):
    from bench.cli import main as cli_main
    from bench.config import load_config, workload_to_json

    assert cli_main(["estimate", "--preset", "smoke", "--hourly-rate", "1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda is not available" in err and "Traceback" not in err
    (tmp_path / "config.json").write_text(workload_to_json(load_config().preset("smoke").workload))
    assert cli_main(["eval", "core", "--run-dir", str(tmp_path), "--device", "rocm"]) == 2
    err = capsys.readouterr().err
    assert "--device rocm is not available" in err and "not a ROCm build" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_chat_server_refuses_an_absent_device(tmp_path):
    from nanochat_core.chat_web import build_pool

    with pytest.raises(ValueError, match="--device cuda is not available: this torch"):
        build_pool(tmp_path, device="cuda")
    with pytest.raises(ValueError, match="--device mps is not available"):
        build_pool(tmp_path, device="mps")


def test_rocm_on_a_cuda_build_without_gpus_says_it_is_not_rocm():
    with pytest.raises(dm.DeviceUnavailable, match="CUDA \\(NVIDIA\\) build, not ROCm"):
        dm.resolve_device("rocm", fake_torch(cuda="12.8", gpus=[]))
    with pytest.raises(dm.DeviceUnavailable, match="ROCm but sees no GPU"):
        dm.resolve_device("rocm", fake_torch(hip="6.3", gpus=[]))
