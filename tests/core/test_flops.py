"""nanochat_core.flops: the MFU peak table, matched on whole tokens of the names devices really report."""

from __future__ import annotations

import pytest

from nanochat_core.flops import PEAK_BF16_FLOPS, PEAK_FP32_FLOPS, name_tokens, peak_flops

T = 1e12

# (name as torch.cuda.get_device_name / nvidia-smi / amd-smi report it, bf16 dense peak per device)
REPORTED_NAMES = [
    ("NVIDIA GB200", 2500 * T),
    ("NVIDIA B200", 2250 * T),
    ("NVIDIA B100", 1750 * T),
    ("NVIDIA GH200 480GB", 989 * T),
    ("NVIDIA H200", 989 * T),
    ("NVIDIA H200 NVL", 835 * T),
    ("NVIDIA H100 80GB HBM3", 989 * T),
    ("NVIDIA H100", 989 * T),
    ("NVIDIA H100 PCIe", 756 * T),
    ("NVIDIA H100 NVL", 835 * T),
    ("NVIDIA H800", 989 * T),  # H800 SXM: 989, not 756
    ("NVIDIA H800 PCIe", 756 * T),
    ("NVIDIA A100-SXM4-80GB", 312 * T),
    ("NVIDIA A100-PCIE-40GB", 312 * T),
    ("NVIDIA A100 80GB PCIe", 312 * T),
    ("NVIDIA A800-SXM4-80GB", 312 * T),
    ("NVIDIA A40", 149.7 * T),
    ("NVIDIA A30", 165 * T),
    ("NVIDIA A10", 125 * T),
    ("NVIDIA L40S", 362 * T),
    ("NVIDIA L40", 181 * T),  # not the L4's 121
    ("NVIDIA L4", 121 * T),
    ("NVIDIA GeForce RTX 5090", 209.5 * T),
    ("NVIDIA GeForce RTX 4090", 165.2 * T),
    ("NVIDIA GeForce RTX 3090", 71 * T),
    ("AMD Instinct MI355X", 2500 * T),
    ("AMD Instinct MI350X", 2300 * T),
    ("AMD Instinct MI325X", 1307.4 * T),
    ("AMD Instinct MI300X", 1307.4 * T),
    ("AMD Instinct MI300X OAM", 1307.4 * T),
    ("AMD Instinct MI300A", 980.6 * T),
    ("AMD Instinct MI250X/MI250", 191.5 * T),  # what ROCm reports for an MI250X GCD
    ("AMD Instinct MI250X", 191.5 * T),
    ("AMD Instinct MI250", 181 * T),
    ("AMD Instinct MI210", 181 * T),
]


@pytest.mark.parametrize(("name", "peak"), REPORTED_NAMES)
def test_every_reported_name(name, peak):
    assert peak_flops(name) == pytest.approx(peak)


def test_every_table_row_is_reachable_by_its_own_name():
    """No row is shadowed by an earlier one: its model token plus qualifiers finds that row's value."""
    for table, precision in ((PEAK_BF16_FLOPS, "bf16"), (PEAK_FP32_FLOPS, "fp32")):
        for model, qualifiers, value in table:
            assert peak_flops(" ".join(("Vendor", model, *qualifiers)), precision) == value, (model, qualifiers)


@pytest.mark.parametrize("name", ["NVIDIA L40", "NVIDIA L40S", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 NVL"])
def test_no_substring_matches(name):
    # a model token must equal a whole token of the name: "L4" is not in "L40", "A10" not in "A100"
    tokens = name_tokens(name)
    assert "L4" not in tokens and "A10" not in tokens


@pytest.mark.parametrize("name", ["cpu", "", None, "Apple M3 Max", "NVIDIA RTX A6000x", "Tesla T4", "Tesla V100-SXM2-16GB", "Intel(R) Arc(TM) A770"])
def test_unknown_or_no_bf16_gives_none(name):
    assert peak_flops(name) is None


def test_fp32_peaks_for_gpus_without_bf16():
    assert peak_flops("Tesla T4", "fp32") == pytest.approx(8.1 * T)
    assert peak_flops("Tesla V100-SXM2-16GB", "fp32") == pytest.approx(15.7 * T)
    assert peak_flops("Tesla V100-PCIE-32GB", "fp32") == pytest.approx(14 * T)
    assert peak_flops("NVIDIA H100 80GB HBM3", "fp32") is None


def test_short_names_used_by_whatif():
    assert peak_flops("H100") == 989 * T and peak_flops("4090") == 165.2 * T and peak_flops("MI300X") == 1307.4 * T
