"""Device-batch choice: the largest power of two that divides the per-rank rows and fits the memory budget."""

from __future__ import annotations

import pytest
import torch

from nanochat_core.batch_size import BatchSizeError, candidates, cpu_bytes_per_row, pick_device_batch_size
from nanochat_core.model import GPT, GPTConfig

CPU = torch.device("cpu")
MiB = 2**20


def test_candidates_are_dividing_powers_of_two_largest_first():
    assert candidates(32) == [32, 16, 8, 4, 2, 1]
    assert candidates(24) == [8, 4, 2, 1]
    assert candidates(7) == [1]
    assert candidates(4096) == [1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1]  # capped


@pytest.mark.parametrize(
    "budget_mib, fixed_mib, expected",
    [(1000, 0, 32), (100, 0, 8), (95, 0, 4), (96, 0, 8), (40, 10, 2), (12, 0, 1), (10 + 12 * 32, 10, 32)],
)
def test_cpu_picks_the_largest_power_of_two_that_fits(budget_mib, fixed_mib, expected):
    b = pick_device_batch_size(
        rows_per_rank=32, device=CPU, bytes_per_row=12 * MiB, memory_budget_bytes=budget_mib * MiB,
        fixed_bytes=fixed_mib * MiB,
    )
    assert b == expected
    assert fixed_mib * MiB + b * 12 * MiB <= budget_mib * MiB  # it fits
    if b < 32:  # and twice as much would not
        assert fixed_mib * MiB + 2 * b * 12 * MiB > budget_mib * MiB


def test_cpu_respects_divisibility_of_the_rows():
    assert pick_device_batch_size(rows_per_rank=24, device=CPU, bytes_per_row=1, memory_budget_bytes=10**9) == 8


def test_nothing_fits_raises_a_clear_error():
    with pytest.raises(BatchSizeError) as err:
        pick_device_batch_size(
            rows_per_rank=16, device=CPU, bytes_per_row=3 * 2**30, memory_budget_bytes=2 * 2**30, fixed_bytes=2**29,
        )
    msg = str(err.value)
    assert "1 row needs about 3.50 GiB" in msg and "budget is 2.00 GiB" in msg and "smaller preset" in msg


def test_cpu_needs_a_row_estimate():
    with pytest.raises(ValueError, match="bytes_per_row"):
        pick_device_batch_size(rows_per_rank=8, device=CPU, memory_budget_bytes=10**9)


def test_default_budget_is_available_memory():
    # One byte per row always fits in half the available RAM: the largest candidate is chosen.
    assert pick_device_batch_size(rows_per_rank=64, device=CPU, bytes_per_row=1) == 64


def test_cpu_bytes_per_row_formula():
    with torch.device("meta"):
        model = GPT(GPTConfig.from_depth(4, vocab_size=4096, seq_len=256))
    per_row = cpu_bytes_per_row(model, 256, 4096)
    assert per_row == (4 * 26 * 256 + 3 * 4096) * 4 * 256
    assert cpu_bytes_per_row(model, 512, 4096) == 2 * per_row


def test_trial_search_returns_the_first_batch_that_runs():
    """The accelerator path: a trial function that runs out of memory above 4 rows (simulated by raising
    the error torch raises); the picker must try 16, 8, then settle on 4."""
    tried = []

    def try_batch(b: int) -> None:
        tried.append(b)
        if b > 4:
            raise torch.OutOfMemoryError(f"simulated: {b} rows do not fit")

    b = pick_device_batch_size(rows_per_rank=16, device=torch.device("cuda"), try_batch=try_batch)
    assert b == 4 and tried == [16, 8, 4]
