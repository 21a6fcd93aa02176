"""Preflight: what `nanobench run` is about to do, checked in a few seconds before any phase starts.

1. hardware: the device the run will use (bench.devices resolved it; an absent one already stopped the run
   with a one-line reason), GPUs (name, memory), CPU cores, RAM, the torch build;
2. forecast: the preset's time and cost on that hardware (:mod:`bench.whatif`: FLOPs / throughput; on a CPU
   the throughput is a 0.25 s matmul measured here x a stated utilization; offline, no calibration run);
3. disk: free space in the cache vs what the preset still has to download (shards not yet present);
4. network: when something must be downloaded, one TCP connection to each host (3 s timeout, no retries);
5. divisibility: every stage's batch over the world size (processes x nodes); the SFT device batch is
   halved until it divides (the adaptation is recorded), anything else that cannot divide refuses.

The run stops (exit 2) with the reason and the command to run instead when a stage cannot divide, the
network is needed and unreachable, the disk is too small, or the forecast (even its optimistic end) is
over an hour on a machine without GPUs; `--yes` overrides the last three.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.config import Preset
from bench.whatif import Hardware, cpu_hardware, forecast, human_duration, parse_hardware

CPU_FORECAST_LIMIT_S = 3600.0  # a forecast whose low end is above this, without GPUs, stops the run (unless --yes)
NETWORK_TIMEOUT_S = 3.0
# Download sizes (approximate, ORIG's figures): one FineWeb-Edu shard is ~250M characters, ~100 MB of parquet.
SHARD_BYTES = 100e6
EVAL_BUNDLE_BYTES = 170e6  # the CORE eval_bundle.zip (and its extracted copy, about as much again)
TASK_DATA_BYTES = 600e6  # chat/task datasets (SmolTalk, MMLU, ARC, GSM8K, HumanEval, ...)
SUGGESTED = "nanobench run --preset smoke --hourly-rate {rate}"


@dataclass
class Divisibility:
    """Per-stage verdicts for one world size; `sft_device_batch` is the adapted SFT device batch, if changed."""

    world: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # adaptations made
    idle: list[str] = field(default_factory=list)  # evaluations with fewer items than processes (allowed)
    sft_device_batch: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_rows(out: Divisibility, stage: str, rows: int, split: str, divides: bool, device_batch: int, preset: str) -> None:
    """A token-batch stage: its rows per step must split over the processes, then by a fixed device batch."""
    world = out.world
    if not divides:
        out.problems.append(f"{stage}: {split} do not divide over {world} processes")
    elif device_batch > 0 and (rows // world) % device_batch:
        out.problems.append(f"{stage}: {rows // world} rows per process do not divide by device_batch_size "
                            f"{device_batch}; set presets.{preset}.{stage}.device_batch_size = 0 (auto)")


def check_divisibility(preset: Preset, phases: list[str], world: int) -> Divisibility:
    """Will every stage of `phases` split its batch over `world` processes? Adapts the SFT device batch."""
    w, name, out = preset.workload, preset.name, Divisibility(world)
    if "pretrain" in phases:
        pc = w.pretrain
        rows = pc.total_batch_tokens // pc.seq_len
        split = f"{rows} rows per step ({pc.total_batch_tokens:,} tokens / seq_len {pc.seq_len})"
        _check_rows(out, "pretrain", rows, split, rows % world == 0, pc.device_batch_size, name)
    if "mid_train" in phases and w.mid_train.enabled:
        mc, seq = w.mid_train, w.pretrain.seq_len
        rows = mc.total_batch_tokens // seq
        split = f"{mc.total_batch_tokens:,} tokens per step = {rows} rows of {seq}"
        _check_rows(out, "mid_train", rows, split, mc.total_batch_tokens % seq == 0 and rows % world == 0,
                    mc.device_batch_size, name)
    if "sft" in phases and w.sft.enabled:
        sc = w.sft
        if sc.target_examples_per_step % world:
            out.problems.append(f"sft: target_examples_per_step {sc.target_examples_per_step} does not divide over {world} processes")
        else:
            b = sc.device_batch_size
            while b > 1 and sc.target_examples_per_step % (b * world):
                b //= 2
            if sc.target_examples_per_step % (b * world):
                out.problems.append(f"sft: target_examples_per_step {sc.target_examples_per_step} does not divide by "
                                    f"device_batch x {world} processes for any device batch")
            elif b != sc.device_batch_size:
                out.sft_device_batch = b
                out.notes.append(f"sft: device batch {sc.device_batch_size} -> {b} so that {sc.target_examples_per_step} examples "
                                 f"per step divide over {world} processes (grad accum {sc.target_examples_per_step // (b * world)})")
    if "rl" in phases and w.rl.enabled and w.rl.examples_per_step % world:
        out.problems.append(f"rl: examples_per_step {w.rl.examples_per_step} does not divide over {world} processes")
    # evaluations stride items over ranks (rank::world): fewer items than processes leaves ranks idle
    if "chat_eval" in phases and 0 < w.chat_eval.max_problems < world:
        out.idle.append(f"chat_eval: {w.chat_eval.max_problems} problems per task for {world} processes: some ranks idle")
    if "base_eval" in phases and 0 < w.base_eval.core_max_per_task < world:
        out.idle.append(f"base_eval: {w.base_eval.core_max_per_task} examples per task for {world} processes: some ranks idle")
    return out


# ---------------------------------------------------------------------------------------------------
# Hardware
# ---------------------------------------------------------------------------------------------------


@dataclass
class HardwareFound:
    device: str  # the device the run will use (cuda, cpu, ...), or "" when the request cannot be met
    device_error: str | None
    gpus: list[dict[str, Any]]
    cpu_cores: int
    memory_bytes: int | None
    torch: str

    def summary(self) -> str:
        if self.gpus:
            names: dict[str, int] = {}
            for g in self.gpus:
                names[g["name"]] = names.get(g["name"], 0) + 1
            gpu = ", ".join(f"{n}x {k} ({self.gpus[0]['memory_bytes'] / 2**30:.0f} GiB)" for k, n in names.items())
        else:
            gpu = "no GPU found"
        mem = f"{self.memory_bytes / 2**30:.0f} GiB RAM" if self.memory_bytes else "RAM unknown"
        return f"{gpu}; {self.cpu_cores} CPU cores, {mem}; torch {self.torch}; device: {self.device or 'NONE'}"


def find_hardware(device_kind: str) -> HardwareFound:
    """What this machine has; `device_kind` is the device the run resolved (bench.devices: auto -> what is present)."""
    import torch

    gpus = []
    try:
        if device_kind in ("cuda", "rocm") and torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gpus.append({"name": p.name, "memory_bytes": int(p.total_memory)})
    except Exception:  # noqa: BLE001 - a broken driver is reported as no GPU
        gpus = []
    try:
        import psutil

        memory = int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001
        memory = None
    build = torch.__version__ + (f", CUDA {torch.version.cuda}" if torch.version.cuda else "") + (
        f", ROCm {torch.version.hip}" if getattr(torch.version, "hip", None) else "")
    return HardwareFound(device_kind, None, gpus, os.cpu_count() or 1, memory, build)


# ---------------------------------------------------------------------------------------------------
# Disk and network
# ---------------------------------------------------------------------------------------------------


def download_needs(preset: Preset, cache_dir: Path, phases: list[str]) -> tuple[float, list[str]]:
    """(bytes still to download, URLs of the hosts that serve them) for the selected phases."""
    w = preset.workload
    need, urls = 0.0, []
    if "download" not in phases:
        return 0.0, []
    if w.data.source != "shipped":
        from nanochat_core.dataset import shard_filename, shard_url

        present = sum(1 for i in range(w.data.num_shards) if (cache_dir / "base_data" / shard_filename(i)).exists())
        if present < w.data.num_shards:
            need += (w.data.num_shards - present) * SHARD_BYTES
            urls.append(shard_url(0))
        if not (cache_dir / "tasks").exists():
            need += TASK_DATA_BYTES
    if w.base_eval.bundle == "download" and not (cache_dir / "eval_bundle").is_dir():
        from nanochat_core.evals.bundle import eval_bundle_url

        need += 2 * EVAL_BUNDLE_BYTES
        urls.append(eval_bundle_url())
    return need, urls


def free_bytes(path: Path) -> int | None:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def reachable(url: str, timeout: float = NETWORK_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the URL's host opens within `timeout` (DNS included); else why not."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    result: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except socket.gaierror as exc:
            result.append(f"cannot resolve {host} (DNS: {exc.strerror or exc})")
        except OSError as exc:
            result.append(f"cannot connect to {host}:{port} ({exc.strerror or exc})")

    t = threading.Thread(target=attempt, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout + 0.5)
    return result[0] if result else f"no answer from {host}:{port} within {timeout:.0f} s"


# ---------------------------------------------------------------------------------------------------
# The preflight
# ---------------------------------------------------------------------------------------------------


@dataclass
class Preflight:
    lines: list[str] = field(default_factory=list)  # what was found, printed before the run
    stops: list[str] = field(default_factory=list)  # reasons --yes can override
    fatal: list[str] = field(default_factory=list)  # reasons nothing overrides
    instead: str | None = None  # the command to run instead
    sft_device_batch: int | None = None
    record: dict[str, Any] = field(default_factory=dict)  # for launch.json / the result

    def blocked(self, yes: bool) -> bool:
        return bool(self.fatal) or (bool(self.stops) and not yes)

    def message(self, yes: bool) -> str:
        out = list(self.lines)
        for reason in self.fatal:
            out.append(f"STOP: {reason}")
        for reason in self.stops:
            out.append(f"{'WARNING (--yes given, continuing)' if yes else 'STOP'}: {reason}")
        if self.blocked(yes):
            if self.instead:
                out.append(f"run this instead: {self.instead}")
            if self.stops and not self.fatal:
                out.append("or add --yes to run it anyway")
        return "\n".join(out)


def run_preflight(
    preset: Preset, *, phases: list[str], nproc: int, nnodes: int, device_kind: str, cache_dir: Path,
    hourly_rate: float, submissions_dir: Path | None = None,
    check_network: Callable[[str], str | None] = reachable, hardware: HardwareFound | None = None,
    cpu_flops: float | None = None,
) -> Preflight:
    pf = Preflight()
    hw = hardware or find_hardware(device_kind)
    rate_text = f"{hourly_rate:g}"
    pf.instead = SUGGESTED.format(rate=rate_text) if preset.name != "smoke" else None
    pf.lines.append(f"preflight: preset {preset.name}, {nproc} process(es) x {nnodes} node(s), phases {', '.join(phases)}")
    pf.lines.append(f"  hardware: {hw.summary()}")
    pf.record["hardware"] = {"device": hw.device, "gpus": hw.gpus, "cpu_cores": hw.cpu_cores, "memory_bytes": hw.memory_bytes, "torch": hw.torch}
    if hw.device_error:
        pf.fatal.append(hw.device_error)
        pf.instead = None
    world = nproc * nnodes
    div = check_divisibility(preset, phases, world)
    for note in div.notes:
        pf.lines.append(f"  adapt: {note}")
    for note in div.idle:
        pf.lines.append(f"  note: {note}")
    for problem in div.problems:
        pf.fatal.append(f"{problem}; choose another --nproc")
    pf.sft_device_batch = div.sft_device_batch
    pf.record["divisibility"] = {"world": world, "problems": div.problems, "notes": div.notes, "sft_device_batch": div.sft_device_batch}

    # forecast on the hardware found
    target: Hardware | None = None
    if hw.device in ("cuda", "rocm") and hw.gpus:
        try:
            parsed = parse_hardware(hw.gpus[0]["name"])
            target = Hardware(count=world, name=parsed.name, peak_flops=parsed.peak_flops)
        except ValueError:
            target = None  # an unlisted GPU: no peak, no forecast
    elif hw.device == "cpu":
        target = cpu_hardware(cpu_flops)
    if target is not None:
        doc = forecast(preset.workload, phases, target, hourly_rate=hourly_rate, price_source="--hourly-rate",
                       submissions_dir=submissions_dir)
        t = doc["total"]
        pf.lines.append(
            f"  forecast: {human_duration(t['seconds'])} (band {human_duration(t['seconds_low'])} - {human_duration(t['seconds_high'])}), "
            f"${t['usd']:,.2f} at ${rate_text}/h on {target.label}")
        how = (f"{target.peak_flops / 1e9:.0f} GFLOP/s measured (fp32 matmul)" if target.kind == "cpu"
               else f"{target.peak_flops / 1e12:.0f} TFLOP/s peak each")
        pf.lines.append(f"            (FLOPs per phase / throughput: {how}, MFU {doc['mfu']['source']})")
        pf.record["forecast"] = {"seconds": t["seconds"], "seconds_low": t["seconds_low"], "seconds_high": t["seconds_high"],
                                 "usd": t["usd"], "hardware": target.label, "mfu_source": doc["mfu"]["source"]}
        # stop only when even the optimistic end of the band is over the limit: the CPU model is coarse
        # (a busy machine measures a slow matmul) and must never stop a preset made for CPUs
        if not hw.gpus and t["seconds_low"] > CPU_FORECAST_LIMIT_S:
            pf.stops.append(f"no GPU found and the forecast for preset {preset.name} is {human_duration(t['seconds'])} "
                            f"(at least {human_duration(t['seconds_low'])}: over {CPU_FORECAST_LIMIT_S / 3600:.0f} h) on this machine")
    else:
        pf.lines.append(f"  forecast: none ({hw.gpus[0]['name'] if hw.gpus else hw.device} is not in the MFU peak table)")

    # disk and network
    need, urls = download_needs(preset, cache_dir, phases)
    free = free_bytes(cache_dir)
    free_text = f"{free / 1e9:.1f} GB free" if free is not None else "free space unknown"
    pf.lines.append(f"  disk: {need / 1e9:.1f} GB to download into {cache_dir} ({free_text})")
    pf.record["disk"] = {"download_bytes": need, "free_bytes": free}
    if free is not None and need > free:
        pf.stops.append(f"the downloads need about {need / 1e9:.0f} GB but {cache_dir} has {free / 1e9:.1f} GB free")
    if urls:
        problems = []
        for url in dict.fromkeys(urls):
            why = check_network(url)
            if why:
                problems.append(why)
        hosts = ", ".join(sorted({urllib.parse.urlsplit(u).hostname or u for u in urls}))
        pf.lines.append(f"  network: {'; '.join(problems)}" if problems else f"  network: {hosts} reachable")
        pf.record["network"] = {"needed": True, "problems": problems}
        if problems:
            pf.stops.append(f"preset {preset.name} must download data and the network is unreachable: {problems[0]}")
    else:
        pf.lines.append("  network: not needed (everything is local)")
        pf.record["network"] = {"needed": False, "problems": []}
    return pf
