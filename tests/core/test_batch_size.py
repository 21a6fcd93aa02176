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


# ---------------------------------------------------------------- accelerator auto-sizer (fake memory probe)

from nanochat_core.batch_size import (  # noqa: E402
    DEFAULT_HEADROOM,
    auto_device_batch,
    min_over_ranks,
    nanochat_start,
    search_device_batch,
)

GiB = 2**30
H100_BYTES = int(79.6 * GiB)


def test_start_is_nanochats_batch_scaled_to_memory_and_sequence():
    assert nanochat_start(20, 2048, H100_BYTES)[0] == 32
    assert nanochat_start(26, 2048, H100_BYTES)[0] == 16
    assert nanochat_start(32, 2048, H100_BYTES)[0] == 8
    assert nanochat_start(20, 2048, int(79.15 * GiB))[0] == 32  # A100 80GB
    assert nanochat_start(20, 2048, int(39.4 * GiB))[0] == 16  # A100 40GB
    assert nanochat_start(20, 2048, int(139.8 * GiB))[0] == 32  # H200: 56 -> the power of two below
    assert nanochat_start(20, 2048, 192 * GiB)[0] == 64  # MI300X
    assert nanochat_start(4, 256, H100_BYTES)[0] == 256  # smoke's d4 at seq 256
    start, why = nanochat_start(26, 2048, H100_BYTES)
    assert "16 rows at d26" in why


def _fake_probe(bytes_per_row: int, fixed: int, oom_above: int | None = None, log: list | None = None):
    """Peak = weights + optimizer state (fixed) + activations; raises OOM above `oom_above` rows."""

    def probe(b: int) -> int:
        if log is not None:
            log.append(b)
        if oom_above is not None and b > oom_above:
            raise torch.OutOfMemoryError(f"simulated: {b} rows")
        return fixed + b * bytes_per_row

    return probe


def test_search_starts_at_nanochats_batch_and_steps_down():
    tried: list[int] = []
    budget = int(80 * GiB * (1 - DEFAULT_HEADROOM))
    # d20 at 2048 on an 80 GB GPU: ~2.1 GiB per row + 8 GiB of weights/optimizer: 32 rows would need 75 GiB
    b, record = search_device_batch(
        rows_per_rank=64, start=32, budget_bytes=budget, probe=_fake_probe(int(2.1 * GiB), 8 * GiB, oom_above=64, log=tried),
    )
    assert b == 16 and tried == [32, 16]  # 64 is never tried: nanochat's start bounds the search
    assert record[0]["fits"] is False and "budget" in record[0]["why"] and record[1]["fits"] is True


def test_search_counts_oom_as_not_fitting_and_cleans_up():
    cleaned = []
    b, record = search_device_batch(rows_per_rank=32, start=32, budget_bytes=10**15,
                                    probe=_fake_probe(1, 0, oom_above=4), cleanup=lambda: cleaned.append(1))
    assert b == 4 and [r["rows"] for r in record] == [32, 16, 8, 4] and len(cleaned) == 3
    assert record[0]["why"] == "out of memory"


def test_search_nothing_fits_is_a_clear_error():
    with pytest.raises(BatchSizeError, match="even a device batch of 1 row"):
        search_device_batch(rows_per_rank=8, start=8, budget_bytes=GiB, probe=_fake_probe(GiB, GiB))


def test_search_takes_the_minimum_over_ranks_and_fails_everywhere_if_one_rank_fails():
    b, _ = search_device_batch(rows_per_rank=32, start=32, budget_bytes=10**15, probe=_fake_probe(1, 0), agree=lambda local: min(local, 8))
    assert b == 8
    with pytest.raises(BatchSizeError, match="another rank"):
        search_device_batch(rows_per_rank=32, start=32, budget_bytes=10**15, probe=_fake_probe(1, 0), agree=lambda local: 0)


def _min_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        # rank 1 has less free memory: its probe fits only 8 rows, rank 0's fits 32
        budget = 40 if rank == 1 else 1000
        b, tried = search_device_batch(rows_per_rank=32, start=32, budget_bytes=budget,
                                       probe=lambda b: 5 * b, agree=min_over_ranks(torch.device("cpu")))
        with open(f"{out}.{rank}", "w") as fh:
            fh.write(f"{b} {max(t['rows'] for t in tried if t['fits'])}")
    finally:
        dist.destroy_process_group()


def test_min_over_ranks_with_gloo(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "choice")
    mp.spawn(_min_worker, args=(port, out), nprocs=2, join=True)
    assert (tmp_path / "choice.0").read_text() == "8 32"  # rank 0 could run 32 but both run 8
    assert (tmp_path / "choice.1").read_text() == "8 8"


class _FakeCudaMemory:
    """torch.cuda's memory calls, counting resets: peak = allocated by the last probe."""

    def __init__(self, total: int) -> None:
        self.total_memory, self.peak_value, self.resets, self.empties = total, 0, 0, 0

    def get_device_properties(self, device):
        return type("P", (), {"total_memory": self.total_memory})()

    def max_memory_allocated(self, device):
        return self.peak_value

    def reset_peak_memory_stats(self, device):
        self.resets += 1
        self.peak_value = 0

    def empty_cache(self):
        self.empties += 1

    def synchronize(self, device):
        pass


def test_auto_device_batch_probes_the_training_model_and_resets_peak_stats(monkeypatch):
    """auto_device_batch with torch.cuda's memory calls faked: the model that trains (here a stand-in for
    the compiled one) is the one called; peak statistics are reset after probing; the record says why."""
    fake = _FakeCudaMemory(total=8 * GiB)
    monkeypatch.setattr(torch, "cuda", fake, raising=False)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    model = GPT(GPTConfig.from_depth(2, vocab_size=64, seq_len=16))
    model.init_weights()
    calls = []

    class Compiled(torch.nn.Module):
        def forward(self, x, y):
            calls.append(x.shape[0])
            fake.peak_value = GiB + x.shape[0] * GiB  # 1 GiB fixed + 1 GiB per row
            return model(x, y)

    b, record = auto_device_batch(rows_per_rank=16, depth=2, seq_len=16, train_model=Compiled(), model=model,
                                  device=torch.device("cpu"), autocast=lambda: torch.autocast("cpu", enabled=False), compiled=True)
    assert b == 4 and calls == [16, 8, 4]  # 5 GiB <= 7.36 GiB budget; 9 GiB is not
    assert fake.resets >= 4 and fake.peak_value == 0  # reset after the last probe: the run's peak is its own
    assert all(p.grad is None for p in model.parameters())
    assert record["probed_compiled_model"] is True and record["min_over_ranks"] == 4
    assert record["start"] == 256  # nanochat's 32 scaled to seq 16 (x128) and 8 GiB; the rows (16) cap it
    assert record["allocator"] == "expandable_segments:True" and "largest that fits" in record["why"]


def test_probe_seconds_are_recorded():
    _, tried = search_device_batch(rows_per_rank=8, start=8, budget_bytes=10**15, probe=_fake_probe(1, 0, oom_above=4))
    assert all(t["seconds"] >= 0 for t in tried) and [t["fits"] for t in tried] == [False, True]
